/* ckpt.c — collective, layout-independent HDF5 checkpoints with atomic publish. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "model.h"
#include "optim.h"
#include "rng.h"

#define H5_CHECK(call, what)                                                           \
    do {                                                                               \
        if ((call) < 0) TR_ABORT("HDF5 call failed: %s (%s)", #call, what);            \
    } while (0)

/* The three groups of tensors a checkpoint holds, all with the model's table. */
static const char *const GROUPS[3] = {"model", "optim/m", "optim/v"};

static float *group_data(const struct model *m, const struct optim *o, int grp) {
    if (grp == 0) return m->params;
    if (!o) return NULL;
    return grp == 1 ? o->m : o->v;
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
    float *const *data;
    uint64_t *sums;
    int parallel; /* use the OpenMP threads (1) or stay on the calling thread (0) */
};

static void *local_checksums(void *arg) {
    struct checksum_job *j = arg;
    const struct model *m = j->m;
    for (int grp = 0; grp < j->n_groups; grp++)
        for (int i = 0; i < m->n_params; i++) {
            const struct param *p = &m->p[i];
            if (p->own_n)
                j->sums[grp * m->n_params + i] =
                    box_checksum(p->own_start, p->own_count, p->shape,
                                 j->data[grp] + p->offset + p->own_offset, j->parallel);
        }
    return NULL;
}

/* the shards' checksums summed over ranks: every tensor's full checksum, on every rank */
static void reduce_checksums(const struct model *m, int n_groups, uint64_t *sums) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, n_groups * m->n_params, MPI_UINT64_T, MPI_SUM,
                            MPI_COMM_WORLD));
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

/* steps of the complete-named checkpoints in run_dir, newest first; removes *.h5.tmp
 * leftovers of an interrupted save when clean != 0 */
static int list_steps(const char *run_dir, int **steps_out, int clean) {
    DIR *d = opendir(run_dir);
    int n = 0, cap = 16;
    int *steps = malloc(sizeof(int) * (size_t)cap);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            int s = step_of_name(e->d_name);
            if (s >= 0) {
                if (n == cap) steps = realloc(steps, sizeof(int) * (size_t)(cap *= 2));
                steps[n++] = s;
            } else if (clean && strncmp(e->d_name, "ckpt-", 5) == 0 &&
                       strstr(e->d_name, ".h5.tmp")) {
                char p[CFG_STR_MAX + 300];
                snprintf(p, sizeof p, "%s/%s", run_dir, e->d_name);
                tr_warn("removing '%s': a checkpoint whose writing was interrupted", p);
                unlink(p);
            }
        }
        closedir(d);
    }
    qsort(steps, (size_t)n, sizeof(int), cmp_int_desc);
    *steps_out = steps;
    return n;
}

void ckpt_save(const char *run_dir, int step, const struct model *m, const struct optim *o,
               int keep, char *out, size_t out_len) {
    char tmp[CFG_STR_MAX + 64], final[CFG_STR_MAX + 64];
    ckpt_path(tmp, sizeof tmp, run_dir, step, ".tmp");
    ckpt_path(final, sizeof final, run_dir, step, "");
    float *data[3] = {group_data(m, o, 0), group_data(m, o, 1), group_data(m, o, 2)};
    int n_groups = o ? 3 : 1;
    /* The checksums are computed on a thread of their own while this one writes: the
     * write waits on memory copies and the disk, the checksum on arithmetic. */
    uint64_t *sums = tr_calloc((size_t)n_groups * m->n_params, sizeof(uint64_t));
    struct checksum_job job = {m, n_groups, data, sums, 0};
    pthread_t cks_thread;
    int threaded = pthread_create(&cks_thread, NULL, local_checksums, &job) == 0;
    if (!threaded) local_checksums(&job);
    hid_t *dsets = tr_malloc(sizeof(hid_t) * (size_t)n_groups * m->n_params);

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
        for (int i = 0; i < m->n_params; i++) {
            const struct param *p = &m->p[i];
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
            dsets[grp * m->n_params + i] = dset;
            H5Sclose(mspace);
            H5Sclose(fspace);
            if (grp == 0 && i == m->n_params / 2) {
                fault_point("ckpt", step);
                fault_slow_ckpt();
            }
        }
    H5Pclose(lcpl);
    H5Pclose(dxpl);
    if (threaded) pthread_join(cks_thread, NULL);
    reduce_checksums(m, n_groups, sums);
    for (int j = 0; j < n_groups * m->n_params; j++) {
        write_attr(dsets[j], "checksum", H5T_NATIVE_UINT64, &sums[j]);
        H5Dclose(dsets[j]);
    }
    tr_free(dsets);
    char *cfg_text = config_to_string(&m->cfg);
    write_attr_str(file, "format", CKPT_FORMAT);
    write_attr_i64(file, "format_version", CKPT_FORMAT_VERSION);
    write_attr_i64(file, "step", step);
    write_attr_i64(file, "optimizer_step", o ? o->t : 0);
    write_attr_i64(file, "has_optimizer", o != NULL);
    write_attr_i64(file, "seed", m->cfg.seed);
    write_attr_i64(file, "data_position", step); /* windows are a function of (seed, step) */
    write_attr_str(file, "loss_scaler", "none (fp32)");
    write_attr_str(file, "config", cfg_text);
    tr_free(cfg_text);
    tr_free(sums);
    if (H5Fclose(file) < 0)
        tr_abort(__FILE__, __LINE__, "closing checkpoint '%s' failed (disk full or I/O error); "
                 "the previous checkpoint is intact: free space and start again to resume", tmp);

    /* publish: only a complete file ever carries the final name */
    fault_point("rename", step);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
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
        int *steps;
        int n = list_steps(run_dir, &steps, 0);
        for (int i = keep; i < n; i++) {
            char old[CFG_STR_MAX + 64];
            ckpt_path(old, sizeof old, run_dir, steps[i], "");
            unlink(old);
        }
        free(steps);
    }
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
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
    char *text = read_attr_str(file, "config");
    if (!text) tr_fail(TR_EXIT_USAGE, NULL, "checkpoint '%s' has no config attribute", path);
    config_from_string(cfg, text, path);
    tr_free(text);
    H5Fclose(file);
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
static int load_impl(const char *path, struct model *m, struct optim *o, char *err,
                     size_t err_len) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = open_checked(path, err, err_len);
    if (file < 0) return -1;
    int64_t step = -1, has_opt = 0, opt_step = 0;
    read_attr_i64(file, "step", &step);
    read_attr_i64(file, "has_optimizer", &has_opt);
    read_attr_i64(file, "optimizer_step", &opt_step);
    char *text = read_attr_str(file, "config");
    int bad = step < 0 || !text;
    if (bad) snprintf(err, err_len, "'%s' lacks its step or config attribute", path);
    if (!bad) {
        struct config saved;
        config_defaults(&saved);
        config_from_string(&saved, text, path);
        char why[256];
        if (arch_mismatch(&saved, &m->cfg, why, sizeof why)) {
            snprintf(err, err_len, "'%s' is a checkpoint of another architecture: %s", path, why);
            bad = 2;
        }
    }
    tr_free(text);
    if (!bad && o && !has_opt) {
        snprintf(err, err_len, "'%s' holds no optimizer state, so training cannot resume from "
                 "it", path);
        bad = 1;
    }
    int n_groups = o ? 3 : 1;
    float *data[3] = {group_data(m, o, 0), group_data(m, o, 1), group_data(m, o, 2)};
    uint64_t *stored = tr_calloc((size_t)n_groups * m->n_params, sizeof(uint64_t));
    hid_t dxpl = collective_dxpl();
    for (int grp = 0; grp < n_groups && !bad; grp++)
        for (int i = 0; i < m->n_params && !bad; i++) {
            const struct param *p = &m->p[i];
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
                snprintf(err, err_len, "tensor '%s' in '%s' has the wrong shape (another "
                         "architecture?)", name, path);
                bad = 2;
            } else {
                hid_t mspace;
                select_box(p, p->local_start, p->local_shape, p->n_local, fspace, &mspace);
                float *dst = data[grp] + (p->n_local ? p->offset : 0);
                if (H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, dst) < 0) {
                    snprintf(err, err_len, "reading tensor '%s' from '%s' failed (truncated "
                             "file?)", name, path);
                    bad = 1;
                }
                if (read_attr(dset, "checksum", H5T_NATIVE_UINT64, &stored[grp * m->n_params + i]) != 0) {
                    snprintf(err, err_len, "tensor '%s' in '%s' has no checksum", name, path);
                    bad = 1;
                }
                H5Sclose(mspace);
            }
            H5Sclose(fspace);
            H5Dclose(dset);
        }
    H5Pclose(dxpl);
    H5Fclose(file);
    /* every rank must agree on the verdict before the collective checksum pass */
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (!bad) {
        uint64_t *sums = tr_calloc((size_t)n_groups * m->n_params, sizeof(uint64_t));
        struct checksum_job job = {m, n_groups, data, sums, 1};
        local_checksums(&job);
        reduce_checksums(m, n_groups, sums);
        for (int j = 0; j < n_groups * m->n_params && !bad; j++)
            if (sums[j] != stored[j]) {
                snprintf(err, err_len, "tensor '%s/%s' in '%s' fails its checksum (the file is "
                         "corrupt)", GROUPS[j / m->n_params], m->p[j % m->n_params].name, path);
                bad = 1;
            }
        tr_free(sums);
    } else if (err[0] == '\0') {
        snprintf(err, err_len, "'%s' could not be read on another rank", path);
    }
    tr_free(stored);
    if (bad) return bad == 2 ? -2 : -1;
    if (o) o->t = (int)opt_step;
    return (int)step;
}

int ckpt_load(const char *path, struct model *m, struct optim *o) {
    char err[CFG_STR_MAX * 2];
    err[0] = '\0';
    int step = load_impl(path, m, o, err, sizeof err);
    if (step < 0)
        tr_fail(TR_EXIT_USAGE, "point at a complete checkpoint of this model (run_dir/ckpt-*.h5)",
                "%s", err);
    return step;
}

int ckpt_find_latest(const char *run_dir, char *path, size_t path_len) {
    struct stat st;
    if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    int *steps;
    int n = list_steps(run_dir, &steps, tr_rank() == 0);
    int found = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int i = 0; i < n && found < 0; i++) {
        char p[CFG_STR_MAX + 64], err[CFG_STR_MAX * 2];
        ckpt_path(p, sizeof p, run_dir, steps[i], "");
        hid_t file = open_checked(p, err, sizeof err);
        if (file >= 0) {
            H5Fclose(file);
            snprintf(path, path_len, "%s", p);
            found = 0;
        } else {
            tr_warn("skipping checkpoint: %s", err);
        }
    }
    free(steps);
    return found;
}

int ckpt_resume_latest(const char *run_dir, struct model *m, struct optim *o, char *path,
                       size_t path_len) {
    int *steps;
    int n = list_steps(run_dir, &steps, tr_rank() == 0);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    int step = -1;
    for (int i = 0; i < n && step < 0; i++) {
        char err[CFG_STR_MAX * 2];
        err[0] = '\0';
        ckpt_path(path, path_len, run_dir, steps[i], "");
        step = load_impl(path, m, o, err, sizeof err);
        if (step == -2) tr_fail(TR_EXIT_USAGE, "use another run_dir for another model", "%s", err);
        if (step < 0)
            tr_warn("%s; falling back to the previous checkpoint", err);
    }
    free(steps);
    return step;
}
