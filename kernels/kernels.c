/* kernels.c — dtype names, and what the CPU backend reports about itself. */
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

const char *kernels_blas_corename(void) { return openblas_get_corename(); }

int kernels_threads(void) { return omp_get_max_threads(); }
