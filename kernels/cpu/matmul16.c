/* matmul16.c — bf16 GEMM on the CPU's AVX512_BF16 dot products, through oneDNN.
 *
 * Debian 12's OpenBLAS (0.3.21) is built without BUILD_BFLOAT16: its cblas.h declares
 * cblas_sbgemm but the library does not export it. oneDNN (Debian: libdnnl-dev, 2.x) has
 * a bf16 matmul that uses vdpbf16ps on CPUs with AVX512_BF16 (its "avx512_core_bf16"
 * ISA). The Makefile compiles this file with TR_HAVE_DNNL and links -ldnnl when the
 * oneDNN 2.x headers are installed; without them, cpu_gemm_bf16_ready() is 0 and the
 * callers keep the widen + sgemm path.
 *
 * A product is a oneDNN matmul primitive built once per shape (the JIT makes creation
 * cost milliseconds) and kept in a small cache; the arrays are handed to it at each
 * call. oneDNN sums in a fixed order for a given shape and thread count, so the same
 * inputs give the same bits from run to run (not the bits of widen + sgemm: about 0.01%
 * of bf16 results differ by one ulp, tests/bench_gemm16.c).
 *
 * Arithmetic: products of bf16 pairs are exact in fp32 and summed in fp32 (vdpbf16ps),
 * as in the widened path; a bf16 result is rounded to nearest even once, by oneDNN
 * (vcvtneps2bf16). Unlike convert.c, that instruction pair treats bf16 subnormal inputs
 * (below 1.2e-38) as zero and flushes subnormal results to zero: far below anything a
 * GEMM of activations and weights produces.
 *
 * Measured on a 2-core AMD EPYC (Zen 5), M = 1024 and GPT-2 124M's (K, N), one thread:
 * about 450 GFLOP/s against 220 for widen + AVX-512 sgemm (OpenBLAS "SkylakeX" /
 * "Cooperlake" kernels) and 115 with its AVX2 "Haswell" kernels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cpu.h"

#if defined(TR_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#if DNNL_VERSION_MAJOR != 2
#undef TR_HAVE_DNNL  /* oneDNN 3 changed the C API of descriptors: not supported yet */
#endif
#endif

#if defined(TR_HAVE_DNNL)

enum { GEMM16_CACHE = 64 };

struct gemm16_key {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc;
    int c_bf16, bias_kind, accumulate, nthr;  /* bias_kind: 0 none, 1 fp32, 2 bf16 */
};

struct gemm16_entry {
    struct gemm16_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, bias;
    char impl[48];  /* oneDNN's name of the implementation */
};

static struct {
    int state;  /* 0: not probed, 1: ready, -1: unavailable */
    char impl[160];
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    struct gemm16_entry cache[GEMM16_CACHE];
    int n_cached, next_evict;
    const char *last_impl;
} g16;

#define DNNL_OK(call) ((call) == dnnl_success)

static void entry_free(struct gemm16_entry *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
    if (e->bias) dnnl_memory_destroy(e->bias);
    memset(e, 0, sizeof *e);
}

/* a row-major [rows][cols] matrix, or the transpose of a stored [cols][rows] one */
static int md_2d(dnnl_memory_desc_t *md, int rows, int cols, int trans, int ld,
                 dnnl_data_type_t dt)
{
    dnnl_dims_t dims = { rows, cols };
    dnnl_dims_t strides = { trans ? 1 : ld, trans ? ld : 1 };
    return DNNL_OK(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides));
}

/* builds the primitive of `k` into e (e->key = k), 0 on success */
static int entry_build(struct gemm16_entry *e, const struct gemm16_key *k, char *impl,
                       size_t impl_len)
{
    memset(e, 0, sizeof *e);
    e->key = *k;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
    dnnl_data_type_t c_dt = k->c_bf16 ? dnnl_bf16 : dnnl_f32;
    if (!md_2d(&a_md, k->M, k->K, k->trans_a, k->lda, dnnl_bf16) ||
        !md_2d(&b_md, k->K, k->N, k->trans_b, k->ldb, dnnl_bf16) ||
        !md_2d(&c_md, k->M, k->N, 0, k->ldc, c_dt))
        return -1;
    if (k->bias_kind && !md_2d(&bias_md, 1, k->N, 0, k->N,
                               k->bias_kind == 2 ? dnnl_bf16 : dnnl_f32))
        return -1;
    dnnl_matmul_desc_t desc;
    if (!DNNL_OK(dnnl_matmul_desc_init(&desc, &a_md, &b_md, k->bias_kind ? &bias_md : NULL,
                                       &c_md)))
        return -1;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int ok = DNNL_OK(dnnl_primitive_attr_create(&attr));
    if (ok && k->accumulate) {  /* C = A B + 1.0 * C */
        ok = DNNL_OK(dnnl_post_ops_create(&po)) && DNNL_OK(dnnl_post_ops_append_sum(po, 1.0f)) &&
             DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    dnnl_primitive_desc_t pd = NULL;
    ok = ok && DNNL_OK(dnnl_primitive_desc_create(&pd, &desc, attr, g16.engine, NULL));
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return -1;
    const char *name = NULL;
    if (impl && DNNL_OK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name)) &&
        name)
        snprintf(impl, impl_len, "%s", name);
    ok = DNNL_OK(dnnl_primitive_create(&e->prim, pd));
    /* memory objects with no data yet: the arrays are set at each call */
    ok = ok && DNNL_OK(dnnl_memory_create(&e->a, &a_md, g16.engine, DNNL_MEMORY_NONE)) &&
         DNNL_OK(dnnl_memory_create(&e->b, &b_md, g16.engine, DNNL_MEMORY_NONE)) &&
         DNNL_OK(dnnl_memory_create(&e->c, &c_md, g16.engine, DNNL_MEMORY_NONE)) &&
         (!k->bias_kind ||
          DNNL_OK(dnnl_memory_create(&e->bias, &bias_md, g16.engine, DNNL_MEMORY_NONE)));
    dnnl_primitive_desc_destroy(pd);
    if (!ok) { entry_free(e); return -1; }
    return 0;
}

static void gemm16_probe(void)
{
    g16.state = -1;
    const char *env = getenv("TRIDENT_BF16_GEMM");
    if (env && strcmp(env, "0") == 0) { snprintf(g16.impl, sizeof g16.impl, "off"); return; }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16")) {
        snprintf(g16.impl, sizeof g16.impl, "no avx512_bf16");
        return;
    }
    if (dnnl_get_effective_cpu_isa() < dnnl_cpu_isa_avx512_core_bf16) {
        snprintf(g16.impl, sizeof g16.impl, "oneDNN sees no avx512_core_bf16");
        return;
    }
    if (!DNNL_OK(dnnl_engine_create(&g16.engine, dnnl_cpu, 0)) ||
        !DNNL_OK(dnnl_stream_create(&g16.stream, g16.engine, dnnl_stream_default_flags))) {
        snprintf(g16.impl, sizeof g16.impl, "oneDNN engine failed");
        return;
    }
    /* the implementation oneDNN picks for a typical product: a JIT kernel on the bf16
     * ISA ("brg:avx512_core_bf16"), or else a reference loop not worth using */
    struct gemm16_key k = { 0, 1, 256, 256, 256, 256, 256, 256, 0, 0, 0, 1 };
    struct gemm16_entry e;
    char impl[128] = "";
    if (entry_build(&e, &k, impl, sizeof impl) != 0) {
        snprintf(g16.impl, sizeof g16.impl, "oneDNN has no bf16 matmul");
        return;
    }
    entry_free(&e);
    const dnnl_version_t *v = dnnl_version();
    snprintf(g16.impl, sizeof g16.impl, "oneDNN %d.%d.%d %s", v->major, v->minor, v->patch,
             impl);
    if (strstr(impl, "ref")) return;
    g16.state = 1;
}

int cpu_gemm_bf16_ready(void)
{
    if (!g16.state) gemm16_probe();
    return g16.state == 1;
}

const char *cpu_gemm_bf16_impl(void)
{
    cpu_gemm_bf16_ready();
    return g16.impl;
}

const char *cpu_gemm_bf16_last_impl(void) { return g16.last_impl ? g16.last_impl : ""; }

int cpu_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, const uint16_t *A, int lda,
                  const uint16_t *B, int ldb, const void *bias, int bias_bf16, int accumulate,
                  void *C, int c_bf16, int ldc)
{
    if (!cpu_gemm_bf16_ready()) return -1;
    if (M <= 0 || N <= 0) return 0;
    struct gemm16_key k;
    memset(&k, 0, sizeof k);
    k = (struct gemm16_key){ trans_a, trans_b, M, N, K, lda, ldb, ldc, c_bf16,
                             bias ? 1 + !!bias_bf16 : 0, !!accumulate, omp_get_max_threads() };
    struct gemm16_entry *e = NULL;
    for (int i = 0; i < g16.n_cached && !e; i++)
        if (memcmp(&g16.cache[i].key, &k, sizeof k) == 0) e = &g16.cache[i];
    if (!e) {
        if (g16.n_cached < GEMM16_CACHE) e = &g16.cache[g16.n_cached++];
        else {  /* full: replace entries in turn */
            e = &g16.cache[g16.next_evict];
            g16.next_evict = (g16.next_evict + 1) % GEMM16_CACHE;
            entry_free(e);
        }
        if (entry_build(e, &k, e->impl, sizeof e->impl) != 0) {  /* keep the slot, marked unusable */
            e->key = k;
            e->prim = NULL;
        }
    }
    if (!e->prim) return -1;
    g16.last_impl = e->impl;
    int ok = DNNL_OK(dnnl_memory_set_data_handle(e->a, (void *)A)) &&
             DNNL_OK(dnnl_memory_set_data_handle(e->b, (void *)B)) &&
             DNNL_OK(dnnl_memory_set_data_handle(e->c, C)) &&
             (!bias || DNNL_OK(dnnl_memory_set_data_handle(e->bias, (void *)bias)));
    if (!ok) return -1;
    dnnl_exec_arg_t args[4] = {
        { DNNL_ARG_SRC, e->a }, { DNNL_ARG_WEIGHTS, e->b }, { DNNL_ARG_DST, e->c },
        { DNNL_ARG_BIAS, e->bias } };
    if (!DNNL_OK(dnnl_primitive_execute(e->prim, g16.stream, bias ? 4 : 3, args)) ||
        !DNNL_OK(dnnl_stream_wait(g16.stream)))
        return -1;
    return 0;
}

#else /* no oneDNN */

int cpu_gemm_bf16_ready(void) { return 0; }
const char *cpu_gemm_bf16_impl(void) { return "not built (no oneDNN 2.x headers)"; }
const char *cpu_gemm_bf16_last_impl(void) { return ""; }
int cpu_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, const uint16_t *A, int lda,
                  const uint16_t *B, int ldb, const void *bias, int bias_bf16, int accumulate,
                  void *C, int c_bf16, int ldc)
{
    return -1;
}

#endif
