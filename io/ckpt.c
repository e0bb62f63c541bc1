/* ckpt.c — collective, layout-independent HDF5 checkpoints with atomic publish. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <hdf5.h>
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "fault.h"
#include "grid.h"
#include "model.h"
#include "optim.h"
#include "rng.h"

#define H5_CHECK(call, what)                                                           \
    do {                                                                               \
        if ((call) < 0) TR_ABORT("HDF5 call failed: %s (%s)", #call, what);            \
    } while (0)

/* The three groups of tensors a checkpoint holds, all with the model's table. */
static const char *const GROUPS[3] = {"model", "optim/m", "optim/v"};

/* The optimizer's state is written as fp32 at its logical shape whatever its form: fp32
 * state is written from its own buffers; bf16 or int8 state, and the second moment of an
 * optimizer with one buffer (LARS, SGD: written as zeros), go through fp32 copies on the
 * backend (conv[grp]), made by host_groups and stored back into the state's form by
 * host_groups_done. */
/* zero = 1: the moments are slices (and the masters too for 16-bit precision); they go
 * through full-size fp32 copies as well (conv[grp]), gathered over COMM_DP to save and
 * cut back to the slice after a load: the memory of a full copy at checkpoint time. */
static int state_is_f32(const struct model *m, const struct optim *o, int grp) {
    return o->form == OSF_F32 && grp - 1 < o->n_buf && !m->z.on;
}

static int masters_sliced(const struct model *m) { return m->z.on && m->dt != KDT_F32; }

static struct tensor group_tensor(const struct model *m, const struct optim *o, int grp,
                                  const struct tensor conv[3]) {
    if (grp == 0) return masters_sliced(m) ? conv[0] : m->params;
    if (!o) return TENSOR_NONE;
    if (!state_is_f32(m, o, grp)) return conv[grp];
    return grp == 1 ? o->m : o->v;
}

/* Host views of the groups' fp32 buffers, for HDF5 to read or write: the buffers
 * themselves where the backend's memory is host memory (CPU), else staging copies,
 * filled from the device when `fetch`. */
static void host_groups(const struct model *m, const struct optim *o, int n_groups, int fetch,
                        float *h[3], struct tensor conv[3]) {
    /* zero = 1: the weights the last step is still gathering */
    if (o) optim_gather_wait((struct optim *)o);
    for (int grp = 0; grp < 3; grp++) {
        conv[grp] = TENSOR_NONE;
        if (grp == 0 && masters_sliced(m)) {
            if (fetch) conv[0] = model_masters_full(m);
            else conv[0] = tensor_1d(backend_alloc(m->be, sizeof(float) * (size_t)m->n_local),
                                     KDT_F32, m->n_local);
        }
        if (o && grp > 0 && grp < n_groups && !state_is_f32(m, o, grp))
            conv[grp] = optim_state_f32(o, m, grp - 1);
        struct tensor t = group_tensor(m, o, grp, conv);
        h[grp] = NULL;
        if (grp >= n_groups || !t.data) continue;
        h[grp] = backend_host_view(m->be, t.data);
        if (h[grp]) continue;
        h[grp] = tr_malloc(tensor_bytes(t));
        if (fetch) backend_copy_d2h(m->be, h[grp], t.data, tensor_bytes(t));
    }
}

/* Done with host_groups' views: staged copies go back to the device when `store`, and
 * fp32 copies of the optimizer's state into the state's form when `store` and
 * `store_state`. */
static void host_groups_done(const struct model *m, const struct optim *o, int n_groups,
                             int store, int store_state, float *h[3], struct tensor conv[3]) {
    for (int grp = 0; grp < n_groups; grp++) {
        struct tensor t = group_tensor(m, o, grp, conv);
        if (t.data && h[grp] != backend_host_view(m->be, t.data)) {
            if (store) backend_copy_h2d(m->be, t.data, h[grp], tensor_bytes(t));
            tr_free(h[grp]);
        }
        if (grp == 0 && conv[0].data) {
            if (store) model_masters_set_full((struct model *)m, conv[0]);
            backend_free_mem(m->be, conv[0].data);
            continue;
        }
        if (conv[grp].data) {
            if (store && store_state) optim_state_set_f32(o, m, grp - 1, conv[grp]);
            backend_free_mem(m->be, conv[grp].data);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* checksums                                                                            */

/* A checksum that does not depend on the layout: the wrapping sum over elements of a
 * mix of (logical index, bit pattern). Shards sum their parts; one all-reduce adds them.
 * The mix (xor, multiply, shift) vectorises, so the checksum costs a fraction of the write. */
static inline uint64_t element_mix(uint64_t logical, uint32_t bits) {
    uint64_t h = ((uint64_t)bits ^ (logical * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

/* Checksum of a box of a tensor: `start`, `count` in the full shape `full`, its elements
 * contiguous (row-major over the box) at x. The box is a set of contiguous runs of the
 * file's order: along the last axis on which it is partial, and every axis after it. */
static uint64_t box_checksum(const int64_t *start, const int64_t *count, const int64_t *full,
                             const float *x, int parallel) {
    int j = -1;
    for (int a = 0; a < 3; a++)
        if (count[a] < full[a]) j = a;
    int64_t inner = 1, outer = 1;
    for (int a = j + 1; a < 3; a++) inner *= full[a];
    for (int a = 0; a < j; a++) outer *= count[a];
    const int64_t run = j >= 0 ? count[j] * inner : inner;
    const uint32_t *bits = (const uint32_t *)x;
    uint64_t sum = 0;
    for (int64_t o = 0; o < outer; o++) {
        /* the logical index where run o starts: the box's outer position, then axis j */
        int64_t idx[3] = {0, 0, 0}, rest = o;
        for (int a = j - 1; a >= 0; a--) {
            idx[a] = rest % count[a];
            rest /= count[a];
        }
        int64_t logical = 0;
        for (int a = 0; a < j; a++) logical = logical * full[a] + start[a] + idx[a];
        if (j >= 0) logical = logical * full[j] + start[j];
        const uint64_t base = (uint64_t)(logical * inner);
        const uint32_t *b = bits + o * run;
#pragma omp parallel for simd if (parallel) reduction(+ : sum) schedule(static)
        for (int64_t c = 0; c < run; c++) sum += element_mix(base + (uint64_t)c, b[c]);
    }
    return sum;
}

/* Checksums of this rank's shards of every tensor of every group (n_groups × n_params;
 * over the part each rank owns, zero where it owns none). Makes no MPI call, so it can run on a thread of
 * its own while the main thread writes. */
struct checksum_job {
    const struct model *m;
    int n_groups;
    float *const *host;
    uint64_t *sums;
    int parallel; /* use the OpenMP threads (1) or stay on the calling thread (0) */
};

static void *local_checksums(void *arg) {
    struct checksum_job *j = arg;
    const struct model *m = j->m;
    for (int grp = 0; grp < j->n_groups; grp++)
        for (int i = 0; i < m->pt.n; i++) {
            const struct param *p = &m->pt.p[i];
            if (p->own_n)
                j->sums[grp * m->pt.n + i] =
                    box_checksum(p->own_start, p->own_count, p->shape,
                                 j->host[grp] + p->offset + p->own_offset, j->parallel);
        }
    return NULL;
}

/* the shards' checksums summed over ranks: every tensor's full checksum, on every rank */
static void reduce_checksums(const struct model *m, int n_groups, uint64_t *sums) {
    comm_allreduce(&m->grid->comm, COMM_WORLD, sums, (long)n_groups * m->pt.n, COMM_U64,
                   COMM_SUM);
}

/* ------------------------------------------------------------------------------------ */
/* hyperslabs                                                                           */

/* Select a box (start, count over the tensor's ndim axes; n elements) in the file, or
 * nothing when n == 0: a rank with nothing to transfer still joins the collective call. */
static void select_box(const struct param *p, const int64_t *start, const int64_t *count,
                       int64_t n, hid_t fspace, hid_t *mspace) {
    if (n > 0) {
        hsize_t st[3], ct[3], len = (hsize_t)n;
        for (int a = 0; a < p->ndim; a++) {
            st[a] = (hsize_t)start[a];
            ct[a] = (hsize_t)count[a];
        }
        H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, st, NULL, ct, NULL), p->name);
        *mspace = H5Screate_simple(1, &len, NULL);
    } else {
        hsize_t one = 1;
        H5_CHECK(H5Sselect_none(fspace), p->name);
        *mspace = H5Screate_simple(1, &one, NULL);
        H5_CHECK(H5Sselect_none(*mspace), p->name);
    }
}

static hid_t mpio_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Each rank's shard of a tensor is one large contiguous piece of the file, so funnelling
     * it through collective-buffering aggregators only adds copies: ranks write their own
     * pieces (still inside the collective call). TRIDENT_MPIIO_CB=enable restores ROMIO's
     * default, which may suit a parallel file system with few, slow servers. */
    MPI_Info info;
    MPI_Info_create(&info);
    const char *cb = getenv("TRIDENT_MPIIO_CB");
    MPI_Info_set(info, "romio_cb_write", cb && *cb ? cb : "disable");
    MPI_Info_set(info, "romio_cb_read", cb && *cb ? cb : "disable");
    H5_CHECK(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, info), "file access list");
    MPI_Info_free(&info);
    H5_CHECK(H5Pset_all_coll_metadata_ops(fapl, 1), "file access list");
    H5_CHECK(H5Pset_coll_metadata_write(fapl, 1), "file access list");
    return fapl;
}

static hid_t collective_dxpl(void) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "transfer list");
    return dxpl;
}

/* a scalar attribute of a native type (H5T_NATIVE_INT64, H5T_NATIVE_UINT64, ...) */
static void write_attr(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a, name);
    H5_CHECK(H5Awrite(a, type, value), name);
    H5Aclose(a);
    H5Sclose(sp);
}

static void write_attr_i64(hid_t obj, const char *name, int64_t v) {
    write_attr(obj, name, H5T_NATIVE_INT64, &v);
}

static void write_attr_str(hid_t obj, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    write_attr(obj, name, t, s);
    H5Tclose(t);
}

/* ------------------------------------------------------------------------------------ */
/* writing                                                                              */

static void ckpt_path(char *out, size_t n, const char *run_dir, int step, const char *suffix) {
    snprintf(out, n, "%s/ckpt-%08d.h5%s", run_dir, step, suffix);
}

static void fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int step_of_name(const char *name) {
    int step;
    char tail[8];
    if (sscanf(name, "ckpt-%d.h5%7s", &step, tail) == 1 && strlen(name) == 16) return step;
    return -1;
}

static int cmp_int_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* steps of the complete-named checkpoints in run_dir, newest first */
static int list_steps(const char *run_dir, int **steps_out) {
    DIR *d = opendir(run_dir);
    int n = 0, cap = 16;
    int *steps = malloc(sizeof(int) * (size_t)cap);
    if (!steps) TR_ABORT("out of memory listing '%s'", run_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            int s = step_of_name(e->d_name);
            if (s < 0) continue;
            if (n == cap) {
                int *grown = realloc(steps, sizeof(int) * (size_t)(cap *= 2));
                if (!grown) TR_ABORT("out of memory listing '%s'", run_dir);
                steps = grown;
            }
            steps[n++] = s;
        }
        closedir(d);
    }
    qsort(steps, (size_t)n, sizeof(int), cmp_int_desc);
    *steps_out = steps;
    return n;
}

int ckpt_count(const char *run_dir) {
    int *steps;
    int n = list_steps(run_dir, &steps);
    free(steps);
    return n;
}

void ckpt_clean_tmp(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) != 0 || len < 8 ||
            strcmp(e->d_name + len - 7, ".h5.tmp") != 0)
            continue;
        char p[CFG_STR_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", run_dir, e->d_name);
        tr_warn("removing '%s': a checkpoint whose writing was interrupted", p);
        unlink(p);
    }
    closedir(d);
}

/* ------------------------------------------------------------------------------------ */
/* metadata                                                                             */

/* Every root attribute a loader trusts, in one canonical text whose hash is stored as
 * meta_checksum: a flipped bit in the step, the config or a tensor's shape is then found
 * like one in the data, and the loader falls back instead of misreading the file. */
struct meta_text {
    const char *format, *loss_scaler, *config, *skips, *tensors;
    int64_t version, step, opt_step, has_opt, seed, data_position;
    double loss;
};

static int  read_meta(hid_t file, const char *path, struct meta_text *t, char *err,
                      size_t err_len);
static void meta_free(struct meta_text *t);

static uint64_t meta_hash(const struct meta_text *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) TR_ABORT("out of memory hashing checkpoint metadata");
    fprintf(f, "format=%s\nversion=%lld\nstep=%lld\noptimizer_step=%lld\nhas_optimizer=%lld\n"
            "seed=%lld\ndata_position=%lld\nloss_scaler=%s\nloss=%.17g\ndata_skips=%s\n"
            "config=%s\ntensors=%s", t->format, (long long)t->version, (long long)t->step,
            (long long)t->opt_step, (long long)t->has_opt, (long long)t->seed,
            (long long)t->data_position, t->loss_scaler, t->loss, t->skips, t->config,
            t->tensors);
    fclose(f);
    uint64_t h = tr_hash_str(buf);
    free(buf);
    return h;
}

/* one line of the tensor list: "group/name d0 d1 d2 checksum" */
static void tensor_line(char *out, size_t n, const char *name, int ndim, const hsize_t *dims,
                        uint64_t sum) {
    int k = snprintf(out, n, "\n%s", name);
    for (int a = 0; a < ndim && k < (int)n; a++)
        k += snprintf(out + k, n - (size_t)k, " %llu", (unsigned long long)dims[a]);
    if (k < (int)n) snprintf(out + k, n - (size_t)k, " %016llx", (unsigned long long)sum);
}

static char *skips_text(const struct ckpt_meta *meta) {
    size_t cap = 24 * (size_t)(meta->n_skips + 1);
    char *s = tr_calloc(cap, 1);
    size_t k = 0;
    for (int i = 0; i < meta->n_skips; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s%lld", i ? "," : "", (long long)meta->skips[i]);
    return s;
}

static int parse_skips(const char *text, struct ckpt_meta *meta) {
    meta->n_skips = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || meta->n_skips >= CKPT_MAX_SKIPS) return -1;
        meta->skips[meta->n_skips++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return 0;
}

static void prune(const char *run_dir, int just_written, int keep);

void ckpt_save(const char *run_dir, const struct ckpt_meta *meta, const struct model *m,
               const struct optim *o, int keep, char *out, size_t out_len) {
    const int step = meta->step;
    char tmp[CFG_STR_MAX + 64], final[CFG_STR_MAX + 64];
    ckpt_path(tmp, sizeof tmp, run_dir, step, ".tmp");
    ckpt_path(final, sizeof final, run_dir, step, "");
    int n_groups = o ? 3 : 1;
    float *data[3];
    struct tensor conv[3];
    host_groups(m, o, n_groups, 1, data, conv);
    /* The checksums are computed on a thread of their own while this one writes: the
     * write waits on memory copies and the disk, the checksum on arithmetic. */
    uint64_t *sums = tr_calloc((size_t)n_groups * m->pt.n, sizeof(uint64_t));
    struct checksum_job job = {m, n_groups, data, sums, 0};
    pthread_t cks_thread;
    int threaded = pthread_create(&cks_thread, NULL, local_checksums, &job) == 0;
    if (!threaded) local_checksums(&job);
    hid_t *dsets = tr_malloc(sizeof(hid_t) * (size_t)n_groups * m->pt.n);

    hid_t fapl = mpio_fapl();
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0)
        tr_abort(__FILE__, __LINE__, "cannot create checkpoint '%s': check that run_dir exists, "
                 "is writable and has space", tmp);
    hid_t dxpl = collective_dxpl();
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    for (int grp = 0; grp < n_groups; grp++)
        for (int i = 0; i < m->pt.n; i++) {
            const struct param *p = &m->pt.p[i];
            char name[PARAM_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s/%s", GROUPS[grp], p->name);
            hsize_t dims[3];
            for (int a = 0; a < p->ndim; a++) dims[a] = (hsize_t)p->shape[a];
            hid_t fspace = H5Screate_simple(p->ndim, dims, NULL);
            hid_t dset = H5Dcreate2(file, name, H5T_IEEE_F32LE, fspace, lcpl, H5P_DEFAULT,
                                    H5P_DEFAULT);
            if (dset < 0) TR_ABORT("cannot create dataset '%s' in '%s'", name, tmp);
            hid_t mspace;
            select_box(p, p->own_start, p->own_count, p->own_n, fspace, &mspace);
            const float *src = data[grp] + (p->own_n ? p->offset + p->own_offset : 0);
            /* A failed collective write may fail on some ranks only: abort the whole job
             * (never hang), naming the file; the torn .tmp is removed at the next start. */
            if (H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, src) < 0)
                tr_abort(__FILE__, __LINE__, "writing tensor '%s' into checkpoint '%s' failed "
                         "(disk full or I/O error); the previous checkpoint is intact: free "
                         "space and start again to resume", name, tmp);
            dsets[grp * m->pt.n + i] = dset;
            H5Sclose(mspace);
            H5Sclose(fspace);
            if (grp == 0 && i == m->pt.n / 2) {
                fault_point("ckpt", step);
                fault_slow_ckpt();
            }
        }
    H5Pclose(lcpl);
    H5Pclose(dxpl);
    if (threaded) pthread_join(cks_thread, NULL);
    host_groups_done(m, o, n_groups, 0, 0, data, conv);
    reduce_checksums(m, n_groups, sums);
    /* the tensor list: every name with its shape and checksum, covered by meta_checksum */
    char *tensors = NULL;
    size_t tensors_len = 0;
    FILE *tl = open_memstream(&tensors, &tensors_len);
    if (!tl) TR_ABORT("out of memory listing the tensors of '%s'", tmp);
    for (int j = 0; j < n_groups * m->pt.n; j++) {
        write_attr(dsets[j], "checksum", H5T_NATIVE_UINT64, &sums[j]);
        H5Dclose(dsets[j]);
        const struct param *p = &m->pt.p[j % m->pt.n];
        char name[PARAM_NAME_MAX + 16], line[PARAM_NAME_MAX + 128];
        snprintf(name, sizeof name, "%s/%s", GROUPS[j / m->pt.n], p->name);
        hsize_t dims[3];
        for (int a = 0; a < p->ndim; a++) dims[a] = (hsize_t)p->shape[a];
        tensor_line(line, sizeof line, name, p->ndim, dims, sums[j]);
        fputs(line, tl);
    }
    fputc('\n', tl);
    fclose(tl);
    tr_free(dsets);
    char *cfg_text = config_to_string(&m->cfg);
    char *skips = skips_text(meta);
    char scaler[LOSS_SCALE_TEXT_MAX + 16];
    snprintf(scaler, sizeof scaler, "%s", meta->loss_scaler[0] ? meta->loss_scaler : "none");
    struct meta_text mt = {CKPT_FORMAT, scaler, cfg_text, skips, tensors,
                           CKPT_FORMAT_VERSION, step, o ? o->t : 0, o != NULL, m->cfg.seed,
                           step, meta->loss};
    uint64_t mh = meta_hash(&mt);
    write_attr_str(file, "format", mt.format);
    write_attr_i64(file, "format_version", mt.version);
    write_attr_i64(file, "step", mt.step);
    write_attr_i64(file, "optimizer_step", mt.opt_step);
    write_attr_i64(file, "has_optimizer", mt.has_opt);
    write_attr_i64(file, "seed", mt.seed);
    /* windows are a function of (seed, step, data_skips) */
    write_attr_i64(file, "data_position", mt.data_position);
    write_attr_str(file, "loss_scaler", mt.loss_scaler);
    write_attr(file, "loss", H5T_NATIVE_DOUBLE, &mt.loss);
    write_attr_str(file, "data_skips", skips);
    write_attr_str(file, "config", cfg_text);
    write_attr_str(file, "tensors", tensors);
    write_attr(file, "meta_checksum", H5T_NATIVE_UINT64, &mh);
    tr_free(cfg_text);
    tr_free(skips);
    free(tensors);
    tr_free(sums);
    if (H5Fclose(file) < 0)
        tr_abort(__FILE__, __LINE__, "closing checkpoint '%s' failed (disk full or I/O error); "
                 "the previous checkpoint is intact: free space and start again to resume", tmp);

    /* publish: only a complete file ever carries the final name */
    fault_point("rename", step);
    comm_barrier(&m->grid->comm, COMM_WORLD);
    if (tr_rank() == 0) {
        fsync_path(tmp, 0);
        if (rename(tmp, final) != 0)
            tr_abort(__FILE__, __LINE__, "cannot rename '%s' to '%s': %s", tmp, final,
                     strerror(errno));
        fsync_path(run_dir, 1);
        char latest[CFG_STR_MAX + 32], latest_tmp[CFG_STR_MAX + 40];
        snprintf(latest, sizeof latest, "%s/latest", run_dir);
        snprintf(latest_tmp, sizeof latest_tmp, "%s/latest.tmp", run_dir);
        FILE *f = fopen(latest_tmp, "w");
        if (f) {
            fprintf(f, "ckpt-%08d.h5\n", step);
            fflush(f);
            fsync(fileno(f));
            fclose(f);
            rename(latest_tmp, latest);
        }
        prune(run_dir, step, keep);
    }
    comm_barrier(&m->grid->comm, COMM_WORLD);
    snprintf(out, out_len, "%s", final);
}

/* ------------------------------------------------------------------------------------ */
/* reading                                                                              */

/* a scalar attribute read as a native type; -1 when it is missing or unreadable */
static int read_attr(hid_t obj, const char *name, hid_t type, void *value) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int rc = H5Aread(a, type, value) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

static int read_attr_i64(hid_t obj, const char *name, int64_t *v) {
    return read_attr(obj, name, H5T_NATIVE_INT64, v);
}

static char *read_attr_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *s = tr_calloc(n + 1, 1);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, n);
    if (H5Aread(a, mt, s) < 0) s[0] = '\0';
    H5Tclose(mt);
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

/* Open a checkpoint and check its header; returns the file or -1 with a reason. */
static hid_t open_checked(const char *path, char *err, size_t err_len) {
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_len, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    hid_t fapl = mpio_fapl();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (file < 0) {
        snprintf(err, err_len, "'%s' is not a readable HDF5 file (truncated or corrupt?)",
                 path);
        return -1;
    }
    char *fmt = read_attr_str(file, "format");
    int64_t version = 0;
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 ||
        read_attr_i64(file, "format_version", &version) != 0 || version != CKPT_FORMAT_VERSION) {
        snprintf(err, err_len, "'%s' is not a trident checkpoint of format version %d", path,
                 CKPT_FORMAT_VERSION);
        tr_free(fmt);
        H5Fclose(file);
        return -1;
    }
    tr_free(fmt);
    return file;
}

void ckpt_read_config(const char *path, struct config *cfg) {
    char err[CFG_STR_MAX + 128];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = open_checked(path, err, sizeof err);
    if (file < 0)
        tr_fail(TR_EXIT_USAGE, "give a checkpoint written by trident train (run_dir/ckpt-*.h5)",
                "%s", err);
    struct meta_text mt;
    if (read_meta(file, path, &mt, err, sizeof err) < 0)
        tr_fail(TR_EXIT_USAGE, "use an earlier checkpoint of the run", "%s", err);
    meta_free(&mt);
    char *text = read_attr_str(file, "config");
    if (!text) tr_fail(TR_EXIT_USAGE, NULL, "checkpoint '%s' has no config attribute", path);
    config_from_string(cfg, text, path);
    tr_free(text);
    H5Fclose(file);
}

/* The root attributes as read from a file (strings owned; free with meta_free). */
static void meta_free(struct meta_text *t) {
    tr_free((char *)t->format);
    tr_free((char *)t->loss_scaler);
    tr_free((char *)t->config);
    tr_free((char *)t->skips);
    tr_free((char *)t->tensors);
    memset(t, 0, sizeof *t);
}

/* Read and verify the metadata. Returns 1 when meta_checksum matches, 0 for a file
 * written before checksummed metadata (nothing to verify), -1 with a reason when it is
 * damaged. The file name's step must agree with the step inside. */
static int read_meta(hid_t file, const char *path, struct meta_text *t, char *err,
                     size_t err_len) {
    memset(t, 0, sizeof *t);
    t->format = read_attr_str(file, "format");
    t->loss_scaler = read_attr_str(file, "loss_scaler");
    t->config = read_attr_str(file, "config");
    t->skips = read_attr_str(file, "data_skips");
    t->tensors = read_attr_str(file, "tensors");
    t->step = t->version = t->seed = t->data_position = -1;
    read_attr_i64(file, "format_version", &t->version);
    read_attr_i64(file, "step", &t->step);
    read_attr_i64(file, "optimizer_step", &t->opt_step);
    read_attr_i64(file, "has_optimizer", &t->has_opt);
    read_attr_i64(file, "seed", &t->seed);
    read_attr_i64(file, "data_position", &t->data_position);
    t->loss = NAN;
    read_attr(file, "loss", H5T_NATIVE_DOUBLE, &t->loss);
    uint64_t stored = 0;
    int has_sum = read_attr(file, "meta_checksum", H5T_NATIVE_UINT64, &stored) == 0;
    const char *base = strrchr(path, '/');
    int name_step = step_of_name(base ? base + 1 : path);
    if (!has_sum) {
        if (H5Aexists(file, "meta_checksum") > 0) {
            snprintf(err, err_len, "'%s': its metadata checksum is unreadable (the file is "
                     "corrupt)", path);
            return -1;
        }
        return 0; /* an older checkpoint: its tensors still carry checksums */
    }
    if (!t->format || !t->loss_scaler || !t->config || !t->skips || !t->tensors ||
        meta_hash(t) != stored) {
        snprintf(err, err_len, "'%s': its metadata (step, config or tensor shapes) fails its "
                 "checksum (the file is corrupt)", path);
        return -1;
    }
    if (name_step >= 0 && name_step != t->step) {
        snprintf(err, err_len, "'%s' holds step %lld, not the step in its name", path,
                 (long long)t->step);
        return -1;
    }
    return 1;
}

/* Architecture keys that must match between a checkpoint and the model reading it. */
static int arch_mismatch(const struct config *a, const struct config *b, char *err,
                         size_t err_len) {
    const struct { const char *name; int x, y; } keys[] = {
        {"n_layer", a->n_layer, b->n_layer}, {"n_head", a->n_head, b->n_head},
        {"n_embd", a->n_embd, b->n_embd},    {"vocab_size", a->vocab_size, b->vocab_size},
        {"block_size", a->block_size, b->block_size}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].x != keys[i].y) {
            snprintf(err, err_len, "the checkpoint has %s = %d but the model has %s = %d",
                     keys[i].name, keys[i].x, keys[i].name, keys[i].y);
            return 1;
        }
    return 0;
}

/* Load into this rank's shards; returns the step, or -1 with a reason in err. */
static int load_impl(const char *path, struct model *m, struct optim *o,
                     struct ckpt_meta *meta, char *err, size_t err_len) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = open_checked(path, err, err_len);
    if (file < 0) return -1;
    struct meta_text mt;
    char saved_optimizer[sizeof m->cfg.optimizer] = "adamw";
    int other_optimizer = 0;  /* the checkpoint's optimizer is another than this run's */
    int verified = read_meta(file, path, &mt, err, err_len);
    int bad = verified < 0;
    if (!bad && (mt.step < 0 || !mt.config)) {
        snprintf(err, err_len, "'%s' lacks its step or config attribute", path);
        bad = 1;
    }
    if (!bad && meta) {
        meta->step = (int)mt.step;
        meta->loss = mt.loss;
        meta->n_skips = 0;
        meta->loss_scaler[0] = '\0';
        if (mt.loss_scaler && strncmp(mt.loss_scaler, "none", 4) != 0)
            snprintf(meta->loss_scaler, sizeof meta->loss_scaler, "%s", mt.loss_scaler);
        if (mt.skips && parse_skips(mt.skips, meta) != 0) {
            snprintf(err, err_len, "'%s': its list of skipped data steps is unreadable", path);
            bad = 1;
        }
    }
    if (!bad) {
        /* parsed only once verified (or from an older file): a damaged config text must
         * read as a corrupt file, never as "another architecture" */
        struct config saved;
        config_defaults(&saved);
        config_from_string(&saved, mt.config, path);
        char why[256];
        snprintf(saved_optimizer, sizeof saved_optimizer, "%s", saved.optimizer);
        other_optimizer = strcmp(saved.optimizer, m->cfg.optimizer) != 0;
        if (arch_mismatch(&saved, &m->cfg, why, sizeof why)) {
            snprintf(err, err_len, "'%s' is a checkpoint of another architecture: %s", path, why);
            bad = 2;
        }
    }
    if (!bad && o && !mt.has_opt) {
        snprintf(err, err_len, "'%s' holds no optimizer state, so training cannot resume from "
                 "it", path);
        bad = 1;
    }
    const int64_t step = mt.step, opt_step = mt.opt_step;
    /* with a verified tensor list, each tensor's shape and checksum must be listed in it */
    char *listed = NULL;
    if (verified > 0) {
        size_t n = strlen(mt.tensors);
        listed = tr_malloc(n + 2);
        listed[0] = '\n';
        memcpy(listed + 1, mt.tensors, n + 1);
    }
    meta_free(&mt);
    comm_allreduce(&m->grid->comm, COMM_WORLD, &bad, 1, COMM_I32, COMM_MAX);
    int n_groups = o ? 3 : 1;
    float *data[3];
    struct tensor conv[3];
    host_groups(m, o, n_groups, 0, data, conv);
    uint64_t *stored = tr_calloc((size_t)n_groups * m->pt.n, sizeof(uint64_t));
    hid_t dxpl = collective_dxpl();
    for (int grp = 0; grp < n_groups && !bad; grp++)
        for (int i = 0; i < m->pt.n && !bad; i++) {
            const struct param *p = &m->pt.p[i];
            char name[PARAM_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s/%s", GROUPS[grp], p->name);
            hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
            if (dset < 0) {
                snprintf(err, err_len, "'%s' has no tensor '%s'", path, name);
                bad = 1;
                break;
            }
            hid_t fspace = H5Dget_space(dset);
            hsize_t dims[3] = {0, 0, 0};
            int nd = H5Sget_simple_extent_dims(fspace, dims, NULL);
            int shape_ok = nd == p->ndim;
            for (int a = 0; shape_ok && a < nd; a++) shape_ok = dims[a] == (hsize_t)p->shape[a];
            if (!shape_ok) {
                /* a verified tensor list knows the shape that was written: a header that
                 * disagrees with it is damaged, not another architecture */
                char line[PARAM_NAME_MAX + 128];
                tensor_line(line, sizeof line, name, nd > 0 ? nd : 0, dims, 0);
                char *sum_at = strrchr(line, ' ');
                if (sum_at) sum_at[1] = '\0'; /* name and shape only */
                if (listed && !strstr(listed, line)) {
                    snprintf(err, err_len, "tensor '%s' in '%s' has a shape that its verified "
                             "tensor list does not (the file is corrupt)", name, path);
                    bad = 1;
                } else {
                    snprintf(err, err_len, "tensor '%s' in '%s' has the wrong shape (another "
                             "architecture?)", name, path);
                    bad = 2;
                }
            } else {
                hid_t mspace;
                select_box(p, p->local_start, p->local_shape, p->n_local, fspace, &mspace);
                float *dst = data[grp] + (p->n_local ? p->offset : 0);
                if (H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, dst) < 0) {
                    snprintf(err, err_len, "reading tensor '%s' from '%s' failed (truncated "
                             "file?)", name, path);
                    bad = 1;
                }
                uint64_t *sum = &stored[grp * m->pt.n + i];
                if (read_attr(dset, "checksum", H5T_NATIVE_UINT64, sum) != 0) {
                    snprintf(err, err_len, "tensor '%s' in '%s' has no checksum", name, path);
                    bad = 1;
                } else if (listed) {
                    char line[PARAM_NAME_MAX + 128];
                    tensor_line(line, sizeof line, name, nd, dims, *sum);
                    size_t ll = strlen(line);
                    line[ll] = '\n';
                    line[ll + 1] = '\0';
                    if (!strstr(listed, line)) {
                        snprintf(err, err_len, "tensor '%s' in '%s' does not match the file's "
                                 "verified tensor list (the file is corrupt)", name, path);
                        bad = 1;
                    }
                }
                H5Sclose(mspace);
            }
            H5Sclose(fspace);
            H5Dclose(dset);
        }
    H5Pclose(dxpl);
    H5Fclose(file);
    tr_free(listed);
    /* every rank must agree on the verdict before the collective checksum pass */
    comm_allreduce(&m->grid->comm, COMM_WORLD, &bad, 1, COMM_I32, COMM_MAX);
    if (!bad) {
        uint64_t *sums = tr_calloc((size_t)n_groups * m->pt.n, sizeof(uint64_t));
        struct checksum_job job = {m, n_groups, data, sums, 1};
        local_checksums(&job);
        reduce_checksums(m, n_groups, sums);
        for (int j = 0; j < n_groups * m->pt.n && !bad; j++)
            if (sums[j] != stored[j]) {
                snprintf(err, err_len, "tensor '%s/%s' in '%s' fails its checksum (the file is "
                         "corrupt)", GROUPS[j / m->pt.n], m->pt.p[j % m->pt.n].name, path);
                bad = 1;
            }
        tr_free(sums);
    } else if (err[0] == '\0') {
        snprintf(err, err_len, "'%s' could not be read on another rank", path);
    }
    tr_free(stored);
    host_groups_done(m, o, n_groups, !bad, !other_optimizer, data, conv);
    if (bad) return bad == 2 ? -2 : -1;
    model_refresh_weights(m);
    if (o) o->t = (int)opt_step;
    if (o && other_optimizer) {
        /* another optimizer's state means nothing to this one: its weights are kept */
        if (m->grid->world_rank == 0)
            tr_warn("'%s' was written by optimizer %s, this run uses %s: its weights are "
                    "loaded, the optimizer state starts at zero", path, saved_optimizer,
                    m->cfg.optimizer);
        optim_zero(o);
        o->t = 0;
    }
    return (int)step;
}

int ckpt_load(const char *path, struct model *m, struct optim *o) {
    return ckpt_load_meta(path, m, o, NULL);
}

int ckpt_load_meta(const char *path, struct model *m, struct optim *o, struct ckpt_meta *meta) {
    char err[CFG_STR_MAX * 2];
    err[0] = '\0';
    int step = load_impl(path, m, o, meta, err, sizeof err);
    if (step < 0)
        tr_fail(TR_EXIT_USAGE, "point at a complete checkpoint of this model (run_dir/ckpt-*.h5)",
                "%s", err);
    return step;
}

/* The checkpoint steps in run_dir as rank 0 sees them, on every rank: ranks must open
 * the same files in the same order, even while another job adds or removes some. */
static int list_steps_shared(const char *run_dir, int **steps_out) {
    int n = 0, *steps = NULL;
    if (tr_rank() == 0) n = list_steps(run_dir, &steps);
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD));
    /* malloc, as list_steps does: the caller frees either with free() */
    if (tr_rank() != 0 && !(steps = malloc(sizeof(int) * ((size_t)n + 1))))
        TR_ABORT("out of memory listing '%s'", run_dir);
    if (n > 0) MPI_CHECK(MPI_Bcast(steps, n, MPI_INT, 0, MPI_COMM_WORLD));
    *steps_out = steps;
    return n;
}

int ckpt_find_latest(const char *run_dir, char *path, size_t path_len) {
    struct stat st;
    if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    int *steps;
    int n = list_steps_shared(run_dir, &steps);
    int found = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int i = 0; i < n && found < 0; i++) {
        char p[CFG_STR_MAX + 64], err[CFG_STR_MAX * 2];
        ckpt_path(p, sizeof p, run_dir, steps[i], "");
        hid_t file = open_checked(p, err, sizeof err);
        if (file >= 0) {
            struct meta_text mt;
            if (read_meta(file, p, &mt, err, sizeof err) >= 0) {
                snprintf(path, path_len, "%s", p);
                found = 0;
            }
            meta_free(&mt);
            H5Fclose(file);
        }
        if (found < 0) tr_warn("skipping checkpoint: %s", err);
    }
    free(steps);
    return found;
}

int ckpt_resume_latest(const char *run_dir, struct model *m, struct optim *o,
                       struct ckpt_meta *meta, char *path, size_t path_len) {
    int *steps;
    int n = list_steps_shared(run_dir, &steps);
    int step = -1;
    /* why each file failed, for the message when none loads */
    size_t why_cap = 256 + (size_t)n * (CFG_STR_MAX * 2 + 8), why_len = 0;
    char *why = tr_calloc(why_cap, 1);
    for (int i = 0; i < n && step < 0; i++) {
        char err[CFG_STR_MAX * 2];
        err[0] = '\0';
        ckpt_path(path, path_len, run_dir, steps[i], "");
        step = load_impl(path, m, o, meta, err, sizeof err);
        if (step == -2) tr_fail(TR_EXIT_USAGE, "use another run_dir for another model", "%s", err);
        if (step < 0) {
            tr_warn("%s; falling back to the previous checkpoint", err);
            why_len += (size_t)snprintf(why + why_len, why_cap - why_len, "\n  %s", err);
        }
    }
    free(steps);
    if (n > 0 && step < 0)
        tr_fail(TR_EXIT_FAILURE, "nothing was changed or deleted. Move the damaged files out "
                "of run_dir (h5dump -H shows what is left of them) and start again to train "
                "from scratch, or name a good checkpoint with resume = PATH",
                "run_dir '%s' holds %d checkpoint%s and none of them loads, so training will "
                "not silently start again from step 0:%s", run_dir, n, n == 1 ? "" : "s", why);
    tr_free(why);
    return step;
}

/* ------------------------------------------------------------------------------------ */
/* pruning                                                                              */

/* Open a checkpoint on this rank alone and verify its metadata; its training loss in
 * *loss. 0: good (or an older file without checksummed metadata), -1: unreadable. */
static int verify_alone(const char *path, double *loss) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return -1;
    char err[CFG_STR_MAX * 2];
    struct meta_text mt;
    int rc = read_meta(file, path, &mt, err, sizeof err) >= 0 && mt.format &&
             strcmp(mt.format, CKPT_FORMAT) == 0 ? 0 : -1;
    *loss = mt.loss;
    meta_free(&mt);
    H5Fclose(file);
    return rc;
}

/* Keep the newest `keep` verified checkpoints, the one just written and the verified one
 * with the lowest training loss (the last good state before a slow divergence); delete
 * the other verified ones. A file that does not verify is neither counted nor deleted:
 * it may be a file the user wants to inspect, and counting it could delete good ones. */
static void prune(const char *run_dir, int just_written, int keep) {
    int *steps;
    int n = list_steps(run_dir, &steps);
    int *good = tr_calloc((size_t)n + 1, sizeof(int));
    int best = -1, n_good = 0;
    double best_loss = INFINITY;
    for (int i = 0; i < n; i++) {
        char p[CFG_STR_MAX + 64];
        ckpt_path(p, sizeof p, run_dir, steps[i], "");
        double loss = NAN;
        good[i] = verify_alone(p, &loss) == 0;
        if (good[i] && isfinite(loss) && loss < best_loss) {
            best_loss = loss;
            best = steps[i];
        }
    }
    for (int i = 0; i < n; i++) {
        if (!good[i]) continue;
        n_good++;
        if (n_good <= keep || steps[i] == just_written || steps[i] == best) continue;
        char old[CFG_STR_MAX + 64];
        ckpt_path(old, sizeof old, run_dir, steps[i], "");
        unlink(old);
    }
    tr_free(good);
    free(steps);
}
