/* dataset.c — token file reader (see dataset.h). */
#include "dataset.h"

#include "common.h"
#include "prep.h"

#include <errno.h>
#include <hdf5.h>
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

#define DS_HINT_PREP "create it with: trident prep --out FILE.h5 TEXT..."

static const char *const ds_split_names[2] = {"/train/tokens", "/val/tokens"};

struct dataset {
    char   *path;
    char   *tokenizer;
    hid_t   file, dxpl;
    hid_t   dset[2];
    int64_t n_tokens[2], n_docs[2];
    int     vocab_size, eot_token;
};

/* Every HDF5 call is checked; the message names the file and the object. */
static int64_t ds_h5(int64_t rc, const char *call, const char *path, const char *obj, int line) {
    if (rc < 0) tr_abort(__FILE__, line, "HDF5 call failed: %s (file '%s', %s)", call, path, obj);
    return rc;
}
#define DS_H5(call, path, obj) ds_h5((int64_t)(call), #call, (path), (obj), __LINE__)

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
static void ds_validate(struct dataset *ds) {
    const char *p = ds->path;
    hid_t f = ds->file;
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
    ds->vocab_size = (int)vocab;
    ds->eot_token = (int)eot;
    ds->tokenizer = ds_attr_str(p, f, "tokenizer");
    static const char *const n_tokens_attr[2] = {"n_train_tokens", "n_val_tokens"};
    static const char *const n_docs_attr[2] = {"n_train_docs", "n_val_docs"};
    for (int s = 0; s < 2; s++) {
        ds->dset[s] = ds_tokens_open(p, f, ds_split_names[s], &ds->n_tokens[s]);
        int64_t expected = ds_attr_i64(p, f, n_tokens_attr[s]);
        if (expected != ds->n_tokens[s])
            tr_fail(TR_EXIT_USAGE, "the file is damaged or incomplete; " DS_HINT_PREP,
                    "'%s': dataset '%s' holds %lld tokens but attribute '%s' says %lld", p,
                    ds_split_names[s], (long long)ds->n_tokens[s], n_tokens_attr[s],
                    (long long)expected);
        ds->n_docs[s] = ds_attr_i64(p, f, n_docs_attr[s]);
    }
}

struct dataset *dataset_open(const char *path, MPI_Comm comm) {
    /* The common mistakes are checked before HDF5 sees them, so the user reads one line
     * that says what is wrong instead of an HDF5 error stack. */
    if (access(path, R_OK) != 0)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP, "cannot open token file '%s': %s", path,
                strerror(errno));
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0)
        tr_fail(TR_EXIT_USAGE, DS_HINT_PREP,
                "'%s' is not a trident token file: not an HDF5 file", path);

    struct dataset *ds = tr_calloc(1, sizeof(*ds));
    ds->path = strdup(path);
    if (!ds->path) TR_ABORT("out of memory");
    hid_t fapl = DS_H5(H5Pcreate(H5P_FILE_ACCESS), path, "file access list");
    DS_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), path, "file access list");
    /* Opening is collective, so let one rank read the metadata (superblock, groups,
     * attributes) and broadcast it instead of thousands of ranks hitting the parallel
     * file system for the same few KiB. Raw-data reads of the contiguous token arrays
     * stay independent: they need no metadata once the datasets are open. */
    DS_H5(H5Pset_all_coll_metadata_ops(fapl, 1), path, "file access list");
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    DS_H5(H5Pclose(fapl), path, "file access list");
    if (ds->file < 0)
        tr_fail(TR_EXIT_USAGE,
                "if the file system does not support locking, set HDF5_USE_FILE_LOCKING=FALSE",
                "cannot open token file '%s' with HDF5 (see the HDF5 error above)", path);
    ds->dxpl = DS_H5(H5Pcreate(H5P_DATASET_XFER), path, "transfer list");
    DS_H5(H5Pset_dxpl_mpio(ds->dxpl, H5FD_MPIO_INDEPENDENT), path, "transfer list");
    ds_validate(ds);
    return ds;
}

void dataset_close(struct dataset *ds) {
    if (!ds) return;
    for (int s = 0; s < 2; s++) DS_H5(H5Dclose(ds->dset[s]), ds->path, ds_split_names[s]);
    DS_H5(H5Pclose(ds->dxpl), ds->path, "transfer list");
    DS_H5(H5Fclose(ds->file), ds->path, "file");
    free(ds->path);
    free(ds->tokenizer);
    tr_free(ds);
}

int         dataset_vocab_size(const struct dataset *ds) { return ds->vocab_size; }
int         dataset_eot_token(const struct dataset *ds) { return ds->eot_token; }
const char *dataset_tokenizer(const struct dataset *ds) { return ds->tokenizer; }
const char *dataset_path(const struct dataset *ds) { return ds->path; }

int64_t dataset_n_tokens(const struct dataset *ds, enum dataset_split s) {
    return ds->n_tokens[s];
}
int64_t dataset_n_docs(const struct dataset *ds, enum dataset_split s) {
    return ds->n_docs[s];
}

/* ---------------------------------------------------------------------------------- */
/* Reading windows */

struct ds_window {
    int64_t offset;
    int     index;   /* position in the caller's order */
};

static int ds_window_cmp(const void *a, const void *b) {
    const struct ds_window *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* HDF5 returns the elements of a union of hyperslabs in file order and merges blocks
 * that overlap, so the windows are sorted and merged into disjoint ranges first; the
 * ranges are read into one packed buffer by a single H5Dread (up to
 * DS_MAX_RANGES_PER_READ ranges) and every window — in any order, repeated,
 * overlapping — is then copied out of it. */
void dataset_read_windows(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                          int n_windows, int len, int32_t *out) {
    if (split != DS_TRAIN && split != DS_VAL) TR_ABORT("bad split %d", (int)split);
    if (n_windows < 0 || (n_windows > 0 && len <= 0))
        TR_ABORT("bad window request: %d windows of %d tokens", n_windows, len);
    if (n_windows == 0) return;
    const char *name = ds_split_names[split];
    int64_t n_tokens = ds->n_tokens[split];
    struct ds_window *w = tr_malloc(sizeof(*w) * (size_t)n_windows);
    for (int i = 0; i < n_windows; i++) {
        if (offsets[i] < 0 || offsets[i] > n_tokens - len)
            TR_ABORT("window %d [%lld, %lld) is outside %s of '%s' (%lld tokens)", i,
                     (long long)offsets[i], (long long)offsets[i] + len, name, ds->path,
                     (long long)n_tokens);
        w[i].offset = offsets[i];
        w[i].index = i;
    }
    qsort(w, (size_t)n_windows, sizeof(*w), ds_window_cmp);

    hsize_t *start = tr_malloc(sizeof(hsize_t) * (size_t)n_windows);
    hsize_t *count = tr_malloc(sizeof(hsize_t) * (size_t)n_windows);
    int n_ranges = 0;
    hsize_t n_packed = 0;   /* tokens in all ranges: the windows, packed in file order */
    for (int i = 0; i < n_windows; i++) {
        hsize_t s = (hsize_t)w[i].offset, e = s + (hsize_t)len;
        if (n_ranges > 0 && s <= start[n_ranges - 1] + count[n_ranges - 1] + DS_COALESCE_GAP) {
            hsize_t prev_end = start[n_ranges - 1] + count[n_ranges - 1];
            if (e > prev_end) count[n_ranges - 1] = e - start[n_ranges - 1];
        } else {
            start[n_ranges] = s;
            count[n_ranges++] = (hsize_t)len;
        }
    }
    for (int r = 0; r < n_ranges; r++) n_packed += count[r];

    uint16_t *packed = tr_malloc(sizeof(uint16_t) * n_packed);
    hid_t fspace = DS_H5(H5Dget_space(ds->dset[split]), ds->path, name);
    hsize_t done = 0;
    for (int r0 = 0; r0 < n_ranges; r0 += DS_MAX_RANGES_PER_READ) {
        int r1 = TR_MIN(n_ranges, r0 + DS_MAX_RANGES_PER_READ);
        hsize_t n_batch = 0;
        for (int r = r0; r < r1; r++) {
            DS_H5(H5Sselect_hyperslab(fspace, r == r0 ? H5S_SELECT_SET : H5S_SELECT_OR, &start[r],
                                      NULL, &count[r], NULL), ds->path, name);
            n_batch += count[r];
        }
        hid_t mspace = DS_H5(H5Screate_simple(1, &n_batch, NULL), ds->path, name);
        DS_H5(H5Dread(ds->dset[split], H5T_NATIVE_UINT16, mspace, fspace, ds->dxpl, packed + done),
              ds->path, name);
        DS_H5(H5Sclose(mspace), ds->path, name);
        done += n_batch;
    }
    DS_H5(H5Sclose(fspace), ds->path, name);

    /* Scatter in sorted order: each window lies inside the current range or a later one. */
    uint16_t max_token = 0;
    hsize_t base = 0;
    for (int i = 0, r = 0; i < n_windows; i++) {
        hsize_t s = (hsize_t)w[i].offset;
        while (s >= start[r] + count[r]) base += count[r++];
        const uint16_t *src = packed + base + (s - start[r]);
        int32_t *dst = out + (size_t)w[i].index * (size_t)len;
        for (int j = 0; j < len; j++) {
            dst[j] = src[j];
            max_token = src[j] > max_token ? src[j] : max_token;
        }
    }
    /* One compare per token guards the embedding lookup against a corrupt file. */
    if (max_token >= ds->vocab_size)
        TR_ABORT("corrupt token file '%s': %s holds token %d, vocab_size is %d", ds->path, name,
                 max_token, ds->vocab_size);
    tr_free(packed);
    tr_free(count);
    tr_free(start);
    tr_free(w);
}
