/* config.h — run configuration: `key = value` files plus `--key=value` overrides.
 *
 * Every key is described once, in the table in config.c (name, type, default, range,
 * meaning); parsing, validation, printing and the README's key list all come from it.
 */
#ifndef TRIDENT_CONFIG_H
#define TRIDENT_CONFIG_H

#include <stdio.h>

#define CFG_STR_MAX 512

struct config {
    /* model */
    int   n_layer, n_head, n_embd, seq_len, block_size, vocab_size;
    /* batch and schedule */
    int   micro_batch, grad_accum, steps;
    /* optimizer */
    float lr, min_lr, weight_decay, beta1, beta2, adam_eps, grad_clip;
    char  optimizer[8];   /* "adamw" | "lamb" | "lars" | "sgd" */
    float momentum;       /* sgd, lars */
    char  optim_state[8]; /* "fp32" | "bf16" | "int8": element type of the optimizer's moments */
    char  lr_scaling[8];  /* "none" | "linear" | "sqrt": lr × f(global batch / ref_batch) */
    int   ref_batch;      /* sequences the given lr is meant for (lr_scaling) */
    int   warmup;
    /* run */
    long  seed;
    char  data[CFG_STR_MAX];
    char  run_dir[CFG_STR_MAX];
    char  resume[CFG_STR_MAX];
    int   eval_every, eval_batches, ckpt_every, ckpt_keep, log_every;
    float ckpt_minutes;
    int   stop_at;
    int   trace_steps;
    int   link_probe_every;   /* time the links between nodes every N steps (0 = off) */
    /* device */
    char  device[16];    /* "cpu" | "cuda" */
    char  precision[8];  /* "fp32" | "bf16" | "fp16": weights' compute copy, activations */
    char  grad_reduce[8];/* "fp32" | "bf16": dtype of the data-parallel reduction */
    float loss_scale;    /* fp16: the first loss scale */
    int   loss_scale_window; /* fp16: clean steps before the scale doubles */
    /* parallel layout (0 = derive from the world size) */
    int   dp, tp, pp;
    char  schedule[16];  /* "1f1b" | "gpipe" */
    char  allreduce[16]; /* "auto" | "flat" | "hier" */
    float bucket_mb;
    char  stages[CFG_STR_MAX]; /* "" = balanced; else layers per stage, e.g. "5,7" */
    char  recompute[12];  /* "none" | "selective" | "full": activations recomputed in backward */
    int   zero;           /* 1: masters and optimizer state sharded over data-parallel ranks */
    /* reliability */
    char  on_divergence[16];   /* "stop" | "rollback" */
    float spike_factor;        /* loss > factor × recent median is a divergence (0 = off) */
    int   spike_window;        /* steps in the recent median */
    int   max_rollbacks;       /* rollbacks allowed per invocation */
    float watchdog_s;          /* no progress for this long ends the job (0 = derive, -1 = off) */
    char  mem_limit[32];       /* "auto" | SIZE ("16G", "512M") | "off" */
};

/* Defaults for every key. */
void config_defaults(struct config *cfg);

/* Apply one `key = value` assignment. `where` names its origin for error messages
 * ("inputs/tiny.conf:12", "--lr"). Bad key or value: tr_fail with a suggestion. */
void config_set(struct config *cfg, const char *key, const char *value, const char *where);

/* The strict number rules of config values, for options that are not config keys
 * (`trident sample --top_k`): the whole text must parse, the value must be finite and in
 * [min, max]; otherwise tr_fail naming `where` (e.g. "--top_k") and `name`. */
long   config_parse_int  (const char *where, const char *name, const char *text, long min,
                          long max);
double config_parse_float(const char *where, const char *name, const char *text, double min,
                          double max);

/* Read a config file; missing/unreadable file or bad line: tr_fail. */
void config_load_file(struct config *cfg, const char *path);

/* Parse argv: the first non-option argument (if any) is a config file, loaded first;
 * then every `--key=value` (or `--key value`) is applied in order. Options listed in
 * `extra` (NULL-terminated, e.g. "prompt") are not config keys: their values are
 * returned through extra_values[i] (NULL when absent). */
void config_parse_args(struct config *cfg, int argc, char **argv, const char *const *extra,
                       const char **extra_values);

/* Check values that depend on each other (heads divide width, seq_len <= block_size...).
 * Layout checks that need the world size live in grid.c. */
void config_validate(const struct config *cfg);

/* Print every key = value (the effective config), in file format. */
void config_print(const struct config *cfg, FILE *f);

/* Serialise to a single string (for checkpoint attributes) and back. */
char *config_to_string(const struct config *cfg);  /* caller frees with tr_free */
void  config_from_string(struct config *cfg, const char *text, const char *where);

/* Print the key reference as a Markdown table (README). */
void config_print_reference(FILE *f);

/* Vocabulary rounded up to a multiple of 128 (so that tensor-parallel splits are even). */
int config_padded_vocab(const struct config *cfg);

#endif
