/* device_info_cuda.c — the CUDA backend's description of its GPU (device_info.h). */
#include <stdio.h>
#include <string.h>

#include "cuda_ctx.h"
#include "device_info.h"

int cuda_device_describe(struct backend *b, struct cuda_device_info *info, char *err,
                         size_t err_len)
{
    memset(info, 0, sizeof *info);
    if (!b || backend_device(b) != KDEV_CUDA || !b->dev) {
        snprintf(err, err_len, "cuda_device_describe: the backend is not a CUDA one\n"
                 "HINT: open it with backend_init(KDEV_CUDA, ...)");
        return -1;
    }
    const struct cuda_ctx *c = cuda_ctx_of(b);
    struct cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, c->device);
    if (e != cudaSuccess) {
        snprintf(err, err_len, "cannot describe CUDA device %d: cudaGetDeviceProperties: %s\n"
                 "HINT: check the GPU with nvidia-smi", c->device, cudaGetErrorString(e));
        cudaGetLastError();  /* leave no error behind for a later check to find */
        return -1;
    }
    /* prop.name is a fixed 256-byte array the driver terminates; copy it bounded anyway */
    snprintf(info->name, sizeof info->name, "%.*s", (int)sizeof prop.name, prop.name);
    info->device = c->device;
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->n_sm = prop.multiProcessorCount;
    info->mem_bytes = (double)prop.totalGlobalMem;
    return 0;
}
