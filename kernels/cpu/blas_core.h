/* blas_core.h — choosing OpenBLAS' kernel set (OPENBLAS_CORETYPE).
 *
 * OpenBLAS picks its kernels from the CPU model it recognises. A build older than the
 * CPU (Debian's 0.3.21 on recent Xeons) can fall back to "Prescott", SSE3 kernels about
 * 5x slower than the AVX-512 ones the CPU can run. main() asks which core to use and, if
 * the answer is not NULL, sets OPENBLAS_CORETYPE before BLAS initialises.
 */
#ifndef TRIDENT_KERNELS_CPU_BLAS_CORE_H
#define TRIDENT_KERNELS_CPU_BLAS_CORE_H

/* The OPENBLAS_CORETYPE to use instead of `corename` (as from openblas_get_corename):
 * "SkylakeX" when the CPU has AVX-512F but corename is not an AVX-512 core, "Haswell"
 * when it has AVX2 but corename is a pre-AVX2 core, NULL when corename is fine.
 * Pure function of its arguments (case-insensitive names; NULL corename = unknown). */
const char *blas_better_coretype(const char *corename, int has_avx512f, int has_avx2);

/* This CPU's AVX-512F and AVX2 support (0 or 1), from cpuid. */
void        blas_cpu_flags(int *has_avx512f, int *has_avx2);

#endif
