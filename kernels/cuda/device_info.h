/* device_info.h — what the CUDA backend can tell about its GPU, for benchmarks and logs:
 * the name the driver reports (which tests/bench_train.c looks up in
 * a hardware file under inputs/hardware/ for the peak FLOP/s), compute capability, SM count and memory.
 * Defined in device_info_cuda.c (the CUDA build only).
 */
#ifndef TRIDENT_CUDA_DEVICE_INFO_H
#define TRIDENT_CUDA_DEVICE_INFO_H

#include <stddef.h>

struct backend;

struct cuda_device_info {
    char   name[256];      /* cudaDeviceProp.name, e.g. "NVIDIA H100 80GB HBM3" */
    int    device;         /* the CUDA device index the backend runs on */
    int    cc_major, cc_minor;
    int    n_sm;           /* streaming multiprocessors */
    double mem_bytes;      /* global memory */
};

/* Fill info for the GPU of backend b (a CUDA backend from backend_init(KDEV_CUDA, ...)).
 * 0 on success; -1 with the reason in err (and a "HINT: ..." line) when b is not a CUDA
 * backend or the driver cannot describe the device. */
int cuda_device_describe(struct backend *b, struct cuda_device_info *info, char *err,
                         size_t err_len);

#endif
