/* tensor.h — a typed handle on backend memory: pointer, element type, shape.
 *
 * Kernels take tensors, not bare pointers, so one kernel table serves every element type
 * (fp32, bf16, fp16; int32 for token ids) and checks the shapes it is handed. A tensor
 * never owns its memory: the buffers come from backend_alloc and go back with
 * backend_free_mem. Outside kernels/ a tensor is passed, sliced and sized, never read or
 * written through: tests/test_layout_rules.sh fails the build's tests if a file outside
 * kernels/ dereferences a tensor's data.
 *
 * Shapes are 2-D, [rows][cols], row-major and contiguous; a vector is [1][n]. A kernel
 * that needs more dimensions (attention's [B][T][...]) takes the extra sizes as ints.
 */
#ifndef TRIDENT_TENSOR_H
#define TRIDENT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum kdtype { KDT_F32 = 0, KDT_BF16 = 1, KDT_F16 = 2, KDT_I32 = 3, KDT_N = 4 };

struct tensor {
    void       *data;    /* backend memory; NULL: absent (an optional argument) */
    enum kdtype dt;
    int64_t     rows, cols;
};

#define TENSOR_NONE ((struct tensor){0})

static inline size_t kdtype_size(enum kdtype dt) {
    return dt == KDT_BF16 || dt == KDT_F16 ? 2 : 4;
}
static inline int kdtype_is_16bit(enum kdtype dt) { return dt == KDT_BF16 || dt == KDT_F16; }
const char *kdtype_name(enum kdtype dt);  /* "fp32", "bf16", "fp16", "int32" */

static inline struct tensor tensor_2d(void *data, enum kdtype dt, int64_t rows, int64_t cols) {
    struct tensor t = {data, dt, rows, cols};
    return t;
}
static inline struct tensor tensor_1d(void *data, enum kdtype dt, int64_t n) {
    return tensor_2d(data, dt, 1, n);
}
static inline int64_t tensor_numel(struct tensor t) { return t.rows * t.cols; }
static inline size_t  tensor_bytes(struct tensor t) {
    return (size_t)tensor_numel(t) * kdtype_size(t.dt);
}
static inline int tensor_present(struct tensor t) { return t.data != NULL; }

/* The contiguous [rows][cols] view that starts `offset` elements into t's buffer (the
 * address is computed, nothing is read). An absent t gives an absent view. */
static inline struct tensor tensor_view(struct tensor t, int64_t offset, int64_t rows,
                                        int64_t cols) {
    if (!t.data) return TENSOR_NONE;
    return tensor_2d((char *)t.data + (size_t)offset * kdtype_size(t.dt), t.dt, rows, cols);
}
/* The same elements with another shape (rows * cols == numel: the caller's promise). */
static inline struct tensor tensor_reshape(struct tensor t, int64_t rows, int64_t cols) {
    return tensor_2d(t.data, t.dt, rows, cols);
}

#endif
