/* test_io.c — tokenizer, `trident prep` and the token corpus reader (synchronous reads,
 * background prefetch, corpora of several files).
 *
 * Runs on any number of ranks (1 in the suite): prep and the bad-input tests run on
 * rank 0, every rank reads its own windows from the shared token files. Bad input exits
 * the process, so those tests re-execute this binary as a child (a fresh process, so no
 * MPI state is shared with the parent) and check its exit code and stderr.
 */
#include "common.h"
#include "dataset.h"
#include "prep.h"
#include "test.h"
#include "tokenizer.h"

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <hdf5.h>
#include <mpi.h>
#include <pwd.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define N_FILE_DOCS 40
#define FILE_SEED   7
#define FILE_VAL    0.25
#define N_SHARDS    3

/* The generated corpus: set up once in main, read by the tests (they take no arguments). */
struct corpus {
    char     dir[256];                 /* temp dir, shared by all ranks */
    char     h5[320];                  /* token file made from the N_FILE_DOCS files */
    char     shards[320];              /* glob of the same files made with --shards 3 */
    uint8_t *docs[N_FILE_DOCS];
    size_t   doc_len[N_FILE_DOCS];
    uint16_t *split_tokens[2];         /* expected /train/tokens, /val/tokens */
    int64_t  n_split_tokens[2], n_split_docs[2];
};
static struct corpus cx;

/* ---------------------------------------------------------------------------------- */
/* helpers */

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", cx.dir, name);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) TR_ABORT("cannot write %s", path);
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static int file_contains(const char *path, const char *needle) {
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *buf = tr_malloc(1 << 16);
    n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    buf[n] = '\0';
    int found = strstr(buf, needle) != NULL;
    tr_free(buf);
    return found;
}

/* prep_main with its progress lines silenced. */
static int prep_quiet(int argc, const char **argv) {
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    close(null);
    int rc = prep_main(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

/* Serial HDF5 reads, independent of dataset.c, to check what prep wrote. */
static uint16_t *h5_read_tokens(const char *path, const char *name, int64_t *n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t s = H5Dget_space(d);
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(s, dims, NULL);
    uint16_t *t = tr_malloc(sizeof(uint16_t) * (dims[0] + 1));
    if (dims[0] > 0) H5Dread(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    *n = (int64_t)dims[0];
    return t;
}

/* a scalar root attribute of the file, read as `type` into v (left as is if missing) */
static void h5_attr_read(const char *path, const char *name, hid_t type, void *v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    H5Aread(a, type, v);
    H5Aclose(a);
    H5Fclose(f);
}

static int64_t h5_attr_i64(const char *path, const char *name) {
    int64_t v = -12345;
    h5_attr_read(path, name, H5T_NATIVE_INT64, &v);
    return v;
}

static double h5_attr_f64(const char *path, const char *name) {
    double v = -1;
    h5_attr_read(path, name, H5T_NATIVE_DOUBLE, &v);
    return v;
}

static void h5_attr_str(const char *path, const char *name, char *out, size_t cap) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), ft = H5Aget_type(a);
    H5Tset_size(t, cap);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5Tget_cset(ft));
    H5Tclose(ft);
    out[0] = '\0';
    H5Aread(a, t, out);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
}

/* Runs this binary again as `self --child ARGS...` with stdout discarded and stderr in
 * err_path; returns its exit code. The MPI launcher's job variables are left out of the
 * child's environment so it starts as its own (singleton) MPI job. */
static char **child_environ(void) {  /* environ without the MPI job's variables */
    int n_env = 0;
    for (char **e = environ; *e; e++) n_env++;
    char **envp = tr_malloc(sizeof(char *) * (size_t)(n_env + 1));
    int m = 0;
    for (char **e = environ; *e; e++) {
        int job = strncmp(*e, "PMIX_", 5) == 0 ||
                  (strncmp(*e, "OMPI_", 5) == 0 && strncmp(*e, "OMPI_ALLOW_", 11) != 0);
        if (!job) envp[m++] = *e;
    }
    envp[m] = NULL;
    return envp;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

static int run_child(const char *err_path, const char **args) {
    const char *argv[32] = {"/proc/self/exe", "--child"};
    int n = 2;
    for (; args[n - 2]; n++) argv[n] = args[n - 2];
    argv[n] = NULL;
    char **envp = child_environ();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int status = 0, rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, (char **)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    tr_free(envp);
    if (rc != 0) return -1;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A child exits 2 and its stderr names `key` and gives a HINT. */
#define CHECK_CHILD_FAILS(key, ...)                                                  \
    do {                                                                             \
        char err_[512];                                                              \
        path_in(err_, sizeof(err_), "child.err");                                    \
        const char *args_[] = {__VA_ARGS__, NULL};                                   \
        int rc_ = run_child(err_, args_);                                            \
        CHECK_MSG(rc_ == 2, "%s: exit code %d, expected 2", (key), rc_);             \
        CHECK_MSG(file_contains(err_, (key)), "stderr lacks '%s'", (key));           \
        CHECK_MSG(file_contains(err_, "HINT: "), "stderr lacks a HINT (%s)", (key)); \
    } while (0)

/* The split a document goes to when neither split is empty by chance. */
static int doc_is_val(uint64_t seed, int64_t i, double frac) {
    return prep_doc_unit(seed, i) < frac;
}

/* Concatenated train and val, decoded without separators, interleaved back into the
 * original document order by the split rule: must give the documents back. */
static int decoded_docs_match(const char *h5, uint64_t seed, double frac, const char **docs,
                              int n_docs) {
    int64_t n[2];
    uint16_t *t[2] = {h5_read_tokens(h5, "/train/tokens", &n[0]),
                      h5_read_tokens(h5, "/val/tokens", &n[1])};
    int64_t pos[2] = {0, 0};
    int ok = 1;
    for (int i = 0; i < n_docs && ok; i++) {
        int s = doc_is_val(seed, i, frac);
        size_t len = strlen(docs[i]);
        uint8_t *bytes = tr_malloc(len + 1);
        if (pos[s] + (int64_t)len + 1 > n[s]) { ok = 0; tr_free(bytes); break; }
        size_t nb = tok_decode_u16(t[s] + pos[s], len, NULL, bytes);
        ok = nb == len && memcmp(bytes, docs[i], len) == 0 &&
             t[s][pos[s] + (int64_t)len] == TOK_EOT;
        if (!ok) fprintf(stderr, "  document %d differs\n", i);
        pos[s] += (int64_t)len + 1;
        tr_free(bytes);
    }
    ok = ok && pos[0] == n[0] && pos[1] == n[1];
    tr_free(t[0]);
    tr_free(t[1]);
    return ok;
}

/* ---------------------------------------------------------------------------------- */
/* tokenizer */

static void test_tokenizer_round_trips_all_byte_values(void) {
    uint8_t bytes[256], back[256 * 4];
    uint16_t t16[256];
    int32_t t32[256];
    for (int i = 0; i < 256; i++) bytes[i] = (uint8_t)i;
    CHECK(tok_encode(bytes, 256, t16) == 256);
    for (int i = 0; i < 256; i++) {
        CHECK(t16[i] == i);
        t32[i] = t16[i];
    }
    CHECK(tok_decode_u16(t16, 256, NULL, back) == 256 && memcmp(back, bytes, 256) == 0);
    CHECK(tok_decode(t32, 256, TOK_EOT_TEXT, back) == 256 && memcmp(back, bytes, 256) == 0);
}

static void test_tokenizer_round_trips_random_buffers(void) {
    uint64_t rng = 42;
    uint8_t *bytes = tr_malloc(10000), *back = tr_malloc(10000 * 4);
    uint16_t *t16 = tr_malloc(sizeof(uint16_t) * 10000);
    int32_t *t32 = tr_malloc(sizeof(int32_t) * 10000);
    for (int iter = 0; iter < 200; iter++) {
        size_t n = rng_next(&rng) % 10000;
        for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)rng_next(&rng);
        tok_encode(bytes, n, t16);
        for (size_t i = 0; i < n; i++) t32[i] = t16[i];
        CHECK(tok_decode_u16(t16, n, NULL, back) == n && memcmp(back, bytes, n) == 0);
        CHECK(tok_decode(t32, n, NULL, back) == n && memcmp(back, bytes, n) == 0);
    }
    tr_free(bytes); tr_free(back); tr_free(t16); tr_free(t32);
}

static void test_tokenizer_shows_eot_as_separator_and_bad_tokens_as_replacement(void) {
    const int32_t t[] = {'a', 'b', TOK_EOT, 'c', 300, -1};
    uint8_t out[128];
    CHECK(tok_decode_bound(6, TOK_EOT_TEXT) >= 2 + strlen(TOK_EOT_TEXT) + 1 + 6);
    size_t n = tok_decode(t, 4, NULL, out);
    CHECK(n == 3 && memcmp(out, "abc", 3) == 0);
    n = tok_decode(t, 4, TOK_EOT_TEXT, out);
    const char *want = "ab" TOK_EOT_TEXT "c";
    CHECK(n == strlen(want) && memcmp(out, want, n) == 0);
    n = tok_decode(t + 4, 2, NULL, out);
    CHECK(n == 6 && memcmp(out, TOK_INVALID_TEXT TOK_INVALID_TEXT, 6) == 0);
    CHECK(TOK_VOCAB_SIZE == 257 && TOK_EOT == 256 && strcmp(TOK_NAME, "bytes+eot") == 0);
}

/* ---------------------------------------------------------------------------------- */
/* prep */

/* Every rank builds the same documents; rank 0 also writes them and runs prep. */
static void corpus_setup(void) {
    uint64_t rng = 2024;
    int64_t n_tok[2] = {0, 0};
    for (int i = 0; i < N_FILE_DOCS; i++) {
        size_t len = 1 + rng_next(&rng) % 40000;  /* ~800k tokens: > 256 disjoint ranges fit */
        cx.docs[i] = tr_malloc(len);
        cx.doc_len[i] = len;
        cx.docs[i][0] = (uint8_t)('A' + i % 26);  /* never blank; the rest is any byte */
        for (size_t j = 1; j < len; j++) cx.docs[i][j] = (uint8_t)rng_next(&rng);
        int s = doc_is_val(FILE_SEED, i, FILE_VAL);
        n_tok[s] += (int64_t)len + 1;
        cx.n_split_docs[s]++;
    }
    for (int s = 0; s < 2; s++) {
        cx.n_split_tokens[s] = n_tok[s];
        cx.split_tokens[s] = tr_malloc(sizeof(uint16_t) * (size_t)n_tok[s]);
    }
    int64_t pos[2] = {0, 0};
    for (int i = 0; i < N_FILE_DOCS; i++) {
        int s = doc_is_val(FILE_SEED, i, FILE_VAL);
        pos[s] += (int64_t)tok_encode(cx.docs[i], cx.doc_len[i], cx.split_tokens[s] + pos[s]);
        cx.split_tokens[s][pos[s]++] = TOK_EOT;
    }
    path_in(cx.h5, sizeof(cx.h5), "files.h5");
    path_in(cx.shards, sizeof(cx.shards), "files-*-of-00003.h5");
    if (test_rank != 0) return;
    char names[N_FILE_DOCS][320];
    const char *argv[8 + N_FILE_DOCS] = {"prep", "--out", cx.h5, "--seed", "7",
                                         "--val-fraction=0.25"};
    for (int i = 0; i < N_FILE_DOCS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "doc%02d.bin", N_FILE_DOCS - 1 - i);  /* given in order */
        path_in(names[i], sizeof(names[i]), name);
        write_file(names[i], cx.docs[i], cx.doc_len[i]);
        argv[6 + i] = names[i];
    }
    prep_quiet(6 + N_FILE_DOCS, argv);
    argv[6 + N_FILE_DOCS] = "--shards";  /* the same corpus again, in N_SHARDS files */
    argv[7 + N_FILE_DOCS] = "3";
    prep_quiet(8 + N_FILE_DOCS, argv);
}

static void test_prep_files_are_documents_in_argument_order(void) {
    if (test_rank != 0) return;
    CHECK(cx.n_split_docs[0] > 0 && cx.n_split_docs[1] > 0);  /* the test needs both */
    CHECK(file_exists(cx.h5));
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.tmp", cx.h5);
    CHECK(!file_exists(tmp));
    for (int s = 0; s < 2; s++) {
        int64_t n = 0;
        uint16_t *t = h5_read_tokens(cx.h5, s ? "/val/tokens" : "/train/tokens", &n);
        CHECK(n == cx.n_split_tokens[s]);
        CHECK(n == cx.n_split_tokens[s] &&
              memcmp(t, cx.split_tokens[s], sizeof(uint16_t) * (size_t)n) == 0);
        tr_free(t);
    }
}

static void test_prep_writes_all_attributes(void) {
    if (test_rank != 0) return;
    char s[4096];
    h5_attr_str(cx.h5, "format", s, sizeof(s));
    CHECK(strcmp(s, "trident-tokens") == 0);
    h5_attr_str(cx.h5, "tokenizer", s, sizeof(s));
    CHECK(strcmp(s, "bytes+eot") == 0);
    h5_attr_str(cx.h5, "sources", s, sizeof(s));
    CHECK(strstr(s, "doc39.bin\n") != NULL && strstr(s, "doc00.bin") != NULL);
    CHECK(h5_attr_i64(cx.h5, "format_version") == 1);
    CHECK(h5_attr_i64(cx.h5, "vocab_size") == 257);
    CHECK(h5_attr_i64(cx.h5, "eot_token") == 256);
    CHECK(h5_attr_i64(cx.h5, "n_docs") == N_FILE_DOCS);
    CHECK(h5_attr_i64(cx.h5, "n_train_docs") == cx.n_split_docs[0]);
    CHECK(h5_attr_i64(cx.h5, "n_val_docs") == cx.n_split_docs[1]);
    CHECK(h5_attr_i64(cx.h5, "n_train_tokens") == cx.n_split_tokens[0]);
    CHECK(h5_attr_i64(cx.h5, "n_val_tokens") == cx.n_split_tokens[1]);
    CHECK(h5_attr_i64(cx.h5, "n_train_docs") + h5_attr_i64(cx.h5, "n_val_docs") == N_FILE_DOCS);
    CHECK(h5_attr_i64(cx.h5, "seed") == FILE_SEED);
    CHECK(h5_attr_f64(cx.h5, "val_fraction") == FILE_VAL);
}

static void test_prep_split_on_cuts_blocks_between_separator_lines(void) {
    if (test_rank != 0) return;
    /* Blank blocks are dropped; "%%", "% " and "a%" are text, not separators; a CRLF
     * separator counts; text before the first and after the last separator counts. */
    const char *text = "first\nfortune\n%\n%\n\n  \n%\nsecond %\n%%\n% \n%\r\n"
                       "third\r\n%\nlast, no newline";
    const char *docs[] = {"first\nfortune\n", "second %\n%%\n% \n", "third\r\n",
                          "last, no newline"};
    char in[320], out[320];
    path_in(in, sizeof(in), "fortunes.txt");
    path_in(out, sizeof(out), "fortunes.h5");
    write_file(in, text, strlen(text));
    const char *argv[] = {"prep", "--out", out, "--split-on", "%", "--val-fraction", "0.5", in};
    CHECK(prep_quiet(8, argv) == 0);
    CHECK(h5_attr_i64(out, "n_docs") == 4);
    int n_val = 0;
    for (int i = 0; i < 4; i++) n_val += doc_is_val(0, i, 0.5);
    CHECK(n_val > 0 && n_val < 4);  /* no split filled by force: the rule below holds */
    CHECK(h5_attr_i64(out, "n_val_docs") == n_val);
    CHECK(decoded_docs_match(out, 0, 0.5, docs, 4));
    char s[64];
    h5_attr_str(out, "split_on", s, sizeof(s));
    CHECK(strcmp(s, "%") == 0);
}

static void test_prep_validation_fraction_is_close_to_requested(void) {
    if (test_rank != 0) return;
    /* 20000 tiny documents at 10%: the count is binomial, sd = 42; allow 5 sd. */
    size_t cap = 20000 * 16, n = 0;
    char *text = tr_malloc(cap);
    for (int i = 0; i < 20000; i++) n += (size_t)snprintf(text + n, cap - n, "doc %d\n%%\n", i);
    char in[320], out[320];
    path_in(in, sizeof(in), "many.txt");
    path_in(out, sizeof(out), "many.h5");
    write_file(in, text, n);
    tr_free(text);
    const char *argv[] = {"prep", "--out", out, "--split-on", "%", "--val-fraction", "0.1",
                          "--seed", "99", in};
    CHECK(prep_quiet(10, argv) == 0);
    int64_t n_val = h5_attr_i64(out, "n_val_docs");
    CHECK(h5_attr_i64(out, "n_docs") == 20000);
    CHECK_MSG(n_val > 2000 - 210 && n_val < 2000 + 210, "n_val_docs %lld", (long long)n_val);
    CHECK(h5_attr_i64(out, "n_train_docs") + n_val == 20000);
    int64_t expected = 0;
    for (int i = 0; i < 20000; i++) expected += doc_is_val(99, i, 0.1);
    CHECK(n_val == expected);
}

static void test_prep_directory_is_sorted_and_skips_dat_binary_and_duplicates(void) {
    if (test_rank != 0) return;
    char d[320], sub[340], p[400], out[320];
    path_in(d, sizeof(d), "corpus");
    snprintf(sub, sizeof(sub), "%s/sub", d);
    mkdir(d, 0755);
    mkdir(sub, 0755);
    const char *files[][2] = {
        {"b.txt", "bee\n"}, {"a.txt", "ay\n"}, {"c.txt", "ay\n"} /* same bytes as a.txt */,
        {"x.dat", "index\n"}, {"sub/d.txt", "dee\n"}, {"e.txt", " \n\n"} /* blank */,
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", d, files[i][0]);
        write_file(p, files[i][1], strlen(files[i][1]));
    }
    snprintf(p, sizeof(p), "%s/bin.bin", d);
    write_file(p, "z\0z\n", 4);
    snprintf(p, sizeof(p), "%s/a.u8", d);
    if (symlink("a.txt", p) != 0) CHECK(0);
    path_in(out, sizeof(out), "corpus.h5");
    const char *argv[] = {"prep", "--out", out, "--val-fraction", "0.3", "--seed", "3", d};
    CHECK(prep_quiet(8, argv) == 0);
    const char *docs[] = {"ay\n", "bee\n", "dee\n"};  /* a.txt, b.txt, sub/d.txt */
    CHECK(h5_attr_i64(out, "n_docs") == 3);
    int n_val = doc_is_val(3, 0, 0.3) + doc_is_val(3, 1, 0.3) + doc_is_val(3, 2, 0.3);
    if (n_val > 0 && n_val < 3) CHECK(decoded_docs_match(out, 3, 0.3, docs, 3));
    char s[4096];
    h5_attr_str(out, "sources", s, sizeof(s));
    CHECK(strstr(s, "a.txt") && strstr(s, "b.txt") && strstr(s, "sub/d.txt") && strstr(s, "e.txt"));
    CHECK(!strstr(s, "c.txt") && !strstr(s, ".dat") && !strstr(s, "bin.bin") && !strstr(s, "a.u8"));
}

static void test_prep_puts_one_document_in_each_split_when_chance_leaves_one_empty(void) {
    if (test_rank != 0) return;
    char a[320], b[320], out[320];
    path_in(a, sizeof(a), "two_a.txt");
    path_in(b, sizeof(b), "two_b.txt");
    path_in(out, sizeof(out), "two.h5");
    write_file(a, "alpha\n", 6);
    write_file(b, "beta\n", 5);
    const char *fracs[] = {"0.000001", "0.999999"};
    for (int k = 0; k < 2; k++) {
        const char *argv[] = {"prep", "--force", "--out", out, "--val-fraction", fracs[k], a, b};
        CHECK(prep_quiet(8, argv) == 0);  /* --force: the second round replaces the first */
        CHECK(h5_attr_i64(out, "n_train_docs") == 1 && h5_attr_i64(out, "n_val_docs") == 1);
        CHECK(h5_attr_i64(out, "n_train_tokens") + h5_attr_i64(out, "n_val_tokens") == 13);
    }
}

/* ---------------------------------------------------------------------------------- */
/* dataset */

static void test_dataset_open_reports_what_prep_wrote(void) {
    struct dataset *ds = dataset_open(cx.h5, MPI_COMM_WORLD);
    CHECK(dataset_vocab_size(ds) == TOK_VOCAB_SIZE);
    CHECK(dataset_eot_token(ds) == TOK_EOT);
    CHECK(strcmp(dataset_tokenizer(ds), TOK_NAME) == 0);
    CHECK(strcmp(dataset_path(ds), cx.h5) == 0);
    for (int s = 0; s < 2; s++) {
        CHECK(dataset_n_tokens(ds, (enum dataset_split)s) == cx.n_split_tokens[s]);
        CHECK(dataset_n_docs(ds, (enum dataset_split)s) == cx.n_split_docs[s]);
    }
    dataset_close(ds);
}

/* Reads the windows and compares each with the slice of the expected array. */
static int windows_match(struct dataset *ds, int split, const int64_t *off, int n, int len) {
    int32_t *out = tr_malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1) * (size_t)len);
    dataset_read_windows(ds, (enum dataset_split)split, off, n, len, out);
    int ok = 1;
    for (int i = 0; i < n && ok; i++)
        for (int j = 0; j < len && ok; j++)
            ok = out[(size_t)i * (size_t)len + (size_t)j] == cx.split_tokens[split][off[i] + j];
    tr_free(out);
    return ok;
}

static void test_dataset_windows_equal_slices_in_any_order(void) {
    struct dataset *ds = dataset_open(cx.h5, MPI_COMM_WORLD);
    uint64_t rng = 77 + (uint64_t)test_rank;
    enum { MAXW = 2000 };
    int64_t *off = tr_malloc(sizeof(int64_t) * MAXW);
    for (int s = 0; s < 2; s++) {
        int64_t n = cx.n_split_tokens[s];
        const int lens[] = {1, 7, 64, 1000};
        for (int k = 0; k < 4; k++) {
            int len = lens[k];
            if (len > n) continue;
            /* random, unsorted; more windows on higher ranks, so ranks read different
             * amounts independently */
            int nw = 300 + 50 * test_rank;
            for (int i = 0; i < nw; i++)
                off[i] = (int64_t)(rng_next(&rng) % (uint64_t)(n - len + 1));
            CHECK_MSG(windows_match(ds, s, off, nw, len), "random split %d len %d", s, len);
            /* duplicates and overlapping chains, shuffled */
            int64_t base = (int64_t)(rng_next(&rng) % (uint64_t)(n - len + 1));
            for (int i = 0; i < 40; i++) off[i] = TR_MIN(base + (i % 20) * 5, n - len);
            for (int i = 39; i > 0; i--) {
                int j = (int)(rng_next(&rng) % (uint64_t)(i + 1));
                int64_t t = off[i]; off[i] = off[j]; off[j] = t;
            }
            CHECK_MSG(windows_match(ds, s, off, 40, len), "overlapping split %d len %d", s, len);
            /* more disjoint ranges than one H5Dread takes (DS_MAX_RANGES_PER_READ) */
            if (len <= 64) {
                int nd = (int)TR_MIN((n - len) / 1500, (int64_t)MAXW);
                if (s == DS_TRAIN)
                    CHECK_MSG(nd > 300, "train split too small for the many-ranges case: %d", nd);
                for (int i = 0; i < nd; i++) off[i] = (int64_t)i * 1500;
                for (int i = nd - 1; i > 0; i--) {
                    int j = (int)(rng_next(&rng) % (uint64_t)(i + 1));
                    int64_t t = off[i]; off[i] = off[j]; off[j] = t;
                }
                CHECK_MSG(windows_match(ds, s, off, nd, len), "many ranges split %d len %d", s,
                          len);
            }
            /* adjacent windows, the first and last possible window */
            int64_t edge[] = {n - len, 0, len <= n / 2 ? len : 0, n - len, 0};
            CHECK_MSG(windows_match(ds, s, edge, 5, len), "edges split %d len %d", s, len);
        }
        int64_t whole = 0;
        CHECK_MSG(windows_match(ds, s, &whole, 1, (int)n), "whole split %d", s);
    }
    int32_t sentinel = -7;
    dataset_read_windows(ds, DS_TRAIN, off, 0, 64, &sentinel);  /* nothing read, nothing written */
    CHECK(sentinel == -7);
    tr_free(off);
    dataset_close(ds);
}

/* ---------------------------------------------------------------------------------- */
/* prefetch, corpora of several files */

/* What a hand-made token file gets wrong on purpose (FAKE_OK: nothing). */
enum fake_flaw { FAKE_OK, FAKE_NO_FORMAT, FAKE_WRONG_FORMAT, FAKE_NO_VOCAB, FAKE_NO_VAL,
                 FAKE_BAD_COUNT, FAKE_VERSION_2 };

/* A token file written with HDF5 directly, as another tool might: `chunk` > 0 stores the
 * token arrays in chunks of that many tokens, deflated when the filter is available; 0
 * stores them contiguously. `flaw` breaks one thing, for the tests of bad files. */
static void h5_write_token_file_flawed(const char *path, uint16_t *const tokens[2],
                                       const int64_t n[2], hsize_t chunk, int64_t vocab_size,
                                       enum fake_flaw flaw) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *groups[] = {"/train", "/val"}, *names[] = {"/train/tokens", "/val/tokens"};
    int64_t n_docs[2] = {0, 0};
    for (int s = 0; s < 2 - (flaw == FAKE_NO_VAL); s++) {
        for (int64_t i = 0; i < n[s]; i++) n_docs[s] += tokens[s][i] == TOK_EOT;
        hid_t g = H5Gcreate2(f, groups[s], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[1] = {(hsize_t)n[s]};
        hid_t sp = H5Screate_simple(1, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (chunk > 0) {
            H5Pset_chunk(dcpl, 1, &chunk);
            if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl, 1);
        }
        hid_t d = H5Dcreate2(f, names[s], H5T_STD_U16LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens[s]);
        H5Dclose(d); H5Pclose(dcpl); H5Sclose(sp); H5Gclose(g);
    }
    hid_t scalar = H5Screate(H5S_SCALAR);
    const char *strs[][2] = {{"format", flaw == FAKE_WRONG_FORMAT ? "hdf5-zoo" : "trident-tokens"},
                             {"tokenizer", "bytes+eot"}};
    for (int i = 0; i < 2; i++) {
        if (i == 0 && flaw == FAKE_NO_FORMAT) continue;
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(strs[i][1]) + 1);
        hid_t a = H5Acreate2(f, strs[i][0], t, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, strs[i][1]);
        H5Aclose(a); H5Tclose(t);
    }
    struct { const char *name; int64_t v; } ints[] = {
        {"format_version", flaw == FAKE_VERSION_2 ? 2 : 1}, {"vocab_size", vocab_size},
        {"eot_token", TOK_EOT}, {"n_train_tokens", n[0] + (flaw == FAKE_BAD_COUNT)},
        {"n_val_tokens", n[1]}, {"n_train_docs", n_docs[0]}, {"n_val_docs", n_docs[1]},
        {"n_docs", n_docs[0] + n_docs[1]}};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (flaw == FAKE_NO_VOCAB && strcmp(ints[i].name, "vocab_size") == 0) continue;
        hid_t a = H5Acreate2(f, ints[i].name, H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &ints[i].v);
        H5Aclose(a);
    }
    H5Sclose(scalar);
    H5Fclose(f);
}

static void h5_write_token_file(const char *path, uint16_t *const tokens[2], const int64_t n[2],
                                hsize_t chunk, int64_t vocab_size) {
    h5_write_token_file_flawed(path, tokens, n, chunk, vocab_size, FAKE_OK);
}

static void shard_path(char *out, size_t cap, int k) {
    char name[64];
    snprintf(name, sizeof(name), "files-%05d-of-%05d.h5", k, N_SHARDS);
    path_in(out, cap, name);
}

/* The corpus's split as dataset.c should see it: the shards' arrays back to back. */
static uint16_t *shards_concat(int split, int64_t *n_total, int64_t first[N_SHARDS + 1]) {
    uint16_t *part[N_SHARDS];
    int64_t n[N_SHARDS];
    *n_total = 0;
    for (int k = 0; k < N_SHARDS; k++) {
        char p[320];
        shard_path(p, sizeof(p), k);
        part[k] = h5_read_tokens(p, split ? "/val/tokens" : "/train/tokens", &n[k]);
        first[k] = *n_total;
        *n_total += n[k];
    }
    first[N_SHARDS] = *n_total;
    uint16_t *all = tr_malloc(sizeof(uint16_t) * (size_t)*n_total);
    for (int k = 0; k < N_SHARDS; k++) {
        memcpy(all + first[k], part[k], sizeof(uint16_t) * (size_t)n[k]);
        tr_free(part[k]);
    }
    return all;
}

/* Window i of out equals expected[off[i] ...]. */
static int windows_equal(const int32_t *out, const uint16_t *expected, const int64_t *off, int n,
                         int len) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < len; j++)
            if (out[(size_t)i * (size_t)len + (size_t)j] != expected[off[i] + j]) return 0;
    return 1;
}

/* prefetch + wait gives exactly what dataset_read_windows gives, and both the expected
 * tokens; returns 1 when all three agree. A wait right after the prefetch usually finds
 * the request not started and reads it itself; `pause_us` of "compute" in between lets
 * the background thread read it, so tests alternate the two. */
static int prefetch_agrees(struct dataset *ds, int split, const int64_t *off, int n, int len,
                           const uint16_t *expected, int pause_us) {
    size_t n_out = (size_t)(n > 0 ? n : 1) * (size_t)len;
    int32_t *a = tr_malloc(sizeof(int32_t) * n_out), *b = tr_malloc(sizeof(int32_t) * n_out);
    dataset_prefetch(ds, (enum dataset_split)split, off, n, len);
    if (pause_us > 0) usleep((useconds_t)pause_us);
    double waited = dataset_wait(ds, a);
    dataset_read_windows(ds, (enum dataset_split)split, off, n, len, b);
    int ok = waited >= 0 && memcmp(a, b, sizeof(int32_t) * (size_t)n * (size_t)len) == 0 &&
             windows_equal(a, expected, off, n, len);
    tr_free(a);
    tr_free(b);
    return ok;
}

/* n random windows of len tokens in a split of n_tokens. */
static void random_windows(uint64_t *rng, int64_t *off, int n, int len, int64_t n_tokens) {
    for (int i = 0; i < n; i++) off[i] = (int64_t)(rng_next(rng) % (uint64_t)(n_tokens - len + 1));
}

static void test_prefetch_returns_what_read_windows_returns(void) {
    struct dataset *ds = dataset_open(cx.h5, MPI_COMM_WORLD);
    CHECK(dataset_is_async(ds));
    uint64_t rng = 500 + (uint64_t)test_rank;
    int64_t off[256];
    for (int req = 0; req < 60; req++) {  /* many requests in a row through one thread */
        int s = req % 3 == 2 ? DS_VAL : DS_TRAIN;
        int len = 1 + (int)(rng_next(&rng) % 600), n = (int)(rng_next(&rng) % 257);
        if (req == 7) n = 0;  /* a rank with nothing to read still pairs prefetch and wait */
        random_windows(&rng, off, n, len, cx.n_split_tokens[s]);
        CHECK_MSG(prefetch_agrees(ds, s, off, n, len, cx.split_tokens[s], req % 2 ? 2000 : 0),
                  "request %d: split %d, %d windows of %d", req, s, n, len);
    }
    int64_t whole = 0;  /* one window as long as the split */
    CHECK(prefetch_agrees(ds, DS_VAL, &whole, 1, (int)cx.n_split_tokens[DS_VAL],
                          cx.split_tokens[DS_VAL], 0));
    dataset_close(ds);
}

static void test_prefetch_keeps_two_requests_in_order_while_caller_holds_results(void) {
    struct dataset *ds = dataset_open(cx.h5, MPI_COMM_WORLD);
    enum { N = 64, LEN = 257 };
    uint64_t rng = 900 + (uint64_t)test_rank;
    int64_t off[4][N];
    int32_t *buf[2] = {tr_malloc(sizeof(int32_t) * N * LEN), tr_malloc(sizeof(int32_t) * N * LEN)};
    for (int r = 0; r < 4; r++) random_windows(&rng, off[r], N, LEN, cx.n_split_tokens[0]);
    const uint16_t *want = cx.split_tokens[0];
    /* The training loop's pattern: wait for step r, queue step r+1, use step r's data. */
    dataset_prefetch(ds, DS_TRAIN, off[0], N, LEN);
    for (int r = 0; r < 3; r++) {
        dataset_wait(ds, buf[r % 2]);
        int64_t copy[N];
        memcpy(copy, off[r + 1], sizeof(copy));
        dataset_prefetch(ds, DS_TRAIN, copy, N, LEN);
        memset(copy, 0xff, sizeof(copy));  /* prefetch copied the offsets */
        CHECK_MSG(windows_equal(buf[r % 2], want, off[r], N, LEN), "step %d", r);
        if (r > 0) CHECK_MSG(windows_equal(buf[(r - 1) % 2], want, off[r - 1], N, LEN),
                             "previous step %d overwritten", r - 1);
    }
    dataset_wait(ds, buf[1]);
    CHECK(windows_equal(buf[1], want, off[3], N, LEN));
    /* Two queued at once come back in the order asked, even across splits. */
    int64_t val_off[N];
    random_windows(&rng, val_off, N, LEN, cx.n_split_tokens[1]);
    dataset_prefetch(ds, DS_VAL, val_off, N, LEN);
    dataset_prefetch(ds, DS_TRAIN, off[2], N, LEN);
    dataset_wait(ds, buf[0]);
    dataset_wait(ds, buf[1]);
    CHECK(windows_equal(buf[0], cx.split_tokens[1], val_off, N, LEN));
    CHECK(windows_equal(buf[1], want, off[2], N, LEN));
    /* Closing with a request still queued drops it. */
    dataset_prefetch(ds, DS_TRAIN, off[0], N, LEN);
    dataset_close(ds);
    tr_free(buf[0]);
    tr_free(buf[1]);
}

static void test_prep_shards_hold_every_document_once_in_order(void) {
    if (test_rank != 0) return;
    char p[320];
    int64_t pos[N_SHARDS][2] = {{0}}, n[N_SHARDS][2];
    uint16_t *t[N_SHARDS][2];
    for (int k = 0; k < N_SHARDS; k++) {
        shard_path(p, sizeof(p), k);
        CHECK_MSG(file_exists(p), "%s missing", p);
        CHECK(h5_attr_i64(p, "shard_index") == k && h5_attr_i64(p, "n_shards") == N_SHARDS);
        for (int s = 0; s < 2; s++) {
            t[k][s] = h5_read_tokens(p, s ? "/val/tokens" : "/train/tokens", &n[k][s]);
            CHECK(n[k][s] > 0);
            CHECK(h5_attr_i64(p, s ? "n_val_tokens" : "n_train_tokens") == n[k][s]);
        }
        CHECK(h5_attr_i64(p, "n_docs") ==
              h5_attr_i64(p, "n_train_docs") + h5_attr_i64(p, "n_val_docs"));
    }
    /* The i-th document of a split is the next one in shard i % N_SHARDS. */
    int64_t seen[2] = {0, 0}, n_docs[N_SHARDS][2] = {{0}};
    for (int i = 0; i < N_FILE_DOCS; i++) {
        int s = doc_is_val(FILE_SEED, i, FILE_VAL);
        int k = (int)(seen[s]++ % N_SHARDS);
        int64_t len = (int64_t)cx.doc_len[i];
        int ok = pos[k][s] + len + 1 <= n[k][s];
        for (int64_t j = 0; ok && j < len; j++) ok = t[k][s][pos[k][s] + j] == cx.docs[i][j];
        CHECK_MSG(ok && t[k][s][pos[k][s] + len] == TOK_EOT, "document %d not next in shard %d",
                  i, k);
        pos[k][s] += len + 1;
        n_docs[k][s]++;
    }
    int64_t total[2] = {0, 0};
    for (int k = 0; k < N_SHARDS; k++) {
        shard_path(p, sizeof(p), k);
        for (int s = 0; s < 2; s++) {
            CHECK_MSG(pos[k][s] == n[k][s], "shard %d split %d holds more than its documents", k, s);
            CHECK(h5_attr_i64(p, s ? "n_val_docs" : "n_train_docs") == n_docs[k][s]);
            total[s] += n[k][s];
            tr_free(t[k][s]);
        }
    }
    CHECK(total[0] == cx.n_split_tokens[0] && total[1] == cx.n_split_tokens[1]);
}

static void test_dataset_corpus_concatenates_shards_and_reads_across_boundaries(void) {
    char list[1024], p[320];
    list[0] = '\0';
    for (int k = 0; k < N_SHARDS; k++) {
        shard_path(p, sizeof(p), k);
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? ", " : "", p);
    }
    const char *specs[] = {cx.shards, list};
    uint64_t rng = 1234 + (uint64_t)test_rank;
    int64_t off[300];
    for (int v = 0; v < 2; v++) {
        struct dataset *ds = dataset_open(specs[v], MPI_COMM_WORLD);
        CHECK(dataset_n_files(ds) == N_SHARDS && dataset_is_async(ds));
        CHECK(strcmp(dataset_path(ds), specs[v]) == 0);
        CHECK(dataset_vocab_size(ds) == TOK_VOCAB_SIZE && dataset_eot_token(ds) == TOK_EOT);
        for (int s = 0; s < 2; s++) {
            CHECK(dataset_n_tokens(ds, (enum dataset_split)s) == cx.n_split_tokens[s]);
            CHECK(dataset_n_docs(ds, (enum dataset_split)s) == cx.n_split_docs[s]);
            int64_t n, first[N_SHARDS + 1];
            uint16_t *want = shards_concat(s, &n, first);
            CHECK(n == cx.n_split_tokens[s]);
            for (int req = 0; req < 10; req++) {
                int len = 1 + (int)(rng_next(&rng) % 1000), nw = 1 + (int)(rng_next(&rng) % 300);
                random_windows(&rng, off, nw, len, n);
                CHECK_MSG(prefetch_agrees(ds, s, off, nw, len, want, req % 2 ? 2000 : 0),
                          "random split %d", s);
            }
            /* every window that straddles each boundary between two files */
            for (int k = 1; k < N_SHARDS; k++) {
                const int len = 257;
                for (int i = 0; i < len - 1; i++) off[i] = first[k] - len + 1 + i;
                CHECK_MSG(prefetch_agrees(ds, s, off, len - 1, len, want, 2000),
                          "straddling boundary %d, split %d", k, s);
            }
            /* one window through the whole middle file, from the first into the last */
            int64_t mid = first[1] - 1;
            CHECK(prefetch_agrees(ds, s, &mid, 1, (int)(first[2] - first[1] + 2), want, 2000));
            tr_free(want);
        }
        dataset_close(ds);
    }
}

static void test_dataset_falls_back_to_hdf5_for_chunked_files(void) {
    char chunked[320], mixed[700];
    path_in(chunked, sizeof(chunked), "chunked.h5");
    snprintf(mixed, sizeof(mixed), "%s,%s", cx.h5, chunked);
    if (test_rank == 0) h5_write_token_file(chunked, cx.split_tokens, cx.n_split_tokens, 4096, 257);
    MPI_Barrier(MPI_COMM_WORLD);
    if (test_rank == 0) {  /* the user is told, once */
        char err[320];
        path_in(err, sizeof(err), "child.err");
        const char *args[] = {"open", chunked, NULL};
        CHECK(run_child(err, args) == 0);
        CHECK(file_contains(err, "synchronously") && file_contains(err, "chunked.h5"));
    }
    uint64_t rng = 77 + (uint64_t)test_rank;
    int64_t off[300];
    for (int v = 0; v < 2; v++) {
        struct dataset *ds = dataset_open(v ? mixed : chunked, MPI_COMM_WORLD);
        CHECK(!dataset_is_async(ds));
        for (int s = 0; s < 2; s++) {
            int64_t n = cx.n_split_tokens[s] * (v + 1);
            uint16_t *want = tr_malloc(sizeof(uint16_t) * (size_t)n);
            for (int c = 0; c <= v; c++)  /* the mixed corpus is the same file twice */
                memcpy(want + c * cx.n_split_tokens[s], cx.split_tokens[s],
                       sizeof(uint16_t) * (size_t)cx.n_split_tokens[s]);
            CHECK(dataset_n_tokens(ds, (enum dataset_split)s) == n);
            for (int req = 0; req < 8; req++) {
                int len = 1 + (int)(rng_next(&rng) % 700), nw = (int)(rng_next(&rng) % 300);
                random_windows(&rng, off, nw, len, n);
                if (v && nw > 0) off[0] = cx.n_split_tokens[s] - len / 2;  /* spans the two */
                CHECK_MSG(prefetch_agrees(ds, s, off, nw, len, want, req % 2 ? 2000 : 0),
                          "corpus %d split %d", v, s);
            }
            /* two queued at once, in order, on the synchronous path too */
            int64_t a = 0, b = n - 100;
            int32_t wa[100], wb[100];
            dataset_prefetch(ds, (enum dataset_split)s, &a, 1, 100);
            dataset_prefetch(ds, (enum dataset_split)s, &b, 1, 100);
            dataset_wait(ds, wa);
            dataset_wait(ds, wb);
            CHECK(windows_equal(wa, want, &a, 1, 100) && windows_equal(wb, want, &b, 1, 100));
            tr_free(want);
        }
        dataset_close(ds);
    }
}

static void test_dataset_corpus_refuses_mismatched_vocab_and_empty_glob(void) {
    if (test_rank != 0) return;
    char other[320], spec[700], err[320], none[320];
    path_in(other, sizeof(other), "vocab300.h5");
    path_in(err, sizeof(err), "child.err");
    path_in(none, sizeof(none), "nothing-*-of-00009.h5");
    h5_write_token_file(other, cx.split_tokens, cx.n_split_tokens, 0, 300);
    snprintf(spec, sizeof(spec), "%s,%s", cx.h5, other);
    CHECK_CHILD_FAILS("vocab_size 300", "open", spec);
    CHECK(file_contains(err, "vocab300.h5"));  /* names the odd file */
    const char *alone[] = {"open", other, NULL};  /* the file alone is fine */
    CHECK(run_child(err, alone) == 0);
    CHECK_CHILD_FAILS("no file matches the pattern", "open", none);
    CHECK(file_contains(err, "nothing-*-of-00009.h5") && file_contains(err, "--shards"));
    snprintf(spec, sizeof(spec), "%s,,%s", cx.h5, cx.h5);
    CHECK_CHILD_FAILS("empty file name", "open", spec);
    snprintf(spec, sizeof(spec), "%s,%s/missing.h5", cx.h5, cx.dir);
    CHECK_CHILD_FAILS("missing.h5", "open", spec);
    char a[320], b[320], out[320];  /* 2 documents cannot fill both splits of 3 shards */
    path_in(out, sizeof(out), "few.h5");
    CHECK_CHILD_FAILS("--shards", "prep", "--out", out, "--shards", "0", cx.h5);
    path_in(a, sizeof(a), "shard_a.txt");
    path_in(b, sizeof(b), "shard_b.txt");
    write_file(a, "alpha\n", 6);
    write_file(b, "beta\n", 5);
    CHECK_CHILD_FAILS("--shards 3", "prep", "--out", out, "--shards", "3", a, b);
}

static void test_prefetch_misuse_and_io_errors_abort(void) {
    if (test_rank != 0) return;
    char err[320], copy[320];
    path_in(err, sizeof(err), "child.err");
    path_in(copy, sizeof(copy), "truncated.h5");
    struct { const char *mode, *file, *key; } cases[] = {
        {"nowait", cx.h5, "without a dataset_prefetch"},
        {"overqueue", cx.h5, "already queued"},
        {"truncate", copy, "unexpected end of file"},
    };
    size_t n = 0;  /* a byte copy of the token file, truncated by the child once open */
    FILE *f = fopen(cx.h5, "rb");
    uint8_t *bytes = tr_malloc(8 << 20);
    if (f) n = fread(bytes, 1, 8 << 20, f), fclose(f);
    write_file(copy, bytes, n);
    tr_free(bytes);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {cases[i].mode, cases[i].file, NULL};
        int rc = run_child(err, args);
        CHECK_MSG(rc != 0 && rc != 2, "%s: exit code %d", cases[i].mode, rc);
        CHECK_MSG(file_contains(err, cases[i].key), "%s: stderr lacks '%s'", cases[i].mode,
                  cases[i].key);
        if (i >= 2) CHECK_MSG(file_contains(err, cases[i].file), "%s: file not named",
                              cases[i].mode);
    }
}

/* ---------------------------------------------------------------------------------- */
/* verification of the token data at open */

/* a uint64 or int64 attribute of a dataset, or `missing` */
static uint64_t h5_dset_attr_u64(const char *path, const char *dset, const char *name,
                                 hid_t type, uint64_t missing) {
    uint64_t v = missing;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (H5Aexists(d, name) > 0) {
        hid_t a = H5Aopen(d, name, H5P_DEFAULT);
        H5Aread(a, type, &v);
        H5Aclose(a);
    }
    H5Dclose(d);
    H5Fclose(f);
    return v;
}

/* The checksum as prep.h defines it, computed here from the expected tokens. */
static void test_prep_writes_checksum_and_max_token_of_each_split(void) {
    if (test_rank != 0) return;
    const char *names[2] = {"/train/tokens", "/val/tokens"};
    for (int s = 0; s < 2; s++) {
        uint64_t sum = 0;
        int64_t max_token = -1;
        for (int64_t i = 0; i < cx.n_split_tokens[s]; i++) {
            sum += prep_token_mix((uint64_t)i, cx.split_tokens[s][i]);
            if (cx.split_tokens[s][i] > max_token) max_token = cx.split_tokens[s][i];
        }
        CHECK(h5_dset_attr_u64(cx.h5, names[s], "checksum", H5T_NATIVE_UINT64, 0) == sum);
        int64_t stored = (int64_t)h5_dset_attr_u64(cx.h5, names[s], "max_token",
                                                   H5T_NATIVE_INT64, (uint64_t)-7);
        CHECK(stored == max_token && stored == TOK_EOT);
    }
    /* the mix changes when a token changes or two tokens swap */
    CHECK(prep_token_mix(5, 'a') != prep_token_mix(5, 'b'));
    CHECK(prep_token_mix(5, 'a') + prep_token_mix(6, 'b') !=
          prep_token_mix(5, 'b') + prep_token_mix(6, 'a'));
}

/* A copy of prep's file with one byte of /train/tokens flipped: token `index`'s low
 * byte xor 0x01, so the token stays inside the vocabulary and only the checksum can
 * tell. */
static void flip_token_byte(const char *src, const char *copy, int64_t index) {
    hid_t f = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/train/tokens", H5P_DEFAULT);
    haddr_t at = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    FILE *in = fopen(src, "rb");
    uint8_t *bytes = tr_malloc(8 << 20);
    size_t n = in ? fread(bytes, 1, 8 << 20, in) : 0;
    if (in) fclose(in);
    if (at == HADDR_UNDEF || at + 2 * (uint64_t)index >= n) TR_ABORT("cannot flip %s", src);
    bytes[at + 2 * (uint64_t)index] ^= 0x01;
    write_file(copy, bytes, n);
    tr_free(bytes);
}

/* A hand-made file (no checksum attribute, as files from before it) is still opened,
 * with a warning, but a token id >= vocab_size anywhere in it is found by the scan at
 * open: exit 2, naming the file, the split, the token and where it is. */
static void test_dataset_open_refuses_token_beyond_vocab_in_file_without_checksum(void) {
    if (test_rank != 0) return;
    char err[320], bad[320];
    path_in(err, sizeof(err), "child.err");
    path_in(bad, sizeof(bad), "badtoken.h5");
    uint16_t *t[2] = {cx.split_tokens[0], cx.split_tokens[1]};
    h5_write_token_file(bad, t, cx.n_split_tokens, 0, 257);
    const char *ok[] = {"open", bad, NULL};
    CHECK_MSG(run_child(err, ok) == 0, "a good file without checksum was refused");
    CHECK(file_contains(err, "no checksum"));
    int64_t last = cx.n_split_tokens[1] - 2;
    uint16_t saved = t[1][last];
    t[1][last] = 300;  /* out of the vocabulary, near the end of the validation split */
    h5_write_token_file(bad, t, cx.n_split_tokens, 0, 257);
    t[1][last] = saved;
    char where[64];
    snprintf(where, sizeof(where), "holds token 300 at index %lld", (long long)last);
    CHECK_CHILD_FAILS(where, "open", bad);
    CHECK(file_contains(err, bad) && file_contains(err, "/val/tokens"));
}

static void test_dataset_open_refuses_one_flipped_byte_by_checksum(void) {
    if (test_rank != 0) return;
    char err[320], copy[320];
    path_in(err, sizeof(err), "child.err");
    path_in(copy, sizeof(copy), "flipped.h5");
    flip_token_byte(cx.h5, copy, cx.n_split_tokens[0] / 2);
    CHECK_CHILD_FAILS("fails its checksum", "open", copy);
    CHECK(file_contains(err, copy) && file_contains(err, "/train/tokens"));
    const char *ok[] = {"open", cx.h5, NULL};  /* the original: the flip is the cause */
    CHECK_MSG(run_child(err, ok) == 0, "prep's own file was refused");
}

/* Above the size limit the scan runs on a thread (forced here with a limit of 0 bytes):
 * dataset_open returns, and the first read waits for the verdict and ends the job with
 * exit 2 before any window is handed out. */
static void test_dataset_background_verification_refuses_before_first_window(void) {
    if (test_rank != 0) return;
    char err[320], copy[320];
    path_in(err, sizeof(err), "child.err");
    path_in(copy, sizeof(copy), "flipped_bg.h5");
    flip_token_byte(cx.h5, copy, 12345);
    setenv("TRIDENT_VERIFY_SYNC_BYTES", "0", 1);
    const char *good[] = {"prefetch", cx.h5, NULL};
    CHECK_MSG(run_child(err, good) == 0, "a good file was refused in the background");
    CHECK_CHILD_FAILS("fails its checksum", "prefetch", copy);
    CHECK_CHILD_FAILS("fails its checksum", "read", copy);
    unsetenv("TRIDENT_VERIFY_SYNC_BYTES");
}

/* ---------------------------------------------------------------------------------- */
/* bad input */

static void test_prep_refuses_bad_input_with_message_and_hint(void) {
    if (test_rank != 0) return;
    char out[320], empty[320], blank[320], one[320], seps[320], bad_out[320];
    path_in(out, sizeof(out), "bad.h5");
    path_in(empty, sizeof(empty), "empty.txt");
    path_in(blank, sizeof(blank), "blank.txt");
    path_in(one, sizeof(one), "one.txt");
    path_in(seps, sizeof(seps), "seps.txt");
    write_file(empty, "", 0);
    write_file(blank, "\n \n", 3);
    write_file(one, "only\n%\n\n", 8);
    write_file(seps, "%\n%\n \n%\n", 8);
    snprintf(bad_out, sizeof(bad_out), "%s/no/such/dir/x.h5", cx.dir);
    CHECK_CHILD_FAILS("/no/such/input.txt", "prep", "--out", out, "/no/such/input.txt");
    CHECK_CHILD_FAILS("empty corpus", "prep", "--out", out, empty, blank);
    CHECK_CHILD_FAILS("empty corpus", "prep", "--out", out, "--split-on", "%", seps, blank);
    CHECK_CHILD_FAILS("only 1 document", "prep", "--out", out, one);
    CHECK_CHILD_FAILS("--out", "prep", one);
    CHECK_CHILD_FAILS("--frobnicate", "prep", "--out", out, "--frobnicate", one);
    CHECK_CHILD_FAILS("--val-fraction", "prep", "--out", out, "--val-fraction", "1.5", one);
    CHECK_CHILD_FAILS("--seed", "prep", "--out", out, "--seed", "x", one);
    CHECK_CHILD_FAILS("/no/such/dir", "prep", "--out", bad_out, one);
    CHECK(!file_exists(out));  /* a failed prep leaves no file behind */
}

/* An input file prep cannot read: exit 2, its name and a HINT, no output file. Root
 * reads any file, so as root the child drops to the user 'nobody' (CI runs as root);
 * the files and a copy of this binary sit in a directory that user can reach. */
static int copy_file(const char *from, const char *to, mode_t mode) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, mode);
    char buf[1 << 16];
    ssize_t n = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) { n = -1; break; }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    return in >= 0 && out >= 0 && n == 0 && chmod(to, mode) == 0 ? 0 : -1;
}

static void test_prep_refuses_unreadable_file(void) {
    if (test_rank != 0) return;
    char dir[] = "/tmp/trident_test_unreadable_XXXXXX";
    if (!mkdtemp(dir)) SKIP("mkdtemp failed");
    char exe[320], locked[320], one[320], out[320], err[320];
    snprintf(exe, sizeof exe, "%s/test_io", dir);
    snprintf(locked, sizeof locked, "%s/locked.txt", dir);
    snprintf(one, sizeof one, "%s/one.txt", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(err, sizeof err, "%s/child.err", dir);
    /* writable by anyone, so that a prep that wrongly goes on can write its output */
    chmod(dir, 01777);
    write_file(one, "only\n%\nanother\n", 15);
    chmod(one, 0644);
    write_file(locked, "secret\n", 7);
    chmod(locked, 0);
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid == 0) {
        const struct passwd *pw = getpwnam("nobody");
        if (!pw || pw->pw_uid == 0) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); SKIP("running as root and there is no user 'nobody' to drop to"); }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (copy_file("/proc/self/exe", exe, 0755) != 0) {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        SKIP("cannot copy the test binary to %s", dir);
    }
    const char *argv[] = {exe, "--child", "prep", "--out", out, "--split-on", "%", locked, one, NULL};
    char **envp = child_environ();
    pid_t pid = fork();
    if (pid == 0) {  /* only async-signal-safe calls until exec */
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666), nul = open("/dev/null", O_WRONLY);
        if (e < 0 || nul < 0 || dup2(nul, 1) < 0 || dup2(e, 2) < 0) _exit(98);
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
            _exit(99);
        if (geteuid() == 0) _exit(99);
        execve(exe, (char **)argv, envp);
        _exit(97);
    }
    int status = 0;
    int rc = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)
                 ? WEXITSTATUS(status) : -1;
    tr_free(envp);
    if (rc == 99) {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        SKIP("running as root and cannot switch to uid %d (no CAP_SETUID?)", (int)uid);
    }
    CHECK_MSG(rc == 2, "locked.txt: exit code %d, expected 2 (as uid %d)", rc, (int)uid);
    CHECK_MSG(file_contains(err, "locked.txt"), "stderr lacks 'locked.txt'");
    CHECK_MSG(file_contains(err, "HINT: "), "stderr lacks a HINT (locked.txt)");
    CHECK(!file_exists(out));
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}


/* A small token file written by hand, with one thing wrong. */
static void fake_token_file(const char *path, enum fake_flaw flaw) {
    uint16_t train[3] = {'h', 'i', TOK_EOT}, val[3] = {'h', 'i', TOK_EOT};
    uint16_t *const tokens[2] = {train, val};
    const int64_t n[2] = {3, 3};
    h5_write_token_file_flawed(path, tokens, n, 0, 257, flaw);
}

static void test_dataset_open_refuses_bad_files_with_message_and_hint(void) {
    if (test_rank != 0) return;
    char p[320], err[320], text[320];
    path_in(p, sizeof(p), "fake.h5");
    path_in(err, sizeof(err), "child.err");
    path_in(text, sizeof(text), "text.txt");
    write_file(text, "plain text\n", 11);
    fake_token_file(p, FAKE_OK);  /* the fake itself is good: the flaws below are the cause */
    const char *ok_args[] = {"open", p, NULL};
    CHECK_MSG(run_child(err, ok_args) == 0, "a correct fake file was refused");
    CHECK_CHILD_FAILS("/no/such/tokens.h5", "open", "/no/such/tokens.h5");
    CHECK_CHILD_FAILS("not an HDF5 file", "open", text);
    fake_token_file(p, FAKE_NO_FORMAT);
    CHECK_CHILD_FAILS("missing attribute 'format'", "open", p);
    fake_token_file(p, FAKE_WRONG_FORMAT);
    CHECK_CHILD_FAILS("'hdf5-zoo', expected 'trident-tokens'", "open", p);
    fake_token_file(p, FAKE_NO_VOCAB);
    CHECK_CHILD_FAILS("missing attribute 'vocab_size'", "open", p);
    fake_token_file(p, FAKE_NO_VAL);
    CHECK_CHILD_FAILS("missing dataset '/val/tokens'", "open", p);
    fake_token_file(p, FAKE_BAD_COUNT);
    CHECK_CHILD_FAILS("n_train_tokens", "open", p);
    fake_token_file(p, FAKE_VERSION_2);
    CHECK_CHILD_FAILS("format_version 2", "open", p);
}

static void test_dataset_window_out_of_range_aborts(void) {
    if (test_rank != 0) return;
    char err[320];
    path_in(err, sizeof(err), "child.err");
    const char *args[] = {"window", cx.h5, NULL};
    int rc = run_child(err, args);
    CHECK_MSG(rc != 0 && rc != 2, "exit code %d", rc);
    CHECK(file_contains(err, "outside /train/tokens"));
}

/* ---------------------------------------------------------------------------------- */

/* For tests/test_input.sh: `--child fake FILE TOKEN INDEX` writes a hand-made token file
 * (no checksum, like files from before it) of 20000 training and 4000 validation tokens
 * with training token INDEX set to TOKEN; `--child flip SRC COPY INDEX` copies a
 * contiguous token file flipping the low byte of training token INDEX. */
static int child_tools(int argc, char **argv) {
    if (strcmp(argv[0], "fake") == 0 && argc == 4) {
        int64_t n[2] = {20000, 4000};
        uint16_t *t[2];
        for (int s = 0; s < 2; s++) {
            t[s] = tr_malloc(sizeof(uint16_t) * (size_t)n[s]);
            for (int64_t i = 0; i < n[s]; i++) t[s][i] = i % 50 == 49 ? TOK_EOT : 'a' + i % 26;
        }
        t[0][atoll(argv[3])] = (uint16_t)atoi(argv[2]);
        h5_write_token_file(argv[1], t, n, 0, 257);
        return 0;
    }
    if (strcmp(argv[0], "flip") == 0 && argc == 4) {
        flip_token_byte(argv[1], argv[2], atoll(argv[3]));
        return 0;
    }
    return -1;
}

/* `test_io --child prep ARGS...`, or `--child MODE FILE` with MODE open, window (a window
 * out of range), nowait (wait without prefetch), overqueue (three prefetches), truncate
 * (empty the file under an open dataset, then prefetch), prefetch (all of /train). */
static int child_main(int argc, char **argv) {
    if (strcmp(argv[0], "prep") == 0) return prep_main(argc, argv);  /* no MPI needed */
    int rc = child_tools(argc, argv);
    if (rc >= 0) return rc;
    MPI_Init(NULL, NULL);
    struct dataset *ds = dataset_open(argv[1], MPI_COMM_WORLD);
    int64_t zero = 0, n_train = dataset_n_tokens(ds, DS_TRAIN);
    int32_t *out = tr_malloc(sizeof(int32_t) * (size_t)n_train);
    if (strcmp(argv[0], "window") == 0) {
        int64_t off = n_train - 3;
        dataset_read_windows(ds, DS_TRAIN, &off, 1, 4, out);
    } else if (strcmp(argv[0], "read") == 0) {
        dataset_read_windows(ds, DS_TRAIN, &zero, 1, 4, out);
    } else if (strcmp(argv[0], "nowait") == 0) {
        dataset_wait(ds, out);
    } else if (strcmp(argv[0], "overqueue") == 0) {
        for (int i = 0; i < 3; i++) dataset_prefetch(ds, DS_TRAIN, &zero, 1, 4);
    } else if (strcmp(argv[0], "truncate") == 0 || strcmp(argv[0], "prefetch") == 0) {
        if (argv[0][0] == 't' && truncate(argv[1], 0) != 0) TR_ABORT("cannot truncate");
        dataset_prefetch(ds, DS_TRAIN, &zero, 1, (int)n_train);
        dataset_wait(ds, out);
    }
    tr_free(out);
    dataset_close(ds);
    MPI_Finalize();
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) return child_main(argc - 2, argv + 2);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &test_rank);
    tr_set_rank(test_rank);
    if (test_rank == 0) {
        snprintf(cx.dir, sizeof(cx.dir), "/tmp/trident_test_io_XXXXXX");
        if (!mkdtemp(cx.dir)) TR_ABORT("mkdtemp failed");
    }
    MPI_Bcast(cx.dir, sizeof(cx.dir), MPI_CHAR, 0, MPI_COMM_WORLD);

    RUN(test_tokenizer_round_trips_all_byte_values);
    RUN(test_tokenizer_round_trips_random_buffers);
    RUN(test_tokenizer_shows_eot_as_separator_and_bad_tokens_as_replacement);

    corpus_setup();
    MPI_Barrier(MPI_COMM_WORLD);
    RUN(test_prep_files_are_documents_in_argument_order);
    RUN(test_prep_writes_all_attributes);
    RUN(test_prep_writes_checksum_and_max_token_of_each_split);
    RUN(test_prep_split_on_cuts_blocks_between_separator_lines);
    RUN(test_prep_validation_fraction_is_close_to_requested);
    RUN(test_prep_directory_is_sorted_and_skips_dat_binary_and_duplicates);
    RUN(test_prep_puts_one_document_in_each_split_when_chance_leaves_one_empty);

    RUN(test_dataset_open_reports_what_prep_wrote);
    RUN(test_dataset_windows_equal_slices_in_any_order);
    RUN(test_prefetch_returns_what_read_windows_returns);
    RUN(test_prefetch_keeps_two_requests_in_order_while_caller_holds_results);
    RUN(test_prep_shards_hold_every_document_once_in_order);
    RUN(test_dataset_corpus_concatenates_shards_and_reads_across_boundaries);
    RUN(test_dataset_falls_back_to_hdf5_for_chunked_files);

    RUN(test_prep_refuses_bad_input_with_message_and_hint);
    RUN(test_prep_refuses_unreadable_file);
    RUN(test_dataset_open_refuses_bad_files_with_message_and_hint);
    RUN(test_dataset_window_out_of_range_aborts);
    RUN(test_dataset_corpus_refuses_mismatched_vocab_and_empty_glob);
    RUN(test_prefetch_misuse_and_io_errors_abort);
    RUN(test_dataset_open_refuses_token_beyond_vocab_in_file_without_checksum);
    RUN(test_dataset_open_refuses_one_flipped_byte_by_checksum);
    RUN(test_dataset_background_verification_refuses_before_first_window);

    MPI_Barrier(MPI_COMM_WORLD);
    if (test_rank == 0) nftw(cx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (int i = 0; i < N_FILE_DOCS; i++) tr_free(cx.docs[i]);
    tr_free(cx.split_tokens[0]);
    tr_free(cx.split_tokens[1]);
    /* A failure on any rank fails the run; rank 0 reports it. */
    int n_fail_max = 0;
    MPI_Allreduce(&test_n_fail, &n_fail_max, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    if (test_rank != 0) return n_fail_max ? 1 : 0;
    test_n_fail = n_fail_max > test_n_fail ? n_fail_max : test_n_fail;
    return test_summary();
}
