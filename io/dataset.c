/* dataset.c — token corpus reader (see dataset.h).
 *
 * Both read paths plan a request the same way: the windows are sorted and merged into
 * disjoint ranges of the split (global coordinates), the ranges are cut at file
 * boundaries into pieces, the pieces are read into one packed uint16 buffer — by HDF5
 * on the caller's thread, or by pread() on the background thread (or on the caller's,
 * when dataset_wait() finds the request not started) — and every window is copied out
 * of that buffer. Only the middle step differs, so the paths return the same tokens by
 * construction, and the tests compare them anyway.
 */
#include "dataset.h"

#include "comm.h"
#include "common.h"
#include "prep.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <hdf5.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Windows closer than this many tokens are read as one range: reading a 2 KiB gap
 * costs less than another I/O request. */
#define DS_COALESCE_GAP 1024
/* HDF5 1.10 builds a union of n hyperslabs in O(n^2) time (8192 ranges: ~0.8 s, more
 * than reading them one by one), so more ranges than this are read by several
 * H5Dreads of this many ranges each; a training step's windows fit in one. */
#define DS_MAX_RANGES_PER_READ 256
/* Requests queued at once: the thread reads the next one while the caller holds the
 * results of the previous one (double buffering). */
#define DS_DEPTH 2
/* Corpora up to this many bytes of tokens are verified inside dataset_open; larger ones
 * on a thread of their own (TRIDENT_VERIFY_SYNC_BYTES overrides it, for the tests). */
#define DS_VERIFY_SYNC_BYTES ((int64_t)64 << 20)
#define DS_VERIFY_BLOCK      ((int64_t)1 << 20)   /* tokens read per step of the scan */
#define DS_HINT_DAMAGED                                                                  \
    "the token file is damaged: re-create it with trident prep (or restore a copy)"

#define DS_HINT_PREP "create it with: trident prep --out FILE.h5 TEXT..."
#define DS_HINT_CORPUS                                                                   \
    "data is a token file, a comma-separated list of them, or a pattern such as "        \
    "'data/corpus-*-of-00008.h5' (made by: trident prep --shards 8 --out data/corpus.h5 " \
    "TEXT...)"

static const char *const ds_split_names[2] = {"/train/tokens", "/val/tokens"};

/* One token file of the corpus. */
struct ds_file {
    char   *path;
    hid_t   file, dset[2];
    int64_t n_tokens[2], n_docs[2];
    int64_t first[2];        /* global index of its first token in each split */
    int64_t byte_offset[2];  /* of the raw uint16 LE array, for pread(); -1: HDF5 only */
    int     fd;              /* the background thread's descriptor, or -1 */
    int      has_checksum[2];/* prep wrote `checksum` on the array (files before it: 0) */
    uint64_t checksum[2];
};

/* What the scan of the token data found: every token < vocab_size and every stored
 * checksum matching, or the first thing wrong. */
struct ds_verdict {
    int  bad;
    char msg[1024];
};

/* A read, planned: what to read (pieces of files) and where each window lands. */
struct ds_window {
    int64_t offset;          /* global, in the split */
    int     index;           /* position in the caller's order */
};
struct ds_piece {
    int     file;
    int64_t start, count;    /* tokens of that file's split; stored after the previous
                                piece in `packed` */
};
struct ds_plan {
    enum dataset_split split;
    int               n_windows, len, n_ranges, n_pieces;
    struct ds_window *w;             /* sorted by offset */
    int64_t          *start, *count; /* merged ranges, global, in file order */
    struct ds_piece  *piece;
    uint16_t         *packed;        /* the ranges' tokens, back to back */
    size_t            cap_windows, cap_pieces, cap_packed;  /* reused by the next plan,
                                        so a training loop stops allocating after step 1 */
};

enum ds_state { DS_FREE, DS_QUEUED, DS_READING, DS_DONE };

/* One slot of the prefetch queue. The caller owns a FREE slot; a QUEUED one goes to
 * whoever marks it READING first (the thread, or the caller in dataset_wait); the
 * caller owns it again when DONE. Only `state` is shared, under dataset.mu. */
struct ds_request {
    enum ds_state  state;
    struct ds_plan plan;
    int32_t       *out;              /* the windows, as dataset_wait() hands them out */
    size_t         cap_out;
    int64_t        bad_at;           /* global index of the first token >= vocab_size, or -1 */
    int            bad_token;
    char           err[512];         /* I/O error of the read, "" when none */
};

struct dataset {
    char           *spec, *tokenizer;
    int             vocab_size, eot_token, n_files;
    struct ds_file *files;
    int64_t         n_tokens[2], n_docs[2];
    hid_t           dxpl;
    int             async;           /* 1: a background thread serves the prefetches */
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             stop;            /* under mu: the thread exits */
    struct ds_request req[DS_DEPTH];
    int             head, tail;      /* caller: next slot to fill / to hand out */
    int             serve;           /* under mu: oldest slot nobody reads yet */
    /* Verification of the token data (rank 0 of the communicator only, see dataset_open) */
    int             verifying;       /* 1: the verify thread runs or has not been joined */
    pthread_t       verify_thread;
    int             verify_stop;     /* atomic: dataset_close asks the thread to stop */
    struct ds_verdict verdict;       /* the thread's; read after joining it */
};

/* Every HDF5 call is checked; the message names the file and the object. */
static int64_t ds_h5(int64_t rc, const char *call, const char *path, const char *obj, int line) {
    if (rc < 0) tr_abort(__FILE__, line, "HDF5 call failed: %s (file '%s', %s)", call, path, obj);
    return rc;
}
#define DS_H5(call, path, obj) ds_h5((int64_t)(call), #call, (path), (obj), __LINE__)

static void ds_fail_job(const char *msg) __attribute__((noreturn));

/* ---------------------------------------------------------------------------------- */
/* Validation: each check failing is a bad file, reported the same way on every rank. */

static void ds_bad_file(const char *path, const char *what, const char *name) {
    tr_fail(TR_EXIT_USAGE, DS_HINT_PREP, "'%s' is not a trident token file: %s '%s'", path,
            what, name);
}

static hid_t ds_attr_open(const char *path, hid_t file, const char *name, H5T_class_t cls) {
    if (DS_H5(H5Aexists(file, name), path, name) == 0) ds_bad_file(path, "missing attribute", name);
    hid_t a = DS_H5(H5Aopen(file, name, H5P_DEFAULT), path, name);
    hid_t space = DS_H5(H5Aget_space(a), path, name);
    hid_t type = DS_H5(H5Aget_type(a), path, name);
    int ok = H5Sget_simple_extent_npoints(space) == 1 && H5Tget_class(type) == cls;
    DS_H5(H5Tclose(type), path, name);
    DS_H5(H5Sclose(space), path, name);
    if (!ok)
        ds_bad_file(path, cls == H5T_STRING ? "expected one string in attribute"
                                            : "expected one integer in attribute", name);
    return a;
}

static int64_t ds_attr_i64(const char *path, hid_t file, const char *name) {
    hid_t a = ds_attr_open(path, file, name, H5T_INTEGER);
    int64_t v = 0;  /* HDF5 converts whatever integer type the file stores */
    DS_H5(H5Aread(a, H5T_NATIVE_INT64, &v), path, name);
    DS_H5(H5Aclose(a), path, name);
    return v;
}

/* A string attribute, fixed-length (as prep writes it) or variable-length (as h5py
 * writes by default). The caller frees it. */
static char *ds_attr_str(const char *path, hid_t file, const char *name) {
    hid_t a = ds_attr_open(path, file, name, H5T_STRING);
    hid_t ftype = DS_H5(H5Aget_type(a), path, name);
    hid_t mtype = DS_H5(H5Tcopy(H5T_C_S1), path, name);
    /* HDF5 converts no string between ASCII and UTF-8: read in the file's encoding. */
    DS_H5(H5Tset_cset(mtype, H5Tget_cset(ftype)), path, name);
    char *s;
    if (DS_H5(H5Tis_variable_str(ftype), path, name)) {
        char *v = NULL;
        DS_H5(H5Tset_size(mtype, H5T_VARIABLE), path, name);
        DS_H5(H5Aread(a, mtype, &v), path, name);
        s = strdup(v ? v : "");
        H5free_memory(v);
    } else {
        size_t n = H5Tget_size(ftype) + 1;  /* +1: NUL even for a NULLPAD string */
        DS_H5(H5Tset_size(mtype, n), path, name);
        DS_H5(H5Tset_strpad(mtype, H5T_STR_NULLTERM), path, name);
        s = calloc(n, 1);
        if (s) DS_H5(H5Aread(a, mtype, s), path, name);
    }
    if (!s) TR_ABORT("out of memory reading attribute '%s' of '%s'", name, path);
    DS_H5(H5Tclose(mtype), path, name);
    DS_H5(H5Tclose(ftype), path, name);
    DS_H5(H5Aclose(a), path, name);
    return s;
}

/* Opens /train/tokens or /val/tokens after checking it is a 1-D uint16 array. */
static hid_t ds_tokens_open(const char *path, hid_t file, const char *name, int64_t *n_tokens) {
    const char *group = name[1] == 't' ? "/train" : "/val";
    if (DS_H5(H5Lexists(file, group, H5P_DEFAULT), path, group) == 0 ||
        DS_H5(H5Lexists(file, name, H5P_DEFAULT), path, name) == 0 ||
        DS_H5(H5Oexists_by_name(file, name, H5P_DEFAULT), path, name) == 0)
        ds_bad_file(path, "missing dataset", name);
    /* H5Oopen + H5Iget_type: the same on HDF5 1.10 and 1.12+, unlike H5Oget_info. */
    hid_t d = DS_H5(H5Oopen(file, name, H5P_DEFAULT), path, name);
    if (H5Iget_type(d) != H5I_DATASET)
        ds_bad_file(path, "expected a dataset, found a group at", name);
    hid_t type = DS_H5(H5Dget_type(d), path, name);
    hid_t space = DS_H5(H5Dget_space(d), path, name);
    hsize_t dims[1] = {0};
    int ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 2 &&
             H5Tget_sign(type) == H5T_SGN_NONE && H5Sget_simple_extent_ndims(space) == 1;
    if (ok) DS_H5(H5Sget_simple_extent_dims(space, dims, NULL), path, name);
    DS_H5(H5Sclose(space), path, name);
    DS_H5(H5Tclose(type), path, name);
    if (!ok) ds_bad_file(path, "expected a 1-D uint16 array in dataset", name);
    *n_tokens = (int64_t)dims[0];
    return d;
}


/* A file made by prep (or anything that follows the format) with the numbers checked
 * against each other, so a truncated or hand-edited file is refused before training. */
static void ds_validate(struct ds_file *df, int *vocab_size, int *eot_token, char **tokenizer) {
    const char *p = df->path;
    hid_t f = df->file;
    char *format = ds_attr_str(p, f, "format");
    if (strcmp(format, PREP_FORMAT) != 0)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP,
                "'%s' is not a trident token file: attribute 'format' is '%s', expected '%s'", p,
                format, PREP_FORMAT);
    free(format);
    int64_t version = ds_attr_i64(p, f, "format_version");
    if (version != PREP_FORMAT_VERSION)
        tr_fail(TR_EXIT_USAGE,
                "re-create the file with this trident: trident prep --out FILE.h5 TEXT...",
                "'%s': token file format_version %lld is not supported (this trident reads "
                "version %d)", p, (long long)version, PREP_FORMAT_VERSION);
    int64_t vocab = ds_attr_i64(p, f, "vocab_size"), eot = ds_attr_i64(p, f, "eot_token");
    if (vocab < 1 || vocab > 65536)  /* tokens are stored as uint16 */
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP, "'%s': vocab_size %lld is outside 1..65536", p,
                (long long)vocab);
    if (eot < 0 || eot >= vocab)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP,
                "'%s': eot_token %lld is outside the vocabulary 0..%lld", p, (long long)eot,
                (long long)vocab - 1);
    *vocab_size = (int)vocab;
    *eot_token = (int)eot;
    *tokenizer = ds_attr_str(p, f, "tokenizer");
    static const char *const n_tokens_attr[2] = {"n_train_tokens", "n_val_tokens"};
    static const char *const n_docs_attr[2] = {"n_train_docs", "n_val_docs"};
    for (int s = 0; s < 2; s++) {
        df->dset[s] = ds_tokens_open(p, f, ds_split_names[s], &df->n_tokens[s]);
        int64_t expected = ds_attr_i64(p, f, n_tokens_attr[s]);
        if (expected != df->n_tokens[s])
            tr_fail(TR_EXIT_USAGE, "the file is damaged or incomplete; " DS_HINT_PREP,
                    "'%s': dataset '%s' holds %lld tokens but attribute '%s' says %lld", p,
                    ds_split_names[s], (long long)df->n_tokens[s], n_tokens_attr[s],
                    (long long)expected);
        df->n_docs[s] = ds_attr_i64(p, f, n_docs_attr[s]);
        /* The attributes prep writes since token files carry checksums; older files
         * have neither and are checked by the scan alone (see dataset_open). */
        hid_t d = df->dset[s];
        if (DS_H5(H5Aexists(d, "max_token"), p, "max_token")) {
            int64_t max_token = ds_attr_i64(p, d, "max_token");
            if (max_token >= vocab)
                tr_fail(TR_EXIT_USAGE, "the file does not match its own vocabulary; " DS_HINT_PREP,
                        "'%s': %s holds token ids up to %lld (attribute 'max_token') but the "
                        "file's vocab_size is %lld", p, ds_split_names[s], (long long)max_token,
                        (long long)vocab);
        }
        df->has_checksum[s] = (int)DS_H5(H5Aexists(d, "checksum"), p, "checksum");
        if (df->has_checksum[s]) {
            hid_t a = ds_attr_open(p, d, "checksum", H5T_INTEGER);
            DS_H5(H5Aread(a, H5T_NATIVE_UINT64, &df->checksum[s]), p, "checksum");
            DS_H5(H5Aclose(a), p, "checksum");
        }
    }
}

/* Where a token array starts in the file when pread() can read it as it is —
 * contiguous, unfiltered, not external, little-endian — or -1 with *why set. */
static int64_t ds_raw_offset(const struct ds_file *df, int s, const char **why) {
    const char *p = df->path, *name = ds_split_names[s];
    hid_t dcpl = DS_H5(H5Dget_create_plist(df->dset[s]), p, name);
    hid_t type = DS_H5(H5Dget_type(df->dset[s]), p, name);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int n_filters = (int)DS_H5(H5Pget_nfilters(dcpl), p, name);
    int n_external = (int)DS_H5(H5Pget_external_count(dcpl), p, name);
    H5T_order_t order = H5Tget_order(type);
    DS_H5(H5Tclose(type), p, name);
    DS_H5(H5Pclose(dcpl), p, name);
    *why = layout != H5D_CONTIGUOUS ? "not contiguous (chunked or compact)"
         : n_filters > 0            ? "filtered (compressed)"
         : n_external > 0           ? "stored in an external file"
         : order != H5T_ORDER_LE    ? "big-endian"
                                    : NULL;
    if (*why) return -1;
    if (df->n_tokens[s] == 0) return 0;  /* nothing will ever be read */
    haddr_t at = H5Dget_offset(df->dset[s]);
    if (at == HADDR_UNDEF) {
        *why = "not allocated in the file";
        return -1;
    }
    return (int64_t)at;
}

/* Opens and validates one file of the corpus (collective over comm). */
static void ds_file_open(struct ds_file *df, hid_t fapl, int *vocab_size, int *eot_token,
                         char **tokenizer) {
    const char *path = df->path;
    /* The common mistakes are checked before HDF5 sees them, so the user reads one line
     * that says what is wrong instead of an HDF5 error stack. */
    if (access(path, R_OK) != 0)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP, "cannot open token file '%s': %s", path,
                strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP,
                "'%s' is not a trident token file: not an HDF5 file", path);
    df->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (df->file < 0)
        tr_fail(TR_EXIT_USAGE,
                "if the file system does not support locking, set HDF5_USE_FILE_LOCKING=FALSE",
                "cannot open token file '%s' with HDF5 (see the HDF5 error above)", path);
    ds_validate(df, vocab_size, eot_token, tokenizer);
}

/* ---------------------------------------------------------------------------------- */
/* The corpus: which files, in which order */

struct ds_names {
    char  *p;                 /* NUL-terminated names back to back: what is broadcast */
    size_t n, cap;
};

static void ds_names_add(struct ds_names *b, const char *name) {
    size_t len = strlen(name) + 1;
    if (b->n + len > b->cap) {
        size_t cap = TR_MAX(2 * b->cap, b->n + len + 256);
        char *p = tr_malloc(cap);
        if (b->n) memcpy(p, b->p, b->n);
        tr_free(b->p);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, name, len);
    b->n += len;
}

static int ds_name_cmp(const void *a, const void *b) {
    /* strcmp, not glob's strcoll: the corpus order must not depend on the locale. */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files `spec` names, in order (see dataset_open). Returns 0, or 1 with the reason
 * in err. */
static int ds_expand(const char *spec, struct ds_names *names, char *err, size_t err_cap) {
    char *copy = strdup(spec);
    if (!copy) TR_ABORT("out of memory");
    int rc = 0;
    for (char *item = copy, *next; item && rc == 0; item = next) {
        next = strchr(item, ',');
        if (next) *next++ = '\0';
        while (*item == ' ' || *item == '\t') item++;  /* "a.h5, b.h5" reads naturally */
        for (char *e = item + strlen(item); e > item && (e[-1] == ' ' || e[-1] == '\t');)
            *--e = '\0';
        if (!*item) {
            snprintf(err, err_cap, "data '%s': empty file name in the list", spec);
            rc = 1;
        } else if (!strpbrk(item, "*?[")) {
            ds_names_add(names, item);
        } else {
            glob_t g;
            int grc = glob(item, 0, NULL, &g);
            if (grc == 0) {
                qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), ds_name_cmp);
                for (size_t i = 0; i < g.gl_pathc; i++) ds_names_add(names, g.gl_pathv[i]);
            } else {
                snprintf(err, err_cap, "data '%s': %s '%s'", spec,
                         grc == GLOB_NOMATCH ? "no file matches the pattern"
                                             : "cannot read the directories of the pattern",
                         item);
                rc = 1;
            }
            globfree(&g);
        }
    }
    free(copy);
    return rc;
}

/* Rank 0 expands the spec and broadcasts the list (or the reason there is none), so
 * every rank opens the same files in the same order even if a directory changes in
 * between, and a bad spec fails on every rank alike. */
static void ds_open_files(struct dataset *ds, const struct comm *c) {
    int rank = comm_rank(c, COMM_WORLD);
    struct ds_names names = {0};
    char err[1024] = "";
    int head[2] = {0, 0};  /* failed, bytes that follow */
    if (rank == 0) {
        head[0] = ds_expand(ds->spec, &names, err, sizeof(err));
        head[1] = head[0] ? (int)strlen(err) + 1 : (int)names.n;
    }
    comm_bcast(c, COMM_WORLD, head, 2, COMM_I32, 0);
    char *msg = tr_malloc((size_t)head[1] + 1);
    if (rank == 0) memcpy(msg, head[0] ? err : names.p, (size_t)head[1]);
    comm_bcast(c, COMM_WORLD, msg, head[1], COMM_U8, 0);
    if (head[0]) tr_fail(TR_EXIT_USAGE, DS_HINT_CORPUS, "%s", msg);
    for (int i = 0; i < head[1]; i++) ds->n_files += msg[i] == '\0';
    ds->files = tr_calloc((size_t)ds->n_files, sizeof(*ds->files));
    const char *name = msg;
    for (int i = 0; i < ds->n_files; i++, name += strlen(name) + 1) {
        ds->files[i].path = strdup(name);
        if (!ds->files[i].path) TR_ABORT("out of memory");
        ds->files[i].fd = -1;
    }
    tr_free(msg);
    tr_free(names.p);
}

/* ---------------------------------------------------------------------------------- */
/* Planning and reading */

static void *ds_thread_main(void *arg);

static int ds_window_cmp(const void *a, const void *b) {
    const struct ds_window *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Sorts and merges the windows into ranges and cuts the ranges at file boundaries.
 * Runs on the caller's thread, so a bad request aborts where it was made. */
static void ds_plan_make(const struct dataset *ds, struct ds_plan *p, enum dataset_split split,
                         const int64_t *offsets, int n_windows, int len) {
    if (split != DS_TRAIN && split != DS_VAL) TR_ABORT("bad split %d", (int)split);
    if (n_windows < 0 || (n_windows > 0 && len <= 0))
        TR_ABORT("bad window request: %d windows of %d tokens", n_windows, len);
    p->split = split;
    p->n_windows = n_windows;
    p->len = len;
    p->n_ranges = p->n_pieces = 0;
    if (n_windows == 0) return;
    const char *name = ds_split_names[split];
    int64_t n_tokens = ds->n_tokens[split];
    if ((size_t)n_windows > p->cap_windows) {
        tr_free(p->w), tr_free(p->start), tr_free(p->count);
        p->w = tr_malloc(sizeof(*p->w) * (size_t)n_windows);
        p->start = tr_malloc(sizeof(int64_t) * (size_t)n_windows);
        p->count = tr_malloc(sizeof(int64_t) * (size_t)n_windows);
        p->cap_windows = (size_t)n_windows;
    }
    for (int i = 0; i < n_windows; i++) {
        if (offsets[i] < 0 || offsets[i] > n_tokens - len)
            TR_ABORT("window %d [%lld, %lld) is outside %s of '%s' (%lld tokens)", i,
                     (long long)offsets[i], (long long)offsets[i] + len, name, ds->spec,
                     (long long)n_tokens);
        p->w[i].offset = offsets[i];
        p->w[i].index = i;
    }
    qsort(p->w, (size_t)n_windows, sizeof(*p->w), ds_window_cmp);

    int64_t n_packed = 0;
    for (int i = 0; i < n_windows; i++) {
        int64_t s = p->w[i].offset, e = s + len;
        int r = p->n_ranges - 1;
        if (r >= 0 && s <= p->start[r] + p->count[r] + DS_COALESCE_GAP)
            p->count[r] = TR_MAX(p->count[r], e - p->start[r]);
        else
            p->start[r + 1] = s, p->count[r + 1] = len, p->n_ranges++;
    }
    /* Disjoint ranges cross each of the n_files - 1 boundaries at most once in all. */
    size_t max_pieces = (size_t)p->n_ranges + (size_t)ds->n_files;
    if (max_pieces > p->cap_pieces) {
        tr_free(p->piece);
        p->piece = tr_malloc(sizeof(*p->piece) * max_pieces);
        p->cap_pieces = max_pieces;
    }
    int f = 0;
    for (int r = 0; r < p->n_ranges; r++) {
        int64_t s = p->start[r], e = s + p->count[r];
        n_packed += p->count[r];
        while (s < e) {
            const struct ds_file *df = &ds->files[f];
            int64_t file_end = df->first[split] + df->n_tokens[split];
            if (s >= file_end) {  /* also skips files with an empty split */
                f++;
                continue;
            }
            int64_t piece_end = TR_MIN(e, file_end);
            p->piece[p->n_pieces++] =
                (struct ds_piece){f, s - df->first[split], piece_end - s};
            s = piece_end;
        }
    }
    if ((size_t)n_packed > p->cap_packed) {
        tr_free(p->packed);
        p->packed = tr_malloc(sizeof(uint16_t) * (size_t)n_packed);
        p->cap_packed = (size_t)n_packed;
    }
}

static void ds_plan_free(struct ds_plan *p) {
    tr_free(p->w), tr_free(p->start), tr_free(p->count), tr_free(p->piece), tr_free(p->packed);
}

/* The synchronous path: one H5Dread per file for its consecutive pieces (up to
 * DS_MAX_RANGES_PER_READ), as a union of hyperslabs. */
static void ds_plan_read_h5(const struct dataset *ds, struct ds_plan *p) {
    const char *name = ds_split_names[p->split];
    uint16_t *dst = p->packed;
    for (int i0 = 0, i1; i0 < p->n_pieces; i0 = i1) {
        const struct ds_file *df = &ds->files[p->piece[i0].file];
        hid_t d = df->dset[p->split];
        hid_t fspace = DS_H5(H5Dget_space(d), df->path, name);
        hsize_t n_batch = 0;
        for (i1 = i0; i1 < p->n_pieces && i1 - i0 < DS_MAX_RANGES_PER_READ &&
                      p->piece[i1].file == p->piece[i0].file; i1++) {
            hsize_t start = (hsize_t)p->piece[i1].start, count = (hsize_t)p->piece[i1].count;
            DS_H5(H5Sselect_hyperslab(fspace, i1 == i0 ? H5S_SELECT_SET : H5S_SELECT_OR, &start,
                                      NULL, &count, NULL), df->path, name);
            n_batch += count;
        }
        hid_t mspace = DS_H5(H5Screate_simple(1, &n_batch, NULL), df->path, name);
        DS_H5(H5Dread(d, H5T_NATIVE_UINT16, mspace, fspace, ds->dxpl, dst), df->path, name);
        DS_H5(H5Sclose(mspace), df->path, name);
        DS_H5(H5Sclose(fspace), df->path, name);
        dst += n_batch;
    }
}

/* The background path: pread() at the array's byte offset, little-endian to native.
 * Runs on the prefetch thread, so it calls neither HDF5 nor MPI and never aborts: an
 * error goes to err, and dataset_wait() reports it. Returns 0 or -1. */
static int ds_plan_read_raw(const struct dataset *ds, struct ds_plan *p, char *err,
                            size_t err_cap) {
    uint16_t *dst = p->packed;
    for (int i = 0; i < p->n_pieces; i++) {
        const struct ds_piece *pc = &p->piece[i];
        const struct ds_file *df = &ds->files[pc->file];
        char *buf = (char *)dst;
        size_t n_left = sizeof(uint16_t) * (size_t)pc->count;
        off_t at = (off_t)(df->byte_offset[p->split] + (int64_t)sizeof(uint16_t) * pc->start);
        while (n_left > 0) {
            ssize_t n = pread(df->fd, buf, n_left, at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                char why[256];
                snprintf(err, err_cap, "cannot read tokens [%lld, %lld) of %s in '%s': %s",
                         (long long)pc->start, (long long)(pc->start + pc->count),
                         ds_split_names[p->split], df->path,
                         n < 0 ? strerror_r(errno, why, sizeof(why))
                               : "unexpected end of file (was it truncated?)");
                return -1;
            }
            buf += n, n_left -= (size_t)n, at += n;
        }
        for (int64_t j = 0; j < pc->count; j++) dst[j] = le16toh(dst[j]);  /* no-op on x86 */
        dst += pc->count;
    }
    return 0;
}

/* Copies every window out of the packed ranges to out[index*len ...]. Returns the
 * global index of the first token >= vocab_size (and the token in *bad_token), or -1:
 * one compare per token guards the embedding lookup against a corrupt file. */
static int64_t ds_plan_scatter(const struct ds_plan *p, int vocab_size, int32_t *out,
                               int *bad_token) {
    const size_t len = (size_t)p->len;
    int max_token = 0;
    int64_t base = 0;  /* packed index of range r */
    for (int i = 0, r = 0; i < p->n_windows; i++) {
        int64_t s = p->w[i].offset;
        while (s >= p->start[r] + p->count[r]) base += p->count[r++];
        const uint16_t *src = p->packed + base + (s - p->start[r]);
        int32_t *dst = out + (size_t)p->w[i].index * len;
        for (size_t j = 0; j < len; j++) {
            dst[j] = src[j];
            max_token = TR_MAX(max_token, (int)src[j]);
        }
    }
    if (max_token < vocab_size) return -1;
    for (int i = 0; i < p->n_windows; i++) {  /* rare: find it for the message */
        const int32_t *o = out + (size_t)p->w[i].index * len;
        for (size_t j = 0; j < len; j++)
            if (o[j] >= vocab_size) {
                *bad_token = o[j];
                return p->w[i].offset + (int64_t)j;
            }
    }
    return -1;
}

static void ds_report_bad_token(const struct dataset *ds, enum dataset_split split,
                                int64_t at, int token) {
    int f = 0;
    while (at >= ds->files[f].first[split] + ds->files[f].n_tokens[split]) f++;
    char msg[1024];
    snprintf(msg, sizeof msg,
             "corrupt token file '%s': %s holds token %d at index %lld, vocab_size is %d",
             ds->files[f].path, ds_split_names[split], token,
             (long long)(at - ds->files[f].first[split]), ds->vocab_size);
    ds_fail_job(msg);
}

/* ---------------------------------------------------------------------------------- */
/* Verification of the token data
 *
 * One rank (rank 0 of the communicator) reads every token of the corpus once, sums the
 * checksum and finds the largest id. Why one rank and not every reading rank: the corpus
 * is read once instead of once per data-parallel reader, and the verdict cannot differ
 * between ranks. Small corpora are verified inside dataset_open and the verdict is
 * broadcast, so every rank refuses a bad file together (exit 2). Larger ones are read by
 * a thread while the job sets up (model, checkpoint); rank 0 waits for the verdict
 * before it hands out any windows, and a bad one ends the whole job with exit 2 through
 * MPI_Abort: the other ranks are in training by then, where no collective of the data
 * layer can reach them. Their own reads stay guarded by the per-window token check. */

/* Scans one split of one file: through pread on fd when fd >= 0 (any thread), else
 * through HDF5 (the opening thread only). Returns 1 and fills v when it is bad. */
static int ds_verify_split(const struct dataset *ds, const struct ds_file *df, int s, int fd,
                           uint16_t *buf, struct ds_verdict *v) {
    const char *name = ds_split_names[s];
    uint64_t sum = 0;
    for (int64_t at = 0; at < df->n_tokens[s]; at += DS_VERIFY_BLOCK) {
        if (__atomic_load_n(&ds->verify_stop, __ATOMIC_RELAXED)) return 0;
        int64_t n = TR_MIN(DS_VERIFY_BLOCK, df->n_tokens[s] - at);
        if (fd >= 0) {
            size_t n_bytes = sizeof(uint16_t) * (size_t)n, done = 0;
            off_t off = (off_t)(df->byte_offset[s] + (int64_t)sizeof(uint16_t) * at);
            while (done < n_bytes) {
                ssize_t r = pread(fd, (char *)buf + done, n_bytes - done, off + (off_t)done);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    snprintf(v->msg, sizeof v->msg, "cannot read %s of '%s' to verify it: %s",
                             name, df->path, r < 0 ? strerror(errno) : "unexpected end of file");
                    return v->bad = 1;
                }
                done += (size_t)r;
            }
            for (int64_t j = 0; j < n; j++) buf[j] = le16toh(buf[j]);
        } else {
            hid_t fspace = DS_H5(H5Dget_space(df->dset[s]), df->path, name);
            hsize_t start = (hsize_t)at, count = (hsize_t)n;
            DS_H5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL),
                  df->path, name);
            hid_t mspace = DS_H5(H5Screate_simple(1, &count, NULL), df->path, name);
            DS_H5(H5Dread(df->dset[s], H5T_NATIVE_UINT16, mspace, fspace, ds->dxpl, buf),
                  df->path, name);
            DS_H5(H5Sclose(mspace), df->path, name);
            DS_H5(H5Sclose(fspace), df->path, name);
        }
        int max_token = 0;
        for (int64_t j = 0; j < n; j++) {
            sum += prep_token_mix((uint64_t)(at + j), buf[j]);
            max_token = TR_MAX(max_token, (int)buf[j]);
        }
        if (max_token >= ds->vocab_size) {
            int64_t j = 0;
            while (buf[j] < ds->vocab_size) j++;
            snprintf(v->msg, sizeof v->msg,
                     "'%s': %s holds token %d at index %lld, but the file's vocab_size is %d",
                     df->path, name, (int)buf[j], (long long)(at + j), ds->vocab_size);
            return v->bad = 1;
        }
    }
    if (df->has_checksum[s] && sum != df->checksum[s]) {
        snprintf(v->msg, sizeof v->msg,
                 "'%s': %s fails its checksum (stored %016llx, computed %016llx): the token "
                 "data changed after prep wrote it", df->path, name,
                 (unsigned long long)df->checksum[s], (unsigned long long)sum);
        return v->bad = 1;
    }
    return 0;
}

/* The whole corpus, file by file; stops at the first problem. `raw`: pread (the verify
 * thread), else HDF5 (dataset_open's thread). */
static void ds_verify(const struct dataset *ds, int raw, struct ds_verdict *v) {
    v->bad = 0;
    v->msg[0] = '\0';
    uint16_t *buf = tr_malloc(sizeof(uint16_t) * (size_t)DS_VERIFY_BLOCK);
    for (int i = 0; i < ds->n_files && !v->bad; i++) {
        const struct ds_file *df = &ds->files[i];
        int fd = -1;
        if (raw && (fd = open(df->path, O_RDONLY | O_CLOEXEC)) < 0) {
            snprintf(v->msg, sizeof v->msg, "cannot open '%s' to verify it: %s", df->path,
                     strerror(errno));
            v->bad = 1;
            break;
        }
        for (int s = 0; s < 2 && !v->bad; s++) ds_verify_split(ds, df, s, fd, buf, v);
        if (fd >= 0) close(fd);
    }
    tr_free(buf);
}

static void *ds_verify_main(void *arg) {
    struct dataset *ds = arg;
    ds_verify(ds, 1, &ds->verdict);
    return NULL;
}

/* A bad verdict found after dataset_open returned: the other ranks cannot be reached by
 * a collective of the data layer, so the job ends here, with the bad-input exit code. */
static void ds_fail_job(const char *msg) {
    fprintf(stderr, "trident: error: %s\nHINT: %s\n", msg, DS_HINT_DAMAGED);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, TR_EXIT_USAGE);
    exit(TR_EXIT_USAGE);
}

/* Before any window is handed out: the verdict of the background verification (rank 0
 * only; a no-op elsewhere and once it is known). */
static void ds_check_verdict(struct dataset *ds) {
    if (!ds->verifying) return;
    pthread_join(ds->verify_thread, NULL);
    ds->verifying = 0;
    if (ds->verdict.bad) ds_fail_job(ds->verdict.msg);
}

/* Collective: starts (or does) the verification on rank 0 and, when it is done here,
 * shares the verdict so every rank refuses a bad corpus together. */
static void ds_verify_start(struct dataset *ds, const struct comm *c, int all_raw) {
    int rank = comm_rank(c, COMM_WORLD);
    int head[2] = {0, 0};  /* bad, files without a checksum */
    struct ds_verdict *v = &ds->verdict;
    if (rank == 0) {
        int64_t n_bytes = 0;
        for (int i = 0; i < ds->n_files; i++)
            for (int s = 0; s < 2; s++) {
                n_bytes += (int64_t)sizeof(uint16_t) * ds->files[i].n_tokens[s];
                head[1] += !ds->files[i].has_checksum[s] && ds->files[i].n_tokens[s] > 0;
            }
        int64_t sync_max = DS_VERIFY_SYNC_BYTES;
        const char *env = getenv("TRIDENT_VERIFY_SYNC_BYTES");
        if (env && *env) sync_max = strtoll(env, NULL, 10);
        int background = all_raw && n_bytes > sync_max;
        if (background) {
            sigset_t all, old;  /* as the prefetch thread: signals stay with the caller */
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            int rc = pthread_create(&ds->verify_thread, NULL, ds_verify_main, ds);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (rc == 0) ds->verifying = 1;
            else background = 0;
        }
        if (!background) ds_verify(ds, 0, v);
        head[0] = v->bad;
    }
    comm_bcast(c, COMM_WORLD, head, 2, COMM_I32, 0);
    if (head[0]) {
        comm_bcast(c, COMM_WORLD, v->msg, sizeof v->msg, COMM_U8, 0);
        tr_fail(TR_EXIT_USAGE, DS_HINT_DAMAGED, "%s", v->msg);
    }
    if (head[1])
        tr_warn("token file%s of '%s' carry no checksum (written before prep added one): token "
                "ids are checked against the vocabulary, other damage is not detected; "
                "re-create %s with trident prep to add one", ds->n_files > 1 ? "s" : "",
                ds->spec, ds->n_files > 1 ? "them" : "it");
}

/* ---------------------------------------------------------------------------------- */
/* Open and close */

struct dataset *dataset_open(const char *spec, MPI_Comm comm) {
    struct dataset *ds = tr_calloc(1, sizeof(*ds));
    ds->spec = strdup(spec);
    if (!ds->spec) TR_ABORT("out of memory");
    struct comm c; /* the verdict broadcasts go through the comm layer, on comm */
    comm_init_on(&c, comm, COMM_BACKEND_MPI);
    ds_open_files(ds, &c);

    hid_t fapl = DS_H5(H5Pcreate(H5P_FILE_ACCESS), spec, "file access list");
    DS_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), spec, "file access list");
    /* Opening is collective, so let one rank read the metadata (superblock, groups,
     * attributes) and broadcast it instead of thousands of ranks hitting the parallel
     * file system for the same few KiB. Raw-data reads of the contiguous token arrays
     * stay independent: they need no metadata once the datasets are open. */
    DS_H5(H5Pset_all_coll_metadata_ops(fapl, 1), spec, "file access list");
    const char *slow_file = NULL, *slow_split = NULL, *slow_why = NULL;
    for (int i = 0; i < ds->n_files; i++) {
        struct ds_file *df = &ds->files[i];
        int vocab, eot;
        char *tokenizer;
        ds_file_open(df, fapl, &vocab, &eot, &tokenizer);
        if (i == 0) {
            ds->vocab_size = vocab, ds->eot_token = eot, ds->tokenizer = tokenizer;
        } else {
            /* Token ids mean something only under one tokenizer: a corpus is one. */
            if (vocab != ds->vocab_size || eot != ds->eot_token ||
                strcmp(tokenizer, ds->tokenizer) != 0)
                tr_fail(TR_EXIT_USAGE,
                        "all files of a corpus must come from the same tokenizer; re-create "
                        "the odd one with trident prep, or leave it out of data",
                        "'%s' does not match the first file of the corpus '%s': vocab_size "
                        "%d, eot_token %d, tokenizer '%s' instead of %d, %d, '%s'", df->path,
                        ds->files[0].path, vocab, eot, tokenizer, ds->vocab_size,
                        ds->eot_token, ds->tokenizer);
            free(tokenizer);
        }
        for (int s = 0; s < 2; s++) {
            df->first[s] = ds->n_tokens[s];
            ds->n_tokens[s] += df->n_tokens[s];
            ds->n_docs[s] += df->n_docs[s];
            const char *why;
            df->byte_offset[s] = ds_raw_offset(df, s, &why);
            if (df->byte_offset[s] < 0 && !slow_file)
                slow_file = df->path, slow_split = ds_split_names[s], slow_why = why;
        }
    }
    DS_H5(H5Pclose(fapl), spec, "file access list");
    ds->dxpl = DS_H5(H5Pcreate(H5P_DATASET_XFER), spec, "transfer list");
    DS_H5(H5Pset_dxpl_mpio(ds->dxpl, H5FD_MPIO_INDEPENDENT), spec, "transfer list");
    ds_verify_start(ds, &c, slow_file == NULL);

    if (pthread_mutex_init(&ds->mu, NULL) != 0 || pthread_cond_init(&ds->cv, NULL) != 0)
        TR_ABORT("cannot create the prefetch lock of '%s'", spec);
    ds->async = slow_file == NULL;
    if (!ds->async) {
        tr_warn("token file '%s': %s is %s, so prefetches are read synchronously through "
                "HDF5 (files written by trident prep are read in the background)",
                slow_file, slow_split, slow_why);
        return ds;
    }
    /* Its own descriptors: the thread never shares a file position or an HDF5 handle. */
    for (int i = 0; i < ds->n_files; i++) {
        ds->files[i].fd = open(ds->files[i].path, O_RDONLY | O_CLOEXEC);
        if (ds->files[i].fd < 0)
            TR_ABORT("cannot open token file '%s' for background reads: %s", ds->files[i].path,
                     strerror(errno));
    }
    /* The thread starts with every signal blocked, so Slurm's SIGUSR1/SIGTERM still
     * reach the training thread as they did before there was a second one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&ds->thread, NULL, ds_thread_main, ds);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) TR_ABORT("cannot start the prefetch thread of '%s': %s", spec, strerror(rc));
    return ds;
}

void dataset_close(struct dataset *ds) {
    if (!ds) return;
    if (ds->verifying) {  /* never read: the verdict no longer matters */
        __atomic_store_n(&ds->verify_stop, 1, __ATOMIC_RELAXED);
        pthread_join(ds->verify_thread, NULL);
        ds->verifying = 0;
    }
    if (ds->async) {
        pthread_mutex_lock(&ds->mu);
        ds->stop = 1;
        pthread_cond_broadcast(&ds->cv);
        pthread_mutex_unlock(&ds->mu);
        pthread_join(ds->thread, NULL);
    }
    pthread_cond_destroy(&ds->cv);
    pthread_mutex_destroy(&ds->mu);
    for (int k = 0; k < DS_DEPTH; k++) {
        ds_plan_free(&ds->req[k].plan);
        tr_free(ds->req[k].out);
    }
    for (int i = 0; i < ds->n_files; i++) {
        struct ds_file *df = &ds->files[i];
        if (df->fd >= 0) close(df->fd);
        for (int s = 0; s < 2; s++) DS_H5(H5Dclose(df->dset[s]), df->path, ds_split_names[s]);
        DS_H5(H5Fclose(df->file), df->path, "file");
        free(df->path);
    }
    DS_H5(H5Pclose(ds->dxpl), ds->spec, "transfer list");
    tr_free(ds->files);
    free(ds->spec);
    free(ds->tokenizer);
    tr_free(ds);
}

int         dataset_vocab_size(const struct dataset *ds) { return ds->vocab_size; }
int         dataset_eot_token(const struct dataset *ds) { return ds->eot_token; }
const char *dataset_tokenizer(const struct dataset *ds) { return ds->tokenizer; }
const char *dataset_path(const struct dataset *ds) { return ds->spec; }
int         dataset_n_files(const struct dataset *ds) { return ds->n_files; }
int         dataset_is_async(const struct dataset *ds) { return ds->async; }

int64_t dataset_n_tokens(const struct dataset *ds, enum dataset_split s) {
    return ds->n_tokens[s];
}
int64_t dataset_n_docs(const struct dataset *ds, enum dataset_split s) {
    return ds->n_docs[s];
}

/* ---------------------------------------------------------------------------------- */
/* Synchronous reads */

void dataset_read_windows(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                          int n_windows, int len, int32_t *out) {
    ds_check_verdict(ds);
    struct ds_plan p = {0};
    ds_plan_make(ds, &p, split, offsets, n_windows, len);
    ds_plan_read_h5(ds, &p);
    int bad_token = 0;
    int64_t bad_at = ds_plan_scatter(&p, ds->vocab_size, out, &bad_token);
    if (bad_at >= 0) ds_report_bad_token(ds, split, bad_at, bad_token);
    ds_plan_free(&p);
}

/* ---------------------------------------------------------------------------------- */
/* Prefetch */

/* Reads a request into r->out. On the background thread only when ds->async (pread,
 * never HDF5); the synchronous fallback runs on the caller's thread. */
static void ds_serve(struct dataset *ds, struct ds_request *r) {
    r->err[0] = '\0';
    r->bad_at = -1;
    if (!ds->async) ds_plan_read_h5(ds, &r->plan);
    else if (ds_plan_read_raw(ds, &r->plan, r->err, sizeof(r->err)) != 0) return;
    r->bad_at = ds_plan_scatter(&r->plan, ds->vocab_size, r->out, &r->bad_token);
}

/* Marks the oldest queued slot READING and returns it, or NULL. Under ds->mu. */
static struct ds_request *ds_take(struct dataset *ds) {
    struct ds_request *r = &ds->req[ds->serve];
    if (r->state != DS_QUEUED) return NULL;
    r->state = DS_READING;
    ds->serve = (ds->serve + 1) % DS_DEPTH;
    return r;
}

/* Serves the queued slots in order until dataset_close(). The read runs without the
 * lock, so the caller can queue the next request meanwhile. */
static void *ds_thread_main(void *arg) {
    struct dataset *ds = arg;
    pthread_mutex_lock(&ds->mu);
    while (!ds->stop) {
        struct ds_request *r = ds_take(ds);
        if (!r) {
            pthread_cond_wait(&ds->cv, &ds->mu);
            continue;
        }
        pthread_mutex_unlock(&ds->mu);
        ds_serve(ds, r);
        pthread_mutex_lock(&ds->mu);
        r->state = DS_DONE;
        pthread_cond_broadcast(&ds->cv);
    }
    pthread_mutex_unlock(&ds->mu);
    return NULL;
}

static enum ds_state ds_state_of(struct dataset *ds, const struct ds_request *r) {
    pthread_mutex_lock(&ds->mu);
    enum ds_state s = r->state;
    pthread_mutex_unlock(&ds->mu);
    return s;
}

size_t dataset_buffer_bytes(int n_windows, int len) {
    size_t n = (size_t)n_windows, tokens = n * (size_t)len;
    /* per queued request: the plan (windows, ranges, pieces with one per file at most
     * beyond the ranges; one file assumed), the packed tokens and the windows handed out */
    size_t plan = n * (sizeof(struct ds_window) + 2 * sizeof(int64_t)) +
                  (n + 1) * sizeof(struct ds_piece) + tokens * sizeof(uint16_t);
    return DS_DEPTH * (plan + tokens * sizeof(int32_t));
}

void dataset_prefetch(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                      int n_windows, int len) {
    struct ds_request *r = &ds->req[ds->head];
    if (ds_state_of(ds, r) != DS_FREE)
        TR_ABORT("dataset_prefetch on '%s': %d requests are already queued; call "
                 "dataset_wait first", ds->spec, DS_DEPTH);
    /* A FREE slot is the caller's: the thread touches only QUEUED ones. */
    ds_plan_make(ds, &r->plan, split, offsets, n_windows, len);
    size_t n_out = (size_t)n_windows * (size_t)len;
    if (n_out > r->cap_out) {
        tr_free(r->out);
        r->out = tr_malloc(sizeof(int32_t) * n_out);
        r->cap_out = n_out;
    }
    pthread_mutex_lock(&ds->mu);
    r->state = DS_QUEUED;
    pthread_cond_broadcast(&ds->cv);
    pthread_mutex_unlock(&ds->mu);
    ds->head = (ds->head + 1) % DS_DEPTH;
}

double dataset_wait(struct dataset *ds, int32_t *out) {
    double t0 = tr_now();
    ds_check_verdict(ds);  /* rank 0: the data was verified before it is used */
    struct ds_request *r = &ds->req[ds->tail];
    pthread_mutex_lock(&ds->mu);
    enum ds_state state = r->state;
    /* Not started yet (the thread lost the CPU to compute, or there is no thread): read
     * it here rather than sleep until the scheduler runs the thread, so a wait never
     * costs more than a synchronous read. */
    struct ds_request *mine = state == DS_QUEUED ? ds_take(ds) : NULL;
    while (!mine && r->state == DS_READING) pthread_cond_wait(&ds->cv, &ds->mu);
    pthread_mutex_unlock(&ds->mu);
    if (state == DS_FREE) TR_ABORT("dataset_wait on '%s' without a dataset_prefetch", ds->spec);
    if (mine && mine != r) TR_ABORT("prefetch queue of '%s' out of order", ds->spec);
    if (mine) ds_serve(ds, r);
    if (r->err[0]) TR_ABORT("I/O error: %s", r->err);
    if (r->bad_at >= 0) ds_report_bad_token(ds, r->plan.split, r->bad_at, r->bad_token);
    memcpy(out, r->out, sizeof(int32_t) * (size_t)r->plan.n_windows * (size_t)r->plan.len);
    pthread_mutex_lock(&ds->mu);
    r->state = DS_FREE;
    pthread_mutex_unlock(&ds->mu);
    ds->tail = (ds->tail + 1) % DS_DEPTH;
    return tr_now() - t0;
}
