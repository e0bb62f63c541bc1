/* sample.c — autoregressive generation with temperature and top-k, on one rank. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "common.h"
#include "grid.h"
#include "model.h"
#include "rng.h"
#include "tokenizer.h"
#include "train.h"

#define STREAM_SAMPLE 0x73616d706c65ull

struct cand { float logit; int token; };

static int by_logit_desc(const void *a, const void *b) {
    float x = ((const struct cand *)a)->logit, y = ((const struct cand *)b)->logit;
    return (x < y) - (x > y);
}

/* Draw a token from softmax(logits / temperature) restricted to the top_k largest
 * (top_k <= 0: all). temperature 0 means greedy. u in (0, 1]. */
static int pick(const float *logits, int V, float temperature, int top_k, double u,
                struct cand *c) {
    for (int v = 0; v < V; v++) c[v] = (struct cand){logits[v], v};
    qsort(c, (size_t)V, sizeof *c, by_logit_desc);
    if (temperature <= 0.0f) return c[0].token;
    int K = (top_k > 0 && top_k < V) ? top_k : V;
    double sum = 0.0;
    for (int i = 0; i < K; i++) sum += exp((c[i].logit - c[0].logit) / temperature);
    double r = u * sum, acc = 0.0;
    for (int i = 0; i < K; i++) {
        acc += exp((c[i].logit - c[0].logit) / temperature);
        if (acc >= r) return c[i].token;
    }
    return c[K - 1].token;
}

int sample_main(int argc, char **argv) {
    const char *extra[] = {"ckpt", "prompt", "length", "temperature", "top_k", NULL};
    const char *val[5];
    struct config cfg;
    config_defaults(&cfg);
    config_parse_args(&cfg, argc - 1, argv + 1, extra, val);
    if (!val[0])
        tr_fail(TR_EXIT_USAGE, "trident sample --ckpt runs/NAME [--prompt TEXT]",
                "sample needs --ckpt PATH (a checkpoint, or a run directory)");
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world != 1)
        tr_fail(TR_EXIT_USAGE, "run sample without mpirun (one process)",
                "sample runs on one rank; this job has %d", world);
    char path[CFG_STR_MAX + 64];
    if (ckpt_find_latest(val[0], path, sizeof path) != 0) snprintf(path, sizeof path, "%s", val[0]);
    const char *prompt = val[1] ? val[1] : "";
    /* The same strict rules as config values: "abc", "-5", "nan" are refused. */
    int length = val[2] ? (int)config_parse_int("--length", "length", val[2], 1, 1 << 19) : 256;
    float temperature =
        val[3] ? (float)config_parse_float("--temperature", "temperature", val[3], 0.0, 100.0)
               : 0.8f;
    int top_k = val[4] ? (int)config_parse_int("--top_k", "top_k", val[4], 0, 1 << 24) : 40;
    long seed = cfg.seed;  /* --seed overrides the checkpoint's seed below */

    struct config mc;
    config_defaults(&mc);
    ckpt_read_config(path, &mc);
    int seed_given = 0;
    for (int i = 1; i < argc; i++) seed_given |= strncmp(argv[i], "--seed", 6) == 0;
    if (!seed_given) seed = mc.seed;
    mc.dp = mc.tp = mc.pp = 1;
    mc.micro_batch = 1;
    mc.stages[0] = '\0';
    struct grid g;
    grid_init(&g, &mc);
    /* the device is this invocation's choice (--device), not the checkpoint's */
    struct backend *be = trainer_open_backend(cfg.device, 0);
    struct model m;
    model_init(&m, &mc, &g, be, 1);
    ckpt_load(path, &m, NULL);

    const int T = mc.seq_len;
    int n_ctx_max = 1 << 20;
    int32_t *ctx = tr_malloc(sizeof(int32_t) * (size_t)n_ctx_max);
    size_t plen = strlen(prompt);
    int n = 0;
    ctx[n++] = TOK_EOT; /* a document starts after an end-of-document token */
    for (size_t i = 0; i < plen && n < n_ctx_max / 2; i++) ctx[n++] = (uint8_t)prompt[i];
    struct cand *cands = tr_malloc(sizeof(struct cand) * (size_t)m.Vp);
    float *logits = tr_malloc(sizeof(float) * (size_t)m.Vl);  /* the last position's */
    /* ... in fp32 on the device, whatever the model's precision */
    struct tensor last32 = tensor_2d(backend_alloc(be, sizeof(float) * (size_t)m.Vl), KDT_F32,
                                     1, m.Vl);
    fwrite(prompt, 1, plen, stdout);
    fflush(stdout);
    uint8_t text[64];
    for (int i = 0; i < length && n < n_ctx_max; i++) {
        /* the last T tokens are the context (the model has T positions) */
        int len = n < T ? n : T;
        struct acts *a = &m.slots[0];
        backend_copy_h2d(be, a->tokens.data, ctx + n - len, sizeof(int32_t) * (size_t)len);
        backend_memset(be, a->targets.data, 0, sizeof(int32_t) * (size_t)len);
        model_forward(&m, 0, 1, len, 0.0f);
        m.k->convert(be, last32, tensor_view(a->logits, (int64_t)(len - 1) * m.Vl, 1, m.Vl));
        backend_copy_d2h(be, logits, last32.data, sizeof(float) * (size_t)m.Vl);
        double u = rng_uniform(rng_key3((uint64_t)seed, STREAM_SAMPLE, (uint64_t)i));
        int tok = pick(logits, mc.vocab_size, temperature, top_k, u, cands);
        ctx[n++] = tok;
        size_t nb = tok_decode_one(tok, TOK_EOT_TEXT, text);
        fwrite(text, 1, nb, stdout);
        fflush(stdout);
    }
    printf("\n");
    tr_free(logits);
    backend_free_mem(be, last32.data);
    tr_free(cands);
    tr_free(ctx);
    model_free(&m);
    backend_free(be);
    grid_free(&g);
    return TR_EXIT_OK;
}
