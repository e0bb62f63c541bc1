/* kernels.c — dtype names, and what the CPU backend reports about itself. */
#include <stdio.h>

#include <cblas.h>
#include <omp.h>

#include "kernels.h"
#include "cpu/cpu.h"

const char *kdtype_name(enum kdtype dt)
{
    switch (dt) {
    case KDT_F32: return "fp32";
    case KDT_BF16: return "bf16";
    case KDT_F16: return "fp16";
    case KDT_I32: return "int32";
    default: return "?";
    }
}

int kernels_native_matmul(enum kdtype dt, const char **impl)
{
    static char text[224];
    int native = dt == KDT_BF16 && cpu_gemm_bf16_ready();
    if (native) snprintf(text, sizeof text, "bf16 GEMM: %s", cpu_gemm_bf16_impl());
    else if (dt == KDT_F32) snprintf(text, sizeof text, "OpenBLAS sgemm (%s)",
                                     openblas_get_corename());
    else snprintf(text, sizeof text, "widened to fp32 for OpenBLAS sgemm (%s)%s%s",
                  openblas_get_corename(), dt == KDT_BF16 ? "; bf16 GEMM: " : "",
                  dt == KDT_BF16 ? cpu_gemm_bf16_impl() : "");
    if (impl) *impl = text;
    return native;
}

const char *kernels_blas_corename(void) { return openblas_get_corename(); }

int kernels_threads(void) { return omp_get_max_threads(); }
