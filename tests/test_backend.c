/* test_backend.c — the backend context: memory round trips, alignment, exact memory
 * statistics (workspaces included), event timing, the one kernel table, and a clear
 * refusal of devices this build lacks. */
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "backend_impl.h"  /* backend_workspace: private to kernels/, tested here */
#include "test.h"

static struct backend *cpu(void)
{
    char err[256];
    struct backend *b = backend_init(KDEV_CPU, 0, err, sizeof err);
    CHECK_MSG(b != NULL, "backend_init(cpu): %s", err);
    return b;
}

static void test_cpu_backend_names_itself_and_gives_the_one_kernel_table(void)
{
    struct backend *b = cpu(), *b2 = cpu();
    if (!b || !b2) { backend_free(b); backend_free(b2); return; }
    CHECK(strcmp(backend_name(b), "cpu") == 0);
    CHECK(backend_device(b) == KDEV_CPU);
    const struct kernels *k = backend_kernels(b);
    CHECK(k != NULL && k->name != NULL && strcmp(k->name, "cpu") == 0);
    /* one table for every dtype and every CPU backend */
    CHECK(backend_kernels(b2) == k);
    backend_free(b);
    backend_free(b2);
}

static void test_memset_and_copies_round_trip(void)
{
    struct backend *b = cpu();
    if (!b) return;
    enum { N = 1000 };
    float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i * 0.5f - 7.0f;
    float *d1 = backend_alloc(b, sizeof host), *d2 = backend_alloc(b, sizeof host);
    backend_memset(b, d1, 0, sizeof host);
    backend_copy_d2h(b, back, d1, sizeof back);
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= back[i] == 0.0f;
    CHECK(zero);
    backend_copy_h2d(b, d1, host, sizeof host);
    backend_copy_d2d(b, d2, d1, sizeof host);
    memset(back, 0xff, sizeof back);
    backend_copy_d2h(b, back, d2, sizeof back);
    CHECK(memcmp(back, host, sizeof host) == 0);
    /* memset writes bytes, as memset does, and only the bytes asked for */
    backend_memset(b, d2, 0xab, 3);
    backend_copy_d2h(b, back, d2, sizeof back);
    const unsigned char *c = (const unsigned char *)back;
    CHECK(c[0] == 0xab && c[1] == 0xab && c[2] == 0xab);
    CHECK(memcmp(c + 3, (const unsigned char *)host + 3, sizeof host - 3) == 0);
    backend_free_mem(b, d1);
    backend_free_mem(b, d2);
    backend_free(b);
}

static void test_allocations_are_64_byte_aligned(void)
{
    struct backend *b = cpu();
    if (!b) return;
    size_t sizes[] = {0, 1, 3, 63, 64, 65, 4096, 1000003};
    void *p[8];
    int aligned = 1;
    for (int i = 0; i < 8; i++) {
        p[i] = backend_alloc(b, sizes[i]);
        aligned &= ((uintptr_t)p[i] % 64) == 0;
    }
    CHECK(aligned);
    for (int i = 0; i < 8; i++) backend_free_mem(b, p[i]);
    backend_free(b);
}

static void test_memory_stats_count_current_and_peak_bytes_exactly(void)
{
    struct backend *b = cpu();
    if (!b) return;
    struct backend_mem s;
    backend_mem_stats(b, &s);
    CHECK(s.current == 0 && s.peak == 0 && s.n_allocs == 0);
    void *a = backend_alloc(b, 100);      /* counted as 128 (whole 64-byte blocks) */
    void *c = backend_alloc(b, 64);       /* 64 */
    void *z = backend_alloc(b, 0);        /* 64: one block */
    backend_mem_stats(b, &s);
    CHECK(s.current == 256 && s.peak == 256 && s.n_allocs == 3);
    backend_free_mem(b, a);
    backend_mem_stats(b, &s);
    CHECK(s.current == 128 && s.peak == 256 && s.n_allocs == 2);
    void *d = backend_alloc(b, 1000);     /* 1024 */
    backend_mem_stats(b, &s);
    CHECK(s.current == 1152 && s.peak == 1152 && s.n_allocs == 3);
    backend_free_mem(b, d);
    backend_free_mem(b, z);
    backend_free_mem(b, c);
    backend_free_mem(b, NULL);            /* nothing, as free(NULL) */
    backend_mem_stats(b, &s);
    CHECK(s.current == 0 && s.peak == 1152 && s.n_allocs == 0);
    backend_free(b);
}

static void test_workspace_is_counted_and_grows_only_when_asked_for_more(void)
{
    struct backend *b = cpu();
    if (!b) return;
    struct backend_mem s;
    void *p = backend_workspace(b, 0, 1000);       /* counted as 1024 */
    backend_mem_stats(b, &s);
    CHECK(p != NULL && (uintptr_t)p % 64 == 0);
    CHECK(s.current == 1024 && s.peak == 1024 && s.n_allocs == 1);
    CHECK(backend_workspace(b, 0, 1000) == p);     /* the same size again: kept */
    CHECK(backend_workspace(b, 0, 10) == p);       /* less: kept, never shrunk */
    backend_mem_stats(b, &s);
    CHECK(s.current == 1024 && s.peak == 1024 && s.n_allocs == 1);
    void *q = backend_workspace(b, 0, 5000);       /* more: replaced, 5056 counted */
    backend_mem_stats(b, &s);
    CHECK(q != NULL && (uintptr_t)q % 64 == 0);
    CHECK(s.current == 5056 && s.n_allocs == 1);   /* the old buffer went back */
    CHECK(s.peak >= 5056 && s.peak <= 1024 + 5056);
    memset(q, 0x5a, 5000);                         /* all of it is usable */
    void *o = backend_workspace(b, 1, 64);         /* another slot: its own buffer */
    backend_mem_stats(b, &s);
    CHECK(o != NULL && o != q && s.current == 5056 + 64 && s.n_allocs == 2);
    CHECK(backend_workspace(b, 0, 5000) == q);
    /* workspaces and ordinary allocations are counted together */
    void *a = backend_alloc(b, 100);
    backend_mem_stats(b, &s);
    CHECK(s.current == 5056 + 64 + 128 && s.n_allocs == 3);
    backend_free_mem(b, a);
    backend_free(b);  /* the workspaces go with the context */
}

/* The CPU kernels use the workspace for 16-bit tensors only (widened to fp32 there), and
 * a call that fits in what the workspaces hold allocates nothing. */
static void test_16bit_kernels_use_the_workspace_and_fp32_ones_do_not(void)
{
    struct backend *b = cpu();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    enum { M = 8, K = 16, N = 24 };
    float *inp = backend_alloc(b, M * K * 4), *w = backend_alloc(b, N * K * 4),
          *out = backend_alloc(b, M * N * 4);
    uint16_t *inp16 = backend_alloc(b, M * K * 2), *w16 = backend_alloc(b, N * K * 2),
             *out16 = backend_alloc(b, M * N * 2);
    backend_memset(b, inp, 0, M * K * 4);
    backend_memset(b, w, 0, N * K * 4);
    backend_memset(b, inp16, 0, M * K * 2);
    backend_memset(b, w16, 0, N * K * 2);
    struct backend_mem s0, s1, s2, s3;
    backend_mem_stats(b, &s0);
    k->matmul_fwd(b, tensor_2d(out, KDT_F32, M, N), tensor_2d(inp, KDT_F32, M, K),
                  tensor_2d(w, KDT_F32, N, K), TENSOR_NONE);
    backend_mem_stats(b, &s1);
    CHECK(s1.current == s0.current && s1.n_allocs == s0.n_allocs);  /* fp32: in place */
    /* fp16 always widens (no fp16 GEMM on the CPU backend) */
    k->matmul_fwd(b, tensor_2d(out16, KDT_F16, M, N), tensor_2d(inp16, KDT_F16, M, K),
                  tensor_2d(w16, KDT_F16, N, K), TENSOR_NONE);
    backend_mem_stats(b, &s2);
    /* out, inp, w widened: one fp32 buffer each, in whole 64-byte blocks */
    CHECK(s2.current == s0.current + (M * N + M * K + N * K) * 4 && s2.n_allocs == s0.n_allocs + 3);
    CHECK(s2.peak >= s2.current);
    /* bf16 widens the same way, unless the backend multiplies bf16 natively (oneDNN on an
     * AVX512_BF16 CPU), which reads the operands in place */
    k->matmul_fwd(b, tensor_2d(out16, KDT_BF16, M, N), tensor_2d(inp16, KDT_BF16, M, K),
                  tensor_2d(w16, KDT_BF16, N, K), TENSOR_NONE);
    k->matmul_fwd(b, tensor_2d(out16, KDT_F16, M / 2, N), tensor_2d(inp16, KDT_F16, M / 2, K),
                  tensor_2d(w16, KDT_F16, N, K), TENSOR_NONE);
    backend_mem_stats(b, &s3);
    CHECK(s3.current == s2.current && s3.n_allocs == s2.n_allocs);  /* reused, not grown */
    printf("       bf16 matmul: %s\n", kernels_native_matmul(KDT_BF16, NULL)
                                          ? "native (no workspace)" : "widened");
    backend_free(b);
}

static void test_events_time_monotonically(void)
{
    struct backend *b = cpu();
    if (!b) return;
    struct backend_event *e0 = backend_event_new(b), *e1 = backend_event_new(b),
                         *e2 = backend_event_new(b);
    backend_event_record(b, e0);
    volatile double x = 0;
    for (int i = 0; i < 2000000; i++) x += i * 1e-9;
    backend_event_record(b, e1);
    backend_synchronize(b);
    backend_event_record(b, e2);
    double t01 = backend_event_elapsed(b, e0, e1), t02 = backend_event_elapsed(b, e0, e2);
    CHECK(t01 > 0.0);        /* two million additions take some time */
    CHECK(t02 >= t01);
    CHECK(t02 < 60.0);       /* seconds, not nanoseconds */
    CHECK(backend_event_elapsed(b, e1, e1) == 0.0);
    backend_event_free(b, e0);
    backend_event_free(b, e1);
    backend_event_free(b, e2);
    backend_free(b);
}

static void test_cuda_is_refused_with_the_reason_when_not_built_in(void)
{
    char err[512];
    struct backend *b = backend_init(KDEV_CUDA, 0, err, sizeof err);
    CHECK(b == NULL);
    CHECK(strstr(err, "built without the CUDA backend") != NULL);
    CHECK(strstr(err, "HINT: ") != NULL && strstr(err, "set device = cpu") != NULL);
    backend_free(b);  /* NULL: nothing */
}

static void test_unknown_device_is_refused(void)
{
    char err[512];
    CHECK(backend_init((enum kdevice)7, 0, err, sizeof err) == NULL);
    CHECK(strstr(err, "unknown device") != NULL);
    CHECK(backend_parse("cpu") == KDEV_CPU);
    CHECK(backend_parse("cuda") == KDEV_CUDA);
    CHECK(backend_parse("tpu") == -1);
}

int main(void)
{
    RUN(test_cpu_backend_names_itself_and_gives_the_one_kernel_table);
    RUN(test_memset_and_copies_round_trip);
    RUN(test_allocations_are_64_byte_aligned);
    RUN(test_memory_stats_count_current_and_peak_bytes_exactly);
    RUN(test_workspace_is_counted_and_grows_only_when_asked_for_more);
    RUN(test_16bit_kernels_use_the_workspace_and_fp32_ones_do_not);
    RUN(test_events_time_monotonically);
    RUN(test_cuda_is_refused_with_the_reason_when_not_built_in);
    RUN(test_unknown_device_is_refused);
    return test_summary();
}
