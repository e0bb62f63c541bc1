/* prep.c — `trident prep`: text files -> HDF5 token file (see prep.h).
 *
 * Two passes over the inputs. Pass 1 reads every file, drops duplicates, splits it into
 * documents and decides each document's split, so the exact size of both token arrays
 * is known — and every input problem is reported — before anything is written. Pass 2
 * reads the files again and streams the tokens into fixed-size datasets through a
 * bounded buffer, so memory is one input file plus the buffer, whatever the corpus size.
 * The file is written under a fresh FILE.tmp.XXXXXX and renamed when complete: a crash
 * or a failed run never leaves a half-written file under the name a training job would
 * read. An output that is one of the inputs (by device and inode, so also through a
 * symlink or another spelling of the path) is refused; an existing output is replaced
 * only with --force.
 */
#include "prep.h"

#include "common.h"
#include "tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREP_USAGE                                                                      \
    "usage: trident prep --out FILE.h5 [--force] [--shards N] [--val-fraction F] "        \
    "[--split-on LINE] [--seed N] TEXT_FILE_OR_DIR..."
#define PREP_HELP                                                                        \
    "Writes an HDF5 token file: each document is its bytes followed by an end-of-document\n" \
    "token, and goes to /train/tokens or /val/tokens.\n"                                    \
    "  --out FILE.h5       output file (written as FILE.h5.tmp.XXXXXX, then renamed); never\n" \
    "                      one of the inputs\n"                                              \
    "  --force             replace an existing output file (refused without it)\n"         \
    "  --shards N          write N files FILE-00000-of-0000N.h5 ... instead (1..1000);\n"   \
    "                      documents go round-robin in order within each split, and the\n" \
    "                      corpus is read back as data = FILE-*-of-0000N.h5\n"             \
    "  --val-fraction F    fraction of documents for validation, 0 < F < 1 (default 0.05)\n" \
    "  --split-on LINE     a line equal to LINE separates documents (e.g. % for fortunes);\n" \
    "                      default: each file is one document\n"                           \
    "  --seed N            seed of the train/validation assignment (default 0)\n"          \
    "Directories are read in name order (subdirectories too), skipping .dat and binary\n"  \
    "files and files whose content repeats an earlier one.\n"
#define PREP_BUF_TOKENS     (4u << 20)   /* tokens buffered per split between writes,
                                            shared out among the shards */
#define PREP_MIN_BUF_TOKENS (1u << 15)   /* ... but never fewer per shard: 64 KiB writes */
#define PREP_MAX_SHARDS     1000         /* every shard is open at once: one descriptor
                                            each, under the common limit of 1024 */
#define PREP_SOURCES_MAX    16384        /* bytes of the `sources` attribute: stays in the
                                            object header (attributes there max at 64 KiB) */
#define PREP_BINARY_PROBE   8192         /* bytes checked for NUL to skip binary files */

struct prep_opts {
    const char *out;
    int         n_shards;    /* 0: one file named --out */
    double      val_fraction;
    const char *split_on;    /* NULL: each file is one document */
    uint64_t    seed;
    int         force;       /* replace existing output files */
    int         help;
    char      **inputs;
    int         n_inputs;
};

struct prep_file {
    char    *path;
    size_t   n_bytes;
    uint64_t hash;           /* content hash: duplicate detection, and pass 2 checks
                                that the file did not change since pass 1 */
    dev_t    dev;
    ino_t    ino;
    int      skip;           /* 1: same content as an earlier file */
};

struct prep_files {
    struct prep_file *v;
    int n, cap;
};

/* What pass 1 learned, and pass 2 must reproduce exactly. */
struct prep_counts {
    int64_t n_docs, n_split_docs[2], n_split_tokens[2];   /* [0] train, [1] val */
    int      n_shards;                                    /* 1 without --shards */
    int64_t (*shard_docs)[2], (*shard_tokens)[2];         /* per shard and split */
    int64_t n_bytes_read;
    int64_t min_doc, max_doc;         /* documents with the smallest / largest unit */
    double  min_unit, max_unit;
    int64_t min_doc_tokens, max_doc_tokens;
    int64_t forced_val_doc, forced_train_doc;  /* -1, or the document moved to fill an
                                                  otherwise empty split */
};

/* ---------------------------------------------------------------------------------- */
/* HDF5 checks: every call is checked and the message names the file and the object. */

static int64_t prep_h5(int64_t rc, const char *call, const char *path, const char *obj,
                       int line) {
    if (rc < 0) tr_abort(__FILE__, line, "HDF5 call failed: %s (file '%s', %s)", call, path, obj);
    return rc;
}
#define PREP_H5(call, path, obj) prep_h5((int64_t)(call), #call, (path), (obj), __LINE__)

/* ---------------------------------------------------------------------------------- */
/* Options */

static void prep_usage_fail(const char *fmt, const char *arg) {
    tr_fail(TR_EXIT_USAGE, PREP_USAGE, fmt, arg);
}

/* "--name VALUE" or "--name=VALUE"; returns the value and advances *i, or NULL when
 * argv[*i] is not this option. */
static const char *prep_opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != '\0') return NULL;
    if (*i + 1 >= argc) prep_usage_fail("option '%s' needs a value", name);
    return argv[++*i];
}

static void prep_parse_args(int argc, char **argv, struct prep_opts *o) {
    memset(o, 0, sizeof(*o));
    o->val_fraction = 0.05;
    o->inputs = tr_malloc(sizeof(char *) * (size_t)(argc > 0 ? argc : 1));
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (options_done || a[0] != '-' || a[1] == '\0') {
            o->inputs[o->n_inputs++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = 1;
            return;
        } else if (strcmp(a, "--force") == 0) {
            o->force = 1;
        } else if ((v = prep_opt_value(argc, argv, &i, "--out"))) {
            if (!*v) prep_usage_fail("option '%s' needs a file name", "--out");
            o->out = v;
        } else if ((v = prep_opt_value(argc, argv, &i, "--shards"))) {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < 1 || n > PREP_MAX_SHARDS)
                tr_fail(TR_EXIT_USAGE, "give a whole number of files, e.g. --shards 8",
                        "--shards '%s' is not a number in 1..%d", v, PREP_MAX_SHARDS);
            o->n_shards = (int)n;
        } else if ((v = prep_opt_value(argc, argv, &i, "--val-fraction"))) {
            char *end;
            errno = 0;
            double f = strtod(v, &end);
            if (errno || end == v || *end || !(f > 0.0 && f < 1.0))
                tr_fail(TR_EXIT_USAGE,
                        "give a fraction strictly between 0 and 1, e.g. --val-fraction 0.05",
                        "--val-fraction '%s' is not a number in (0, 1)", v);
            o->val_fraction = f;
        } else if ((v = prep_opt_value(argc, argv, &i, "--split-on"))) {
            if (!*v || strchr(v, '\n'))
                tr_fail(TR_EXIT_USAGE,
                        "give the separator line's text, e.g. --split-on % for fortune files",
                        "--split-on needs a non-empty, single-line separator");
            o->split_on = v;
        } else if ((v = prep_opt_value(argc, argv, &i, "--seed"))) {
            char *end;
            errno = 0;
            long long s = strtoll(v, &end, 10);
            if (errno || end == v || *end || s < 0)
                tr_fail(TR_EXIT_USAGE, "give a non-negative integer, e.g. --seed 1234",
                        "--seed '%s' is not a non-negative integer", v);
            o->seed = (uint64_t)s;
        } else {
            prep_usage_fail("unknown option '%s' for 'trident prep'", a);
        }
    }
    if (!o->out)
        tr_fail(TR_EXIT_USAGE, PREP_USAGE, "no output file: 'trident prep' needs --out FILE.h5");
    if (o->n_inputs == 0)
        tr_fail(TR_EXIT_USAGE, PREP_USAGE,
                "no input files: give text files or directories after the options");
}

/* ---------------------------------------------------------------------------------- */
/* Input files */

/* Returns 0 when the file is already listed under another name (a symlink, a repeated
 * argument): one file is one set of documents. */
static int files_push(struct prep_files *fs, const char *path, const struct stat *st) {
    for (int i = 0; i < fs->n; i++)
        if (fs->v[i].dev == st->st_dev && fs->v[i].ino == st->st_ino) return 0;
    if (fs->n == fs->cap) {
        int cap = fs->cap ? 2 * fs->cap : 64;
        struct prep_file *v = tr_malloc(sizeof(*v) * (size_t)cap);
        if (fs->n) memcpy(v, fs->v, sizeof(*v) * (size_t)fs->n);
        tr_free(fs->v);
        fs->v = v;
        fs->cap = cap;
    }
    struct prep_file *f = &fs->v[fs->n++];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path) TR_ABORT("out of memory");
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A NUL byte early in the file marks it as binary (fortune .dat indexes, an .h5 file
 * left in the corpus directory): such files are skipped when expanding a directory. */
static int file_looks_binary(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;  /* unreadable: pass 1 reports it with the reason */
    char buf[PREP_BINARY_PROBE];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memchr(buf, '\0', n) != NULL;
}

static int name_cmp(const void *a, const void *b) {
    /* strcmp, not strcoll: the document order must not depend on the locale. */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void files_expand_dir(struct prep_files *fs, const char *dir, int *n_skipped) {
    DIR *d = opendir(dir);
    if (!d)
        tr_fail(TR_EXIT_USAGE, "check the path and its permissions",
                "cannot read input directory '%s': %s", dir, strerror(errno));
    int n = 0, cap = 64;
    char **names = tr_malloc(sizeof(char *) * (size_t)cap);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;  /* ".", "..", hidden files */
        if (n == cap) {
            char **bigger = tr_malloc(sizeof(char *) * (size_t)cap * 2);
            memcpy(bigger, names, sizeof(char *) * (size_t)n);
            tr_free(names);
            names = bigger;
            cap *= 2;
        }
        names[n] = strdup(e->d_name);
        if (!names[n++]) TR_ABORT("out of memory");
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), name_cmp);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = tr_malloc(len);
        snprintf(path, len, "%s%s%s", dir, ends_with(dir, "/") ? "" : "/", names[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            (*n_skipped)++;  /* a dangling symlink */
        } else if (S_ISDIR(st.st_mode)) {
            files_expand_dir(fs, path, n_skipped);
        } else if (!S_ISREG(st.st_mode) || ends_with(names[i], ".dat") ||
                   file_looks_binary(path)) {
            (*n_skipped)++;
        } else if (!files_push(fs, path, &st)) {
            (*n_skipped)++;
        }
        tr_free(path);
        free(names[i]);
    }
    tr_free(names);
}

static void files_collect(const struct prep_opts *o, struct prep_files *fs) {
    memset(fs, 0, sizeof(*fs));
    for (int i = 0; i < o->n_inputs; i++) {
        const char *p = o->inputs[i];
        struct stat st;
        if (stat(p, &st) != 0)
            tr_fail(TR_EXIT_USAGE, "check the path; inputs are text files or directories of them",
                    "input '%s': %s", p, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            int n_before = fs->n, n_skipped = 0;
            files_expand_dir(fs, p, &n_skipped);
            tr_info("prep: %s: %d text files (skipped %d: .dat, binary, or another name for "
                    "a listed file)", p, fs->n - n_before, n_skipped);
        } else if (S_ISREG(st.st_mode)) {
            files_push(fs, p, &st);
        } else {
            tr_fail(TR_EXIT_USAGE, "inputs are regular text files or directories of them",
                    "input '%s' is not a regular file or a directory", p);
        }
    }
}

static void files_free(struct prep_files *fs) {
    for (int i = 0; i < fs->n; i++) free(fs->v[i].path);
    tr_free(fs->v);
}

/* Whole file into memory (NULL and errno set on failure). */
static uint8_t *file_read(const char *path, size_t *n_bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { fclose(f); return NULL; }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    uint8_t *buf = tr_malloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;  /* short read: end of file or error, told apart below */
        uint8_t *bigger = tr_malloc(cap * 2);  /* the file grew since fstat */
        memcpy(bigger, buf, n);
        tr_free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        tr_free(buf);
        errno = EIO;
        return NULL;
    }
    *n_bytes = n;
    return buf;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a, 64 bit */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---------------------------------------------------------------------------------- */
/* Documents */

struct doc_iter {
    const uint8_t *buf;
    size_t n, pos;
    const char *sep;    /* NULL: the whole buffer is one document */
    size_t sep_len;
    int done;
};

static int is_blank(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == '\v' ||
              p[i] == '\f'))
            return 0;
    return 1;
}

/* The next block: up to (not including) the next separator line, or to the end. */
static int doc_block(struct doc_iter *it, size_t *start, size_t *len) {
    if (it->done) return 0;
    size_t s = it->pos;
    if (!it->sep) {
        it->done = 1;
        *start = 0;
        *len = it->n;
        return 1;
    }
    for (size_t ls = s; ls < it->n;) {
        const uint8_t *nl = memchr(it->buf + ls, '\n', it->n - ls);
        size_t le = nl ? (size_t)(nl - it->buf) : it->n;
        size_t ll = le - ls;
        if (ll > 0 && it->buf[le - 1] == '\r') ll--;  /* CRLF files */
        if (ll == it->sep_len && memcmp(it->buf + ls, it->sep, ll) == 0) {
            *start = s;
            *len = ls - s;
            it->pos = nl ? le + 1 : it->n;
            return 1;
        }
        ls = nl ? le + 1 : it->n;
    }
    it->done = 1;
    *start = s;
    *len = it->n - s;
    return 1;
}

/* The next non-blank document: blank blocks (two separators in a row, the text after
 * the last separator) are not documents. */
static int doc_next(struct doc_iter *it, size_t *start, size_t *len) {
    while (doc_block(it, start, len))
        if (!is_blank(it->buf + *start, *len)) return 1;
    return 0;
}

static struct doc_iter doc_iter_init(const uint8_t *buf, size_t n, const char *sep) {
    struct doc_iter it = {buf, n, 0, sep, sep ? strlen(sep) : 0, 0};
    return it;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double prep_doc_unit(uint64_t seed, int64_t doc_index) {
    uint64_t h = splitmix64(splitmix64(seed) ^ (uint64_t)doc_index);
    return (double)(h >> 11) * 0x1.0p-53;
}

/* 1 for validation, 0 for training. */
static int doc_split(const struct prep_opts *o, const struct prep_counts *c, int64_t doc) {
    if (doc == c->forced_val_doc) return 1;
    if (doc == c->forced_train_doc) return 0;
    return prep_doc_unit(o->seed, doc) < o->val_fraction;
}

/* ---------------------------------------------------------------------------------- */
/* Progress */

struct progress {
    const char *what;
    double t0, t_last;
    int n_files;
};

static void progress_report(struct progress *p, int i_file, int64_t n_bytes, int final) {
    double now = tr_now();
    if (!final && now - p->t_last < 1.0) return;
    p->t_last = now;
    double dt = now - p->t0;
    tr_info("prep: %s %d/%d files, %.1f MB in %.2f s (%.1f MB/s)", p->what, i_file, p->n_files,
            (double)n_bytes / 1e6, dt, dt > 0 ? (double)n_bytes / 1e6 / dt : 0.0);
}

/* ---------------------------------------------------------------------------------- */
/* Pass 1: read, deduplicate, count */

static uint8_t *prep_read_or_fail(const char *path, size_t *n_bytes) {
    uint8_t *buf = file_read(path, n_bytes);
    if (!buf)
        tr_fail(TR_EXIT_USAGE, "check that the file exists and is readable",
                "cannot read input file '%s': %s", path, strerror(errno));
    return buf;
}

/* Index of an earlier kept file with exactly these bytes, or -1. */
static int prep_find_duplicate(struct prep_files *fs, int i, const uint8_t *buf) {
    for (int j = 0; j < i; j++) {
        struct prep_file *g = &fs->v[j];
        if (g->skip || g->hash != fs->v[i].hash || g->n_bytes != fs->v[i].n_bytes) continue;
        size_t n = 0;  /* equal hashes: compare the bytes, so "duplicate" means exact */
        uint8_t *other = prep_read_or_fail(g->path, &n);
        int same = n == fs->v[i].n_bytes && memcmp(other, buf, n) == 0;
        tr_free(other);
        if (same) return j;
    }
    return -1;
}

static void prep_count(const struct prep_opts *o, struct prep_files *fs, struct prep_counts *c) {
    memset(c, 0, sizeof(*c));
    c->min_unit = 2.0;
    c->max_unit = -1.0;
    c->forced_val_doc = c->forced_train_doc = -1;
    c->n_shards = TR_MAX(o->n_shards, 1);
    c->shard_docs = tr_calloc((size_t)c->n_shards, sizeof(*c->shard_docs));
    c->shard_tokens = tr_calloc((size_t)c->n_shards, sizeof(*c->shard_tokens));
    struct progress pr = {"scanned", tr_now(), 0, fs->n};
    pr.t_last = pr.t0;
    int n_dup = 0;
    for (int i = 0; i < fs->n; i++) {
        struct prep_file *f = &fs->v[i];
        uint8_t *buf = prep_read_or_fail(f->path, &f->n_bytes);
        f->hash = hash_bytes(buf, f->n_bytes);
        c->n_bytes_read += (int64_t)f->n_bytes;
        int dup = prep_find_duplicate(fs, i, buf);
        if (dup >= 0) {
            f->skip = 1;
            n_dup++;
            tr_info("prep: skipping '%s': same content as '%s'", f->path, fs->v[dup].path);
        } else {
            struct doc_iter it = doc_iter_init(buf, f->n_bytes, o->split_on);
            size_t start, len;
            while (doc_next(&it, &start, &len)) {
                int64_t doc = c->n_docs++, n_tokens = (int64_t)len + 1;  /* + EOT */
                double u = prep_doc_unit(o->seed, doc);
                int split = u < o->val_fraction;
                int shard = (int)(c->n_split_docs[split] % c->n_shards);  /* round-robin */
                c->shard_docs[shard][split]++;
                c->shard_tokens[shard][split] += n_tokens;
                c->n_split_docs[split]++;
                c->n_split_tokens[split] += n_tokens;
                if (u < c->min_unit) {
                    c->min_unit = u, c->min_doc = doc, c->min_doc_tokens = n_tokens;
                }
                if (u > c->max_unit) {
                    c->max_unit = u, c->max_doc = doc, c->max_doc_tokens = n_tokens;
                }
            }
        }
        tr_free(buf);
        progress_report(&pr, i + 1, c->n_bytes_read, i + 1 == fs->n);
    }
    if (c->n_docs == 0)
        tr_fail(TR_EXIT_USAGE,
                o->split_on ? "check the inputs and the --split-on separator"
                            : "check the inputs: every file is empty or blank",
                "empty corpus: no documents in %d input file(s)%s", fs->n - n_dup,
                o->split_on ? " (blank blocks are not documents)" : "");
    if (c->n_docs < 2)
        tr_fail(TR_EXIT_USAGE,
                "add files, or cut files into documents with --split-on LINE "
                "(e.g. --split-on % for fortunes)",
                "the corpus has only 1 document; a training and a validation split need "
                "at least 2");
    /* A small corpus can leave a split empty by chance: move the document closest to
     * the threshold, which keeps the assignment a function of (seed, index) alone. */
    if (c->n_split_docs[1] == 0) {
        c->forced_val_doc = c->min_doc;
        c->n_split_docs[0]--, c->n_split_docs[1]++;
        c->n_split_tokens[0] -= c->min_doc_tokens, c->n_split_tokens[1] += c->min_doc_tokens;
    } else if (c->n_split_docs[0] == 0) {
        c->forced_train_doc = c->max_doc;
        c->n_split_docs[1]--, c->n_split_docs[0]++;
        c->n_split_tokens[1] -= c->max_doc_tokens, c->n_split_tokens[0] += c->max_doc_tokens;
    }
    /* Every shard is a complete token file, so it needs a document of each split. */
    for (int s = 0; s < 2; s++)
        if (c->n_split_docs[s] < c->n_shards)
            tr_fail(TR_EXIT_USAGE, "use fewer --shards, or a larger --val-fraction",
                    "--shards %d: the %s split has only %lld documents, and every shard needs "
                    "at least one of each split", c->n_shards, s ? "validation" : "training",
                    (long long)c->n_split_docs[s]);
    /* Moving a document (above) shifts the round-robin of the documents after it. That
     * happens only when a split held no document, so it now holds one and the check
     * above leaves a single shard: the whole corpus. With more shards, pass 1's
     * assignment stands. */
    if (c->n_shards == 1)
        for (int s = 0; s < 2; s++)
            c->shard_docs[0][s] = c->n_split_docs[s], c->shard_tokens[0][s] = c->n_split_tokens[s];
}

/* ---------------------------------------------------------------------------------- */
/* Pass 2: write */

struct split_writer {
    const char *path, *name;
    hid_t dset, fspace;
    int64_t n_written, n_total;
    uint64_t checksum;       /* of the tokens written so far (see prep.h) */
    int64_t max_token;
    uint16_t *buf;
    size_t n_buf, cap;
};

static void writer_open(struct split_writer *w, hid_t file, const char *path, const char *group,
                        const char *name, int64_t n_total, size_t cap) {
    memset(w, 0, sizeof(*w));
    w->path = path;
    w->name = name;
    w->n_total = n_total;
    w->max_token = -1;
    hid_t g = PREP_H5(H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path, group);
    hsize_t dims[1] = {(hsize_t)n_total};
    w->fspace = PREP_H5(H5Screate_simple(1, dims, NULL), path, name);
    /* Contiguous layout: a window is one byte range at a computable offset, so a reader's
     * union of hyperslabs becomes a single MPI-IO read with no chunk index to look up
     * (chunks would add a B-tree walk and, under MPI-IO, a request per chunk). The
     * sizes are known from pass 1, so the array never needs to grow. No compression:
     * byte tokens compress ~2x at most, not worth decoding on every read. */
    hid_t dcpl = PREP_H5(H5Pcreate(H5P_DATASET_CREATE), path, name);
    PREP_H5(H5Pset_layout(dcpl, H5D_CONTIGUOUS), path, name);
    /* No fill pass: every element is written below. */
    PREP_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), path, name);
    w->dset = PREP_H5(H5Dcreate2(file, name, H5T_STD_U16LE, w->fspace, H5P_DEFAULT, dcpl,
                                 H5P_DEFAULT), path, name);
    PREP_H5(H5Pclose(dcpl), path, name);
    PREP_H5(H5Gclose(g), path, group);
    w->cap = cap;
    w->buf = tr_malloc(sizeof(uint16_t) * cap);
}

static void writer_flush(struct split_writer *w) {
    if (w->n_buf == 0) return;
    if (w->n_written + (int64_t)w->n_buf > w->n_total)
        TR_ABORT("%s: writing past the %lld tokens counted in pass 1", w->name,
                 (long long)w->n_total);
    hsize_t start[1] = {(hsize_t)w->n_written}, count[1] = {w->n_buf};
    PREP_H5(H5Sselect_hyperslab(w->fspace, H5S_SELECT_SET, start, NULL, count, NULL), w->path,
            w->name);
    hid_t mspace = PREP_H5(H5Screate_simple(1, count, NULL), w->path, w->name);
    PREP_H5(H5Dwrite(w->dset, H5T_NATIVE_UINT16, mspace, w->fspace, H5P_DEFAULT, w->buf),
            w->path, w->name);
    PREP_H5(H5Sclose(mspace), w->path, w->name);
    for (size_t j = 0; j < w->n_buf; j++) {
        w->checksum += prep_token_mix((uint64_t)w->n_written + j, w->buf[j]);
        w->max_token = TR_MAX(w->max_token, (int64_t)w->buf[j]);
    }
    w->n_written += (int64_t)w->n_buf;
    w->n_buf = 0;
}

static void writer_push_doc(struct split_writer *w, const uint8_t *bytes, size_t n_bytes) {
    while (n_bytes > 0) {
        size_t n = TR_MIN(n_bytes, w->cap - w->n_buf);
        tok_encode(bytes, n, w->buf + w->n_buf);
        w->n_buf += n;
        bytes += n;
        n_bytes -= n;
        if (w->n_buf == w->cap) writer_flush(w);
    }
    w->buf[w->n_buf++] = TOK_EOT;
    if (w->n_buf == w->cap) writer_flush(w);
}

static void attr_write(hid_t file, const char *path, const char *name, hid_t type,
                       const void *value);

static void writer_close(struct split_writer *w) {
    writer_flush(w);
    if (w->n_written != w->n_total)
        TR_ABORT("%s: wrote %lld tokens, pass 1 counted %lld", w->name, (long long)w->n_written,
                 (long long)w->n_total);
    attr_write(w->dset, w->path, "checksum", H5T_STD_U64LE, &w->checksum);
    attr_write(w->dset, w->path, "max_token", H5T_STD_I64LE, &w->max_token);
    PREP_H5(H5Dclose(w->dset), w->path, w->name);
    PREP_H5(H5Sclose(w->fspace), w->path, w->name);
    tr_free(w->buf);
}

static void attr_write(hid_t file, const char *path, const char *name, hid_t type,
                       const void *value) {
    hid_t space = PREP_H5(H5Screate(H5S_SCALAR), path, name);
    hid_t a = PREP_H5(H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT), path, name);
    PREP_H5(H5Awrite(a, type, value), path, name);
    PREP_H5(H5Aclose(a), path, name);
    PREP_H5(H5Sclose(space), path, name);
}

static void attr_write_i64(hid_t file, const char *path, const char *name, int64_t v) {
    hid_t t = PREP_H5(H5Tcopy(H5T_NATIVE_INT64), path, name);  /* stored as written: LE on x86 */
    attr_write(file, path, name, t, &v);
    PREP_H5(H5Tclose(t), path, name);
}

static void attr_write_int(hid_t file, const char *path, const char *name, int v) {
    hid_t t = PREP_H5(H5Tcopy(H5T_NATIVE_INT), path, name);
    attr_write(file, path, name, t, &v);
    PREP_H5(H5Tclose(t), path, name);
}

static void attr_write_f64(hid_t file, const char *path, const char *name, double v) {
    hid_t t = PREP_H5(H5Tcopy(H5T_NATIVE_DOUBLE), path, name);
    attr_write(file, path, name, t, &v);
    PREP_H5(H5Tclose(t), path, name);
}

/* Fixed-length, NUL-terminated UTF-8 string: h5dump shows it, h5py reads it as bytes,
 * and a reader needs no variable-length memory handling. */
static void attr_write_str(hid_t file, const char *path, const char *name, const char *s) {
    hid_t t = PREP_H5(H5Tcopy(H5T_C_S1), path, name);
    PREP_H5(H5Tset_size(t, strlen(s) + 1), path, name);
    PREP_H5(H5Tset_strpad(t, H5T_STR_NULLTERM), path, name);
    PREP_H5(H5Tset_cset(t, H5T_CSET_UTF8), path, name);
    attr_write(file, path, name, t, s);
    PREP_H5(H5Tclose(t), path, name);
}

/* The kept input files, newline-separated, cut at PREP_SOURCES_MAX with a count of the
 * rest so the attribute never outgrows the object header. */
static char *prep_sources(const struct prep_files *fs) {
    char *s = tr_malloc(PREP_SOURCES_MAX);
    size_t n = 0;
    int n_kept = 0, n_listed = 0;
    for (int i = 0; i < fs->n; i++) n_kept += !fs->v[i].skip;
    s[0] = '\0';
    for (int i = 0; i < fs->n; i++) {
        if (fs->v[i].skip) continue;
        size_t len = strlen(fs->v[i].path);
        if (n + len + 1 + 64 > PREP_SOURCES_MAX) break;  /* 64: room for the "more" line */
        n += (size_t)snprintf(s + n, PREP_SOURCES_MAX - n, "%s%s", n ? "\n" : "", fs->v[i].path);
        n_listed++;
    }
    if (n_listed < n_kept)
        snprintf(s + n, PREP_SOURCES_MAX - n, "%s... and %d more files", n ? "\n" : "",
                 n_kept - n_listed);
    return s;
}

/* The attributes of output k: its own counts, so every shard is a complete token file
 * on its own, plus its place among the shards. */
static void prep_write_attrs(hid_t file, const char *path, const struct prep_opts *o,
                             const struct prep_counts *c, int k, const struct prep_files *fs) {
    const int64_t *docs = c->shard_docs[k], *tokens = c->shard_tokens[k];
    attr_write_str(file, path, "format", PREP_FORMAT);
    attr_write_int(file, path, "format_version", PREP_FORMAT_VERSION);
    attr_write_int(file, path, "vocab_size", TOK_VOCAB_SIZE);
    attr_write_int(file, path, "eot_token", TOK_EOT);
    attr_write_str(file, path, "tokenizer", TOK_NAME);
    attr_write_i64(file, path, "n_docs", docs[0] + docs[1]);
    attr_write_i64(file, path, "n_train_docs", docs[0]);
    attr_write_i64(file, path, "n_val_docs", docs[1]);
    attr_write_i64(file, path, "n_train_tokens", tokens[0]);
    attr_write_i64(file, path, "n_val_tokens", tokens[1]);
    attr_write_f64(file, path, "val_fraction", o->val_fraction);
    attr_write_i64(file, path, "seed", (int64_t)o->seed);
    attr_write_str(file, path, "split_on", o->split_on ? o->split_on : "");
    char *sources = prep_sources(fs);
    attr_write_str(file, path, "sources", sources);
    tr_free(sources);
    if (o->n_shards > 0) {
        attr_write_int(file, path, "shard_index", k);
        attr_write_int(file, path, "n_shards", o->n_shards);
    }
}

/* The output's directory must exist and be writable: checked before the long pass so
 * the mistake is reported as such, not as an HDF5 failure at the end. */
static void prep_check_out_dir(const char *out) {
    char *dir = strdup(out);
    if (!dir) TR_ABORT("out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    if (access(dir, W_OK) != 0)
        tr_fail(TR_EXIT_USAGE, "create the directory first, or choose another --out path",
                "cannot write --out '%s': directory '%s': %s", out, dir, strerror(errno));
    free(dir);
}

/* One output file: the whole corpus, or one shard of it. */
struct prep_out {
    char *path, *tmp;
    hid_t file;
    struct split_writer w[2];
};

/* The name of output `index`: --out itself without --shards; with --out data/c.h5
 * --shards 8, shard 3 is data/c-00003-of-00008.h5 (see prep.h) and index -1 gives the
 * pattern that reads them all back, data/c-*-of-00008.h5. */
static char *prep_out_name(const char *out, int index, int n_shards) {
    int base = (int)(strlen(out) - (ends_with(out, ".h5") ? 3 : 0));
    size_t cap = strlen(out) + 32;
    char *s = tr_malloc(cap);
    if (n_shards == 0) snprintf(s, cap, "%s", out);
    else if (index < 0) snprintf(s, cap, "%.*s-*-of-%05d.h5", base, out, n_shards);
    else snprintf(s, cap, "%.*s-%05d-of-%05d.h5", base, out, index, n_shards);
    return s;
}

/* Pass 2. The i-th document of a split goes to shard i % n_shards, the same rule pass 1
 * counted with: shards stay balanced, and each one keeps the corpus's document order. */
static void prep_write(const struct prep_opts *o, const struct prep_files *fs,
                       const struct prep_counts *c, struct prep_out *outs) {
    const int n = c->n_shards;
    const size_t cap = TR_MAX(PREP_BUF_TOKENS / (unsigned)n, PREP_MIN_BUF_TOKENS);
    for (int k = 0; k < n; k++) {
        struct prep_out *po = &outs[k];
        po->file = PREP_H5(H5Fcreate(po->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), po->tmp,
                           "file");
        writer_open(&po->w[0], po->file, po->tmp, "/train", "/train/tokens",
                    c->shard_tokens[k][0], cap);
        writer_open(&po->w[1], po->file, po->tmp, "/val", "/val/tokens", c->shard_tokens[k][1],
                    cap);
    }
    struct progress pr = {"wrote", tr_now(), 0, fs->n};
    pr.t_last = pr.t0;
    int64_t doc = 0, n_bytes_done = 0, n_seen[2] = {0, 0};
    for (int i = 0; i < fs->n; i++) {
        const struct prep_file *f = &fs->v[i];
        if (f->skip) continue;
        size_t n_bytes = 0;
        uint8_t *buf = file_read(f->path, &n_bytes);
        if (!buf || n_bytes != f->n_bytes || hash_bytes(buf, n_bytes) != f->hash) {
            for (int k = 0; k < n; k++) unlink(outs[k].tmp);
            tr_fail(TR_EXIT_USAGE, "run prep again when the inputs are not being modified",
                    "input file '%s' changed or vanished while prep was running", f->path);
        }
        struct doc_iter it = doc_iter_init(buf, n_bytes, o->split_on);
        size_t start, len;
        while (doc_next(&it, &start, &len)) {
            int s = doc_split(o, c, doc++);
            int k = (int)(n_seen[s]++ % n);
            writer_push_doc(&outs[k].w[s], buf + start, len);
        }
        tr_free(buf);
        n_bytes_done += (int64_t)n_bytes;
        progress_report(&pr, i + 1, n_bytes_done, i + 1 == fs->n);
    }
    if (doc != c->n_docs)
        TR_ABORT("pass 2 found %lld documents, pass 1 counted %lld", (long long)doc,
                 (long long)c->n_docs);
    for (int k = 0; k < n; k++) {
        struct prep_out *po = &outs[k];
        writer_close(&po->w[0]);
        writer_close(&po->w[1]);
        prep_write_attrs(po->file, po->tmp, o, c, k, fs);
        PREP_H5(H5Fflush(po->file, H5F_SCOPE_GLOBAL), po->tmp, "file");
        PREP_H5(H5Fclose(po->file), po->tmp, "file");
    }
}

/* Data on disk before the rename makes it visible under the final name. Without
 * --force the rename refuses to replace a file that appeared since the check at start
 * (RENAME_NOREPLACE; link + unlink where the file system lacks it). */
static void prep_publish(const char *tmp, const char *out, int force) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) TR_ABORT("cannot sync '%s': %s", tmp, strerror(errno));
    close(fd);
    int rc;
    if (force) {
        rc = rename(tmp, out);
    } else {
        rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS) && (rc = link(tmp, out)) == 0)
            unlink(tmp);
    }
    if (rc != 0) {
        int err = errno;
        unlink(tmp);
        if (err == EEXIST)
            tr_fail(TR_EXIT_USAGE, "add --force to replace it, or choose another --out path",
                    "output file '%s' appeared while prep was running; not replaced", out);
        tr_fail(TR_EXIT_USAGE, "choose another --out path",
                "cannot rename '%s' to '%s': %s", tmp, out, strerror(err));
    }
}

/* Before any work: no output may be an input (the same file by device and inode, so a
 * symlink or "./" spelling is caught too; refused even with --force, since the input
 * would be gone), and an existing output is replaced only with --force. */
static void prep_check_outputs(const struct prep_opts *o, const struct prep_files *fs,
                               struct prep_out *outs, int n_outs) {
    for (int k = 0; k < n_outs; k++) {
        const char *out = outs[k].path;
        struct stat st;
        if (stat(out, &st) != 0) continue;  /* a new file */
        for (int i = 0; i < fs->n; i++)
            if (fs->v[i].dev == st.st_dev && fs->v[i].ino == st.st_ino)
                tr_fail(TR_EXIT_USAGE,
                        "write the token file somewhere else, e.g. --out data/corpus.h5",
                        "--out '%s' is the input file '%s': prep would replace its input "
                        "with the token file", out, fs->v[i].path);
        if (S_ISDIR(st.st_mode))
            tr_fail(TR_EXIT_USAGE, "give a file name, e.g. --out DIR/corpus.h5",
                    "--out '%s' is a directory", out);
        if (!o->force)
            tr_fail(TR_EXIT_USAGE, "add --force to replace it, or choose another --out path",
                    "output file '%s' already exists", out);
    }
}

/* A fresh temporary name next to the output (same file system, so the rename is
 * atomic); mkstemp never picks an existing file, so no input can be clobbered. */
static char *prep_tmp_name(const char *path) {
    size_t len = strlen(path) + 16;
    char *tmp = tr_malloc(len);
    snprintf(tmp, len, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        tr_fail(TR_EXIT_USAGE, "check the directory of --out and its permissions",
                "cannot create a temporary file next to '%s': %s", path, strerror(errno));
    close(fd);
    return tmp;
}

static void prep_summary(const struct prep_opts *o, const struct prep_out *outs,
                         const struct prep_counts *c, int n_files, double seconds) {
    double mb = 0.0;
    for (int k = 0; k < c->n_shards; k++) {
        struct stat st;
        if (stat(outs[k].path, &st) == 0) mb += (double)st.st_size / 1e6;
    }
    int64_t docs = c->n_docs, tokens = c->n_split_tokens[0] + c->n_split_tokens[1];
    tr_info("prep: %-6s %12s %14s", "split", "documents", "tokens");
    tr_info("prep: %-6s %12lld %14lld", "train", (long long)c->n_split_docs[0],
            (long long)c->n_split_tokens[0]);
    tr_info("prep: %-6s %12lld %14lld", "val", (long long)c->n_split_docs[1],
            (long long)c->n_split_tokens[1]);
    tr_info("prep: %-6s %12lld %14lld", "total", (long long)docs, (long long)tokens);
    if (o->n_shards == 0) {
        tr_info("prep: wrote %s (%.2f MB) from %d files in %.2f s", outs[0].path, mb, n_files,
                seconds);
        return;
    }
    tr_info("prep: wrote %d shards %s ... %s (%.2f MB) from %d files in %.2f s", c->n_shards,
            outs[0].path, outs[c->n_shards - 1].path, mb, n_files, seconds);
    char *pattern = prep_out_name(o->out, -1, o->n_shards);
    tr_info("prep: train on them with: data = %s", pattern);
    tr_free(pattern);
}

int prep_main(int argc, char **argv) {
    double t0 = tr_now();
    struct prep_opts o;
    prep_parse_args(argc, argv, &o);
    if (o.help) {
        printf("%s\n\n%s", PREP_USAGE, PREP_HELP);
        tr_free(o.inputs);
        return 0;
    }
    prep_check_out_dir(o.out);
    struct prep_files fs;
    files_collect(&o, &fs);
    if (fs.n == 0)
        tr_fail(TR_EXIT_USAGE, "give text files, or directories that contain text files",
                "empty corpus: no text files in the inputs");
    const int n_outs = o.n_shards > 0 ? o.n_shards : 1;
    struct prep_out *outs = tr_calloc((size_t)n_outs, sizeof(*outs));
    for (int k = 0; k < n_outs; k++) outs[k].path = prep_out_name(o.out, k, o.n_shards);
    prep_check_outputs(&o, &fs, outs, n_outs);
    struct prep_counts c;
    prep_count(&o, &fs, &c);

    for (int k = 0; k < c.n_shards; k++) outs[k].tmp = prep_tmp_name(outs[k].path);
    prep_write(&o, &fs, &c, outs);
    for (int k = 0; k < c.n_shards; k++) prep_publish(outs[k].tmp, outs[k].path, o.force);

    int n_kept = 0;
    for (int i = 0; i < fs.n; i++) n_kept += !fs.v[i].skip;
    prep_summary(&o, outs, &c, n_kept, tr_now() - t0);
    for (int k = 0; k < c.n_shards; k++) {
        tr_free(outs[k].path);
        tr_free(outs[k].tmp);
    }
    tr_free(outs);
    tr_free(c.shard_docs);
    tr_free(c.shard_tokens);
    files_free(&fs);
    tr_free(o.inputs);
    return 0;
}
