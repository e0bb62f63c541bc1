/* kernels.c — backend selection, and what the CPU backend reports about itself. */
#include <cblas.h>
#include <omp.h>

#include "kernels.h"
#include "cpu/cpu.h"

const struct kernels *kernels_get(enum kdevice dev, enum kdtype dt)
{
    if (dev == KDEV_CPU && dt == KDT_F32) return &cpu_kernels_f32;
    return NULL;  /* CUDA and 16-bit tables are not built in yet */
}

const char *kernels_blas_corename(void) { return openblas_get_corename(); }

int kernels_threads(void) { return omp_get_max_threads(); }
