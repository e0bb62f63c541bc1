/* gemm_map.c — the row-major products as column-major GEMM calls (gemm_map.h). */
#include "gemm_map.h"

struct gemm_call gemm_map(enum gemm_pass pass, int64_t M, int64_t K, int64_t N)
{
    struct gemm_call c;
    switch (pass) {
    case GEMM_DINP:
        c = (struct gemm_call){GEMM_W, GEMM_DOUT, 0, 0, K, M, N, K, N, K};
        break;
    case GEMM_DW:
        c = (struct gemm_call){GEMM_INP, GEMM_DOUT, 0, 1, K, N, M, K, N, K};
        break;
    case GEMM_FWD:
    default:
        c = (struct gemm_call){GEMM_W, GEMM_INP, 1, 0, N, M, K, K, K, N};
        break;
    }
    return c;
}
