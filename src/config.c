/* config.c — the table of configuration keys and everything driven by it. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cuda/launch.h"

enum cfg_type { CT_INT, CT_LONG, CT_FLOAT, CT_STR, CT_ENUM };

struct cfg_key {
    const char   *name;
    enum cfg_type type;
    size_t        offset;
    size_t        size;    /* for strings: buffer size */
    const char   *def;     /* default, as text */
    double        min, max;
    const char   *choices; /* CT_ENUM: "a|b|c" */
    const char   *doc;
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)

static const struct cfg_key KEYS[] = {
    /* model */
    {"n_layer", CT_INT, F(n_layer), "4", 1, 1024, NULL, "transformer blocks"},
    {"n_head", CT_INT, F(n_head), "4", 1, 1024, NULL, "attention heads (must divide n_embd)"},
    {"n_embd", CT_INT, F(n_embd), "128", 1, 65536, NULL, "model width C"},
    {"seq_len", CT_INT, F(seq_len), "128", 1, 1 << 20, NULL, "training context length T (tokens)"},
    {"block_size", CT_INT, F(block_size), "1024", 1, 1 << 20, NULL,
     "positions the model has embeddings for (seq_len <= block_size)"},
    {"vocab_size", CT_INT, F(vocab_size), "257", 2, 1 << 24, NULL,
     "vocabulary (257 = bytes + end-of-document); padded up to a multiple of 128"},
    /* batch */
    {"micro_batch", CT_INT, F(micro_batch), "8", 1, 1 << 20, NULL,
     "sequences per micro-batch per data-parallel rank"},
    {"grad_accum", CT_INT, F(grad_accum), "1", 1, 1 << 20, NULL,
     "micro-batches per step (gradient accumulation; also the pipeline micro-batches)"},
    {"steps", CT_INT, F(steps), "1000", 0, INT_MAX, NULL, "optimizer steps to train"},
    /* optimizer */
    {"lr", CT_FLOAT, F(lr), "6e-4", 0, 10, NULL, "peak learning rate (every optimizer)"},
    {"min_lr", CT_FLOAT, F(min_lr), "6e-5", 0, 10, NULL, "floor of the cosine decay"},
    {"warmup", CT_INT, F(warmup), "100", 0, INT_MAX, NULL, "linear warmup steps"},
    {"weight_decay", CT_FLOAT, F(weight_decay), "0.1", 0, 10, NULL,
     "decoupled weight decay (matrices only, never biases or LayerNorm)"},
    {"beta1", CT_FLOAT, F(beta1), "0.9", 0, 0.999999, NULL, "AdamW beta1"},
    {"beta2", CT_FLOAT, F(beta2), "0.95", 0, 0.999999, NULL, "AdamW beta2"},
    {"adam_eps", CT_FLOAT, F(adam_eps), "1e-8", 0, 1, NULL, "AdamW epsilon"},
    {"grad_clip", CT_FLOAT, F(grad_clip), "1.0", 0, 1e9, NULL,
     "clip the global gradient norm to this (0 = off)"},
    {"optimizer", CT_ENUM, F(optimizer), "adamw", 0, 0, "adamw|lamb|lars|sgd",
     "adamw; lamb or lars (layer-wise trust ratios, for large batches); sgd with momentum"},
    {"momentum", CT_FLOAT, F(momentum), "0.9", 0, 0.999999, NULL,
     "momentum of sgd and lars"},
    {"optim_state", CT_ENUM, F(optim_state), "fp32", 0, 0, "fp32|bf16|int8",
     "element type of the optimizer's moments: fp32, bf16, or int8 in blocks with a scale "
     "each"},
    {"lr_scaling", CT_ENUM, F(lr_scaling), "none", 0, 0, "none|linear|sqrt",
     "scale lr (and min_lr) by the global batch over ref_batch, or its square root"},
    {"ref_batch", CT_INT, F(ref_batch), "0", 0, INT_MAX, NULL,
     "global batch (sequences) that lr is given for, with lr_scaling (0 = this run's)"},
    /* run */
    {"seed", CT_LONG, F(seed), "1337", 0, 9.2e18, NULL, "seed of weights and data order"},
    {"data", CT_STR, F(data), "data/fortunes.h5", 0, 0, NULL,
     "token file made by `trident prep` (a glob or comma list for several)"},
    {"run_dir", CT_STR, F(run_dir), "runs/default", 0, 0, NULL,
     "directory for config, metrics.jsonl, checkpoints and logs"},
    {"resume", CT_STR, F(resume), "auto", 0, 0, NULL,
     "auto (newest checkpoint in run_dir), none (fresh run only), or a checkpoint path"},
    {"eval_every", CT_INT, F(eval_every), "100", 0, INT_MAX, NULL,
     "validation loss every N steps (0 = only at the end)"},
    {"eval_batches", CT_INT, F(eval_batches), "8", 1, 1 << 20, NULL,
     "micro-batches per validation pass"},
    {"ckpt_every", CT_INT, F(ckpt_every), "500", 0, INT_MAX, NULL,
     "checkpoint every N steps (0 = only at the end)"},
    {"ckpt_minutes", CT_FLOAT, F(ckpt_minutes), "0", 0, 1e6, NULL,
     "also checkpoint when this many minutes passed since the last one (0 = off)"},
    {"stop_at", CT_INT, F(stop_at), "0", 0, INT_MAX, NULL,
     "checkpoint and exit with code 75 after this step, to continue later (0 = off)"},
    {"ckpt_keep", CT_INT, F(ckpt_keep), "3", 1, 1000, NULL, "checkpoints kept in run_dir"},
    {"trace_steps", CT_INT, F(trace_steps), "0", 0, INT_MAX, NULL,
     "write a timeline of every rank for the first N steps to run_dir/trace.json (0 = off)"},
    {"link_probe_every", CT_INT, F(link_probe_every), "100", 0, INT_MAX, NULL,
     "time each rank's link to the other nodes every N steps; metrics.jsonl names the "
     "slowest (0 = off; off on one node)"},
    {"log_every", CT_INT, F(log_every), "10", 1, INT_MAX, NULL, "progress line every N steps"},
    /* device */
    {"device", CT_ENUM, F(device), "cpu", 0, 0, "cpu|cuda",
     "where each rank computes: cpu (OpenMP + OpenBLAS) or cuda (one GPU per rank, "
     "cuBLAS + NCCL; the CUDA build, make BACKEND=cuda)"},
    {"precision", CT_ENUM, F(precision), "fp32", 0, 0, "fp32|bf16|fp16",
     "mixed precision: weights are computed with, and activations stored in, this type; "
     "master weights, optimizer state and gradients stay fp32"},
    {"grad_reduce", CT_ENUM, F(grad_reduce), "fp32", 0, 0, "fp32|bf16",
     "element type of the data-parallel gradient reduction on the wire (bf16: half the "
     "bytes, summed in fp32)"},
    {"loss_scale", CT_FLOAT, F(loss_scale), "65536", 1, 16777216, NULL,
     "fp16: the first dynamic loss scale (halved on overflow, doubled after "
     "loss_scale_window clean steps)"},
    {"loss_scale_window", CT_INT, F(loss_scale_window), "2000", 1, INT_MAX, NULL,
     "fp16: clean steps in a row before the loss scale grows"},
    /* parallel layout */
    {"dp", CT_INT, F(dp), "0", 0, 1 << 20, NULL, "data-parallel size (0 = derive)"},
    {"tp", CT_INT, F(tp), "1", 0, 1024, NULL, "tensor-parallel size (0 = derive)"},
    {"pp", CT_INT, F(pp), "1", 0, 1024, NULL, "pipeline stages (0 = derive)"},
    {"schedule", CT_ENUM, F(schedule), "1f1b", 0, 0, "1f1b|gpipe", "pipeline schedule"},
    {"allreduce", CT_ENUM, F(allreduce), "auto", 0, 0, "auto|flat|hier",
     "data-parallel gradient reduction (auto = hier when DP spans several nodes)"},
    {"bucket_mb", CT_FLOAT, F(bucket_mb), "8", 0.001, 4096, NULL,
     "gradient bucket size for overlapped reduction (MiB)"},
    {"stages", CT_STR, F(stages), "", 0, 0, NULL,
     "layers per pipeline stage, e.g. \"5,7\" (empty = balanced by cost)"},
    /* memory */
    {"recompute", CT_ENUM, F(recompute), "none", 0, 0, "none|selective|full",
     "activations recomputed in the backward pass: none, selective (attention core and "
     "GELU), or full (each block from its input)"},
    {"zero", CT_INT, F(zero), "0", 0, 1, NULL,
     "1: fp32 master weights and optimizer state sharded over the data-parallel ranks "
     "(ZeRO-1)"},
    /* reliability */
    {"on_divergence", CT_ENUM, F(on_divergence), "stop", 0, 0, "stop|rollback",
     "on a non-finite or spiking loss: stop (exit 1), or reload the last good checkpoint "
     "and skip the step's data"},
    {"spike_factor", CT_FLOAT, F(spike_factor), "3", 0, 1e6, NULL,
     "a loss above this many times the median of the recent steps is a divergence (0 = off)"},
    {"spike_window", CT_INT, F(spike_window), "50", 1, 100000, NULL,
     "recent steps whose median loss the spike test compares against"},
    {"max_rollbacks", CT_INT, F(max_rollbacks), "3", 0, 1000, NULL,
     "rollbacks allowed per run before on_divergence = rollback gives up (exit 1)"},
    {"watchdog_s", CT_FLOAT, F(watchdog_s), "0", -1, 1e7, NULL,
     "end the job when a rank makes no progress for this many seconds (0 = derive from "
     "the step time, at least 300; -1 = off)"},
    {"mem_limit", CT_STR, F(mem_limit), "auto", 0, 0, NULL,
     "memory one node may use: auto (cgroup limit or MemAvailable), a size such as 16G, "
     "or off"},
};
#undef F

enum { N_KEYS = sizeof(KEYS) / sizeof(KEYS[0]) };

static const struct cfg_key *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = TR_MIN(sub, TR_MIN(del, ins));
        }
    return d[la][lb];
}

static const char *nearest_key(const char *name) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; i < N_KEYS; i++) {
        int d = edit_distance(name, KEYS[i].name);
        if (d < best_d) { best_d = d; best = KEYS[i].name; }
    }
    return best;
}

static int enum_has(const char *choices, const char *value) {
    size_t n = strlen(value);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* The strict number rules every option shares: the whole text must parse, the value
 * must be finite and in [min, max]. Failures name `where` and `name` and end in tr_fail
 * with type_hint (a malformed number) or range_hint (out of range). */
static long long parse_int_hinted(const char *where, const char *name, const char *text,
                                  long long min, long long max, const char *type_hint,
                                  const char *range_hint) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno)
        tr_fail(TR_EXIT_USAGE, type_hint, "%s: '%s' expects an integer, got '%s'", where, name,
                text);
    if (v < min || v > max)
        tr_fail(TR_EXIT_USAGE, range_hint, "%s: %s = %lld is out of range [%lld, %lld]", where,
                name, v, min, max);
    return v;
}

static double parse_float_hinted(const char *where, const char *name, const char *text,
                                 double min, double max, const char *type_hint,
                                 const char *range_hint) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        tr_fail(TR_EXIT_USAGE, type_hint, "%s: '%s' expects a number, got '%s'", where, name,
                text);
    if (v < min || v > max)
        tr_fail(TR_EXIT_USAGE, range_hint, "%s: %s = %g is out of range [%g, %g]", where, name,
                v, min, max);
    return v;
}

long config_parse_int(const char *where, const char *name, const char *text, long min,
                      long max) {
    char hint[160];
    snprintf(hint, sizeof hint, "give a whole number from %ld to %ld", min, max);
    return (long)parse_int_hinted(where, name, text, min, max, hint, hint);
}

double config_parse_float(const char *where, const char *name, const char *text, double min,
                          double max) {
    char hint[160];
    snprintf(hint, sizeof hint, "give a finite number from %g to %g", min, max);
    return parse_float_hinted(where, name, text, min, max, hint, hint);
}

void config_set(struct config *cfg, const char *key, const char *value, const char *where) {
    const struct cfg_key *k = find_key(key);
    char hint[256], range_hint[256];
    if (!k) {
        snprintf(hint, sizeof hint, "did you mean '%s'? `trident help` lists every key",
                 nearest_key(key));
        tr_fail(TR_EXIT_USAGE, hint, "%s: unknown config key '%s'", where, key);
    }
    char *base = (char *)cfg + k->offset;
    snprintf(range_hint, sizeof range_hint, "%s: %s", k->name, k->doc);
    switch (k->type) {
    case CT_INT:
    case CT_LONG: {
        snprintf(hint, sizeof hint, "write a whole number, e.g. %s = %s", k->name, k->def);
        long long v = parse_int_hinted(where, k->name, value, (long long)k->min,
                                       (long long)k->max, hint, range_hint);
        if (k->type == CT_INT) *(int *)base = (int)v;
        else *(long *)base = (long)v;
        break;
    }
    case CT_FLOAT: {
        snprintf(hint, sizeof hint, "write a number, e.g. %s = %s", k->name, k->def);
        *(float *)base = (float)parse_float_hinted(where, k->name, value, k->min, k->max, hint,
                                                   range_hint);
        break;
    }
    case CT_ENUM:
        if (!enum_has(k->choices, value)) {
            snprintf(hint, sizeof hint, "choose one of: %s", k->choices);
            tr_fail(TR_EXIT_USAGE, hint, "%s: '%s' = '%s' is not a valid choice", where,
                    k->name, value);
        }
        /* fall through */
    case CT_STR:
        if (strlen(value) >= k->size)
            tr_fail(TR_EXIT_USAGE, NULL, "%s: value of '%s' is longer than %zu characters",
                    where, k->name, k->size - 1);
        strcpy(base, value);
        break;
    }
}

void config_defaults(struct config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++) config_set(cfg, KEYS[i].name, KEYS[i].def, "default");
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Parse `key = value` lines (comments after '#'); used for files and for checkpoint
 * attributes alike. A key set twice is refused with both lines named: which one was
 * meant to win is the user's call, not the parser's (overriding belongs on the command
 * line). */
static void parse_text(struct config *cfg, char *text, const char *origin) {
    int lineno = 0, line_of[N_KEYS] = {0};  /* line that set each key, 0: not yet */
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char where[CFG_STR_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", origin, lineno);
        char *eq = strchr(s, '=');
        if (!eq)
            tr_fail(TR_EXIT_USAGE, "each line is `key = value`; comments start with #",
                    "%s: expected `key = value`, got '%s'", where, s);
        *eq = '\0';
        char *value = trim(eq + 1);
        size_t n = strlen(value);
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') { value[n - 1] = '\0'; value++; }
        const char *key = trim(s);
        const struct cfg_key *k = find_key(key);
        if (k) {
            int *first = &line_of[k - KEYS];
            if (*first)
                tr_fail(TR_EXIT_USAGE, "keep one of the two lines (to try another value, "
                        "override it on the command line: --key=value)",
                        "%s:%d and %s:%d both set '%s'", origin, *first, origin, lineno,
                        k->name);
            *first = lineno;
        }
        config_set(cfg, key, value, where);
    }
}

void config_load_file(struct config *cfg, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        tr_fail(TR_EXIT_USAGE, "configs live in inputs/, e.g. inputs/tiny.conf",
                "cannot read config file '%s': %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0)
        tr_fail(TR_EXIT_USAGE, "give a regular file", "cannot read config file '%s': %s", path,
                strerror(errno));
    char *text = tr_malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    /* The parser works on C strings: a NUL would silently end the file there. */
    const char *nul = memchr(text, '\0', got);
    if (nul) {
        int lineno = 1;
        for (const char *c = text; c < nul; c++) lineno += *c == '\n';
        tr_fail(TR_EXIT_USAGE, "a config is a text file; remove the NUL byte (or re-save the "
                "file as plain text, not UTF-16)",
                "%s:%d: NUL byte in config file '%s' (at byte %ld)", path, lineno, path,
                (long)(nul - text));
    }
    parse_text(cfg, text, path);
    tr_free(text);
}

void config_from_string(struct config *cfg, const char *text, const char *where) {
    char *copy = tr_malloc(strlen(text) + 1);
    strcpy(copy, text);
    parse_text(cfg, copy, where);
    tr_free(copy);
}

void config_parse_args(struct config *cfg, int argc, char **argv, const char *const *extra,
                       const char **extra_values) {
    int n_extra = 0;
    while (extra && extra[n_extra]) extra_values[n_extra++] = NULL;
    /* the config file comes first so that overrides win regardless of order */
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            if (!strchr(argv[i], '=') && i + 1 < argc) i++; /* skip `--key value` */
            continue;
        }
        if (file)
            tr_fail(TR_EXIT_USAGE, "give one config file, then --key=value overrides",
                    "two config files given: '%s' and '%s'", file, argv[i]);
        file = argv[i];
    }
    if (file) config_load_file(cfg, file);
    char **opt_key = tr_malloc(sizeof(char *) * (size_t)(argc + 1));
    char **opt_text = tr_malloc(sizeof(char *) * (size_t)(argc + 1));  /* as given */
    int n_opts = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) continue;
        char key[128];
        const char *value;
        const char *eq = strchr(argv[i], '=');
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
            value = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", argv[i] + 2);
            if (i + 1 >= argc)
                tr_fail(TR_EXIT_USAGE, "write --key=value", "option '--%s' has no value", key);
            value = argv[++i];
        }
        size_t n_text = strlen(argv[i - !eq]) + strlen(value) + 2;
        char *text = tr_malloc(n_text);
        if (eq) snprintf(text, n_text, "%s", argv[i]);
        else snprintf(text, n_text, "%s %s", argv[i - 1], value);
        /* An override replaces the file's value. The same option twice is ambiguous, but
         * scripts build command lines by appending overrides to a base list (the test
         * suites, slurm/demo.sh "$@"), so the later one wins, with a warning naming both. */
        for (int j = 0; j < n_opts; j++)
            if (strcmp(opt_key[j], key) == 0)
                tr_warn("option '--%s' is given twice on the command line: '%s' and '%s'; "
                        "using the later one", key, opt_text[j], text);
        opt_key[n_opts] = tr_malloc(strlen(key) + 1);
        strcpy(opt_key[n_opts], key);
        opt_text[n_opts++] = text;
        int handled = 0;
        for (int e = 0; e < n_extra; e++)
            if (strcmp(extra[e], key) == 0) { extra_values[e] = value; handled = 1; }
        if (handled) continue;
        char where[160];
        snprintf(where, sizeof where, "--%s", key);
        config_set(cfg, key, value, where);
    }
    for (int j = 0; j < n_opts; j++) tr_free(opt_key[j]), tr_free(opt_text[j]);
    tr_free(opt_key);
    tr_free(opt_text);
}

int config_padded_vocab(const struct config *cfg) {
    return (cfg->vocab_size + 127) / 128 * 128;
}

/* device = cuda: what the CUDA kernels are not built for (kernels/cuda/launch.c), refused
 * here, on every rank, before any GPU work. Plain arithmetic on the config, so the CPU
 * build judges a config for a GPU alike (and its tests check the messages). Called once
 * n_head is known to divide n_embd. */
static void refuse_cuda_limits(const struct config *c) {
    char hint[256];
    const int hs = c->n_embd / c->n_head;
    if (!cuda_attention_head_size_ok(hs)) {
        /* the head count nearest to the one given whose head size the kernels take */
        static const int sizes[] = {16, 32, 64, 128};
        int best = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            if (c->n_embd % sizes[i]) continue;
            int h = c->n_embd / sizes[i];
            if (!best || abs(h - c->n_head) < abs(best - c->n_head)) best = h;
        }
        if (best)
            snprintf(hint, sizeof hint, "use n_head = %d (head size %d), or another n_head "
                     "that makes n_embd / n_head one of %s; or device = cpu", best,
                     c->n_embd / best, cuda_attention_head_sizes());
        else
            snprintf(hint, sizeof hint, "use an n_embd that is a multiple of 64 and n_head = "
                     "n_embd / 64 (head sizes %s are built), or device = cpu",
                     cuda_attention_head_sizes());
        tr_fail(TR_EXIT_USAGE, hint, "device = cuda: head size n_embd / n_head = %d / %d = %d "
                "is not one the CUDA attention kernels are built for (%s)", c->n_embd,
                c->n_head, hs, cuda_attention_head_sizes());
    }
    /* LayerNorm's backward pass and the matmul's bias gradient sum the rows of a
     * micro-batch in chunks of CUDA_LN_CHUNK_ROWS, one grid row per chunk */
    const long max_tokens = (long)CUDA_MAX_GRID_YZ * CUDA_LN_CHUNK_ROWS;
    if ((long)c->micro_batch * c->seq_len > max_tokens) {
        snprintf(hint, sizeof hint, "use micro_batch <= %ld with seq_len = %d (and grad_accum "
                 "for a larger batch), or device = cpu", max_tokens / c->seq_len, c->seq_len);
        tr_fail(TR_EXIT_USAGE, hint, "device = cuda: micro_batch x seq_len = %d x %d tokens "
                "is more than the CUDA kernels' %ld per micro-batch (%d row chunks of %d)",
                c->micro_batch, c->seq_len, max_tokens, (int)CUDA_MAX_GRID_YZ,
                (int)CUDA_LN_CHUNK_ROWS);
    }
}

void config_validate(const struct config *c) {
    char hint[256];
    if (strcmp(c->grad_reduce, "bf16") == 0 && strcmp(c->allreduce, "hier") == 0)
        tr_fail(TR_EXIT_USAGE, "use allreduce = flat (or auto) with grad_reduce = bf16, or "
                "grad_reduce = fp32 with allreduce = hier",
                "grad_reduce = bf16 has no hierarchical form: it is an all-to-all and an "
                "all-gather over the data-parallel group");
    if (c->n_embd % c->n_head != 0) {
        int h = c->n_head;
        while (h > 1 && c->n_embd % h) h--;
        snprintf(hint, sizeof hint, "use n_head = %d, or an n_embd that is a multiple of %d",
                 h, c->n_head);
        tr_fail(TR_EXIT_USAGE, hint, "n_head = %d does not divide n_embd = %d", c->n_head,
                c->n_embd);
    }
    if (strcmp(c->device, "cuda") == 0) refuse_cuda_limits(c);
    if (c->seq_len > c->block_size) {
        snprintf(hint, sizeof hint, "set seq_len <= %d, or raise block_size to %d",
                 c->block_size, c->seq_len);
        tr_fail(TR_EXIT_USAGE, hint, "seq_len = %d exceeds block_size = %d (positions the "
                "model can embed)", c->seq_len, c->block_size);
    }
    if (c->min_lr > c->lr)
        tr_fail(TR_EXIT_USAGE, "min_lr is the floor the cosine schedule decays to",
                "min_lr = %g is larger than lr = %g", c->min_lr, c->lr);
    if (c->run_dir[0] == '\0')
        tr_fail(TR_EXIT_USAGE, "set run_dir = some/directory", "run_dir is empty");
}

void config_print(const struct config *cfg, FILE *f) {
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &KEYS[i];
        const char *base = (const char *)cfg + k->offset;
        fprintf(f, "%-13s = ", k->name);
        switch (k->type) {
        case CT_INT:   fprintf(f, "%d\n", *(const int *)base); break;
        case CT_LONG:  fprintf(f, "%ld\n", *(const long *)base); break;
        case CT_FLOAT: fprintf(f, "%.9g\n", *(const float *)base); break;
        case CT_ENUM:
        case CT_STR:   fprintf(f, "\"%s\"\n", base); break;
        }
    }
}

char *config_to_string(const struct config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) TR_ABORT("open_memstream failed");
    config_print(cfg, f);
    fclose(f);
    char *out = tr_malloc(len + 1);
    memcpy(out, buf, len + 1);
    free(buf);
    return out;
}

void config_print_reference(FILE *f) {
    fprintf(f, "| key | default | meaning |\n|---|---|---|\n");
    for (int i = 0; i < N_KEYS; i++) {
        char choices[64] = "";
        if (KEYS[i].choices) {
            /* "a|b" would split a Markdown table cell */
            snprintf(choices, sizeof choices, "; one of %s", KEYS[i].choices);
            for (char *c = choices; *c; c++)
                if (*c == '|') *c = '/';
        }
        fprintf(f, "| `%s` | `%s` | %s%s |\n", KEYS[i].name, KEYS[i].def[0] ? KEYS[i].def : "\"\"",
                KEYS[i].doc, choices);
    }
}
