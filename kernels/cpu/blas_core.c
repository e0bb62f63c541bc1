/* blas_core.c — see blas_core.h. */
#include <stddef.h>
#include <strings.h>

#include "blas_core.h"

/* OpenBLAS core names (x86-64) whose kernels use AVX-512, and those that use AVX2. */
static const char *const blas_avx512_cores[] = { "SkylakeX", "Cooperlake", "SapphireRapids" };
static const char *const blas_avx2_cores[]   = { "Haswell", "Zen", "Excavator", "SkylakeX",
                                                 "Cooperlake", "SapphireRapids" };

static int blas_core_in(const char *name, const char *const *list, size_t n)
{
    if (!name) return 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(name, list[i]) == 0) return 1;
    return 0;
}

const char *blas_better_coretype(const char *corename, int has_avx512f, int has_avx2)
{
    size_t n512 = sizeof blas_avx512_cores / sizeof *blas_avx512_cores;
    size_t n2 = sizeof blas_avx2_cores / sizeof *blas_avx2_cores;
    if (has_avx512f && !blas_core_in(corename, blas_avx512_cores, n512)) return "SkylakeX";
    if (has_avx2 && !has_avx512f && !blas_core_in(corename, blas_avx2_cores, n2))
        return "Haswell";
    return NULL;
}

void blas_cpu_flags(int *has_avx512f, int *has_avx2)
{
    __builtin_cpu_init();
    *has_avx512f = __builtin_cpu_supports("avx512f") ? 1 : 0;
    *has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
}
