/* test_backend.c — the backend context: memory round trips, alignment, exact memory
 * statistics, event timing, and a clear refusal of devices this build lacks. */
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "test.h"

static struct backend *cpu(void)
{
    char err[256];
    struct backend *b = backend_init(KDEV_CPU, 0, err, sizeof err);
    CHECK_MSG(b != NULL, "backend_init(cpu): %s", err);
    return b;
}

static void test_cpu_backend_names_itself_and_gives_the_f32_kernels(void)
{
    struct backend *b = cpu();
    if (!b) return;
    CHECK(strcmp(backend_name(b), "cpu") == 0);
    CHECK(backend_device(b) == KDEV_CPU);
    CHECK(backend_kernels(b, KDT_F32) == kernels_get(KDEV_CPU, KDT_F32));
    CHECK(backend_kernels(b, KDT_BF16) == NULL);
    backend_free(b);
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
    RUN(test_cpu_backend_names_itself_and_gives_the_f32_kernels);
    RUN(test_memset_and_copies_round_trip);
    RUN(test_allocations_are_64_byte_aligned);
    RUN(test_memory_stats_count_current_and_peak_bytes_exactly);
    RUN(test_events_time_monotonically);
    RUN(test_cuda_is_refused_with_the_reason_when_not_built_in);
    RUN(test_unknown_device_is_refused);
    return test_summary();
}
