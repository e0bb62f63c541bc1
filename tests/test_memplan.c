/* test_memplan.c — the memory plan counts what the model allocates, scales with the
 * layout as the shapes say, and reads sizes and limits. (Predicted vs measured memory of
 * real runs: tests/test_memplan.sh.) */
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "grid.h"
#include "memplan.h"
#include "model.h"
#include "test.h"

/* one CPU backend for the whole test program (it holds the models' buffers) */
static struct backend *cpu_backend(void) {
    static struct backend *be;
    if (!be) be = backend_init(KDEV_CPU, 0, NULL, 0);
    return be;
}

static struct config small_config(void) {
    struct config cfg;
    config_defaults(&cfg);
    cfg.n_layer = 4; cfg.n_head = 4; cfg.n_embd = 128; cfg.seq_len = 64; cfg.block_size = 64;
    cfg.micro_batch = 2; cfg.grad_accum = 4;
    return cfg;
}

/* A grid cell without communicators: the plan reads only sizes and coordinates. */
static struct grid cell(int dp, int tp, int pp, int dp_rank, int tp_rank, int pp_rank) {
    struct grid g;
    memset(&g, 0, sizeof g);
    g.dp = dp; g.tp = tp; g.pp = pp;
    g.dp_rank = dp_rank; g.tp_rank = tp_rank; g.pp_rank = pp_rank;
    g.world_size = dp * tp * pp;
    g.world_rank = tp_rank + tp * (dp_rank + dp * pp_rank);
    g.ranks_per_node = g.world_size;
    return g;
}

static void test_plan_counts_what_model_init_allocates(void) {
    struct config cfg = small_config();
    struct grid g = cell(1, 1, 1, 0, 0, 0);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    struct model_mem mm;
    model_mem_plan(&cfg, &g, &mm);
    CHECK(mm.n_local == m.n_local);
    CHECK(mm.params == (int64_t)sizeof(float) * m.n_local);
    CHECK(mm.first && mm.last);
    /* one slot holds at least the residual stream and the attention matrices */
    int64_t att = (int64_t)sizeof(float) * cfg.n_layer * cfg.micro_batch * cfg.n_head *
                  cfg.seq_len * cfg.seq_len;
    CHECK(mm.slot > att);
    model_free(&m);
}

static void test_optimizer_state_is_two_moments_and_gradients_one_copy(void) {
    struct config cfg = small_config();
    struct grid g = cell(1, 1, 1, 0, 0, 0);
    struct mem_breakdown b;
    memplan_rank(&cfg, &g, 1, &b);
    CHECK(b.bytes[MEM_GRADS] == b.bytes[MEM_WEIGHTS]);
    CHECK(b.bytes[MEM_OPTIM] == 2 * b.bytes[MEM_WEIGHTS]);
    CHECK(b.bytes[MEM_RUNTIME] > 0);
    CHECK(b.bytes[MEM_REDUCE] == 0); /* nothing to reduce without data parallelism */
    int64_t sum = 0;
    for (int i = 0; i < MEM_COUNT; i++) sum += b.bytes[i];
    CHECK(b.total == sum);
}

static void test_activations_scale_with_micro_batches_in_flight(void) {
    struct config cfg = small_config();
    struct grid g = cell(1, 1, 1, 0, 0, 0);
    struct mem_breakdown one, four;
    memplan_rank(&cfg, &g, 1, &one);
    memplan_rank(&cfg, &g, 4, &four);
    CHECK(four.bytes[MEM_ACTS] == 4 * one.bytes[MEM_ACTS]);
    CHECK(four.bytes[MEM_WEIGHTS] == one.bytes[MEM_WEIGHTS]);
}

static void test_tensor_and_pipeline_parallelism_split_the_state(void) {
    struct config cfg = small_config();
    struct grid g1 = cell(1, 1, 1, 0, 0, 0), tp2 = cell(1, 2, 1, 0, 1, 0);
    struct grid first = cell(1, 1, 2, 0, 0, 0), last = cell(1, 1, 2, 0, 0, 1);
    struct mem_breakdown a, t, s0, s1;
    memplan_rank(&cfg, &g1, 1, &a);
    memplan_rank(&cfg, &tp2, 1, &t);
    memplan_rank(&cfg, &first, 2, &s0);
    memplan_rank(&cfg, &last, 1, &s1);
    /* tp 2: every matrix is halved, the small vectors are replicated */
    CHECK_CLOSE(t.bytes[MEM_WEIGHTS], a.bytes[MEM_WEIGHTS] / 2.0, 0.05, 0);
    /* pp 2: the stages split the layers; both hold the tied embedding */
    CHECK(s0.bytes[MEM_WEIGHTS] < a.bytes[MEM_WEIGHTS]);
    CHECK(s1.bytes[MEM_WEIGHTS] < a.bytes[MEM_WEIGHTS]);
    CHECK(s0.bytes[MEM_WEIGHTS] + s1.bytes[MEM_WEIGHTS] > a.bytes[MEM_WEIGHTS]);
    /* only later stages send gradients back */
    CHECK(s0.bytes[MEM_PIPE] == 0 && s1.bytes[MEM_PIPE] > 0);
}

static void test_data_parallelism_adds_reduction_buffers(void) {
    struct config cfg = small_config();
    struct grid g = cell(2, 1, 1, 1, 0, 0);
    struct mem_breakdown b;
    memplan_rank(&cfg, &g, 1, &b);
    /* MPI's temporaries for the buckets in flight: 3/4 of the gradients */
    CHECK_CLOSE(b.bytes[MEM_REDUCE], 0.75 * b.bytes[MEM_GRADS], 0.01, 0);
}

static void test_sizes_parse_with_binary_units(void) {
    CHECK(memplan_parse_size("16G") == 16LL << 30);
    CHECK(memplan_parse_size("512M") == 512LL << 20);
    CHECK(memplan_parse_size("512MiB") == 512LL << 20);
    CHECK(memplan_parse_size("1.5g") == 3LL << 29);
    CHECK(memplan_parse_size("800K") == 800LL << 10);
    CHECK(memplan_parse_size("12345") == 12345);
    CHECK(memplan_parse_size("") == -1);
    CHECK(memplan_parse_size("16X") == -1);
    CHECK(memplan_parse_size("lots") == -1);
    CHECK(memplan_parse_size("-1G") == -1);
}

static void test_limit_from_key_or_machine(void) {
    char src[64];
    CHECK(memplan_limit("off", 0, src, sizeof src) == 0);
    CHECK(memplan_limit("2G", 0, src, sizeof src) == 2LL << 30);
    CHECK(strstr(src, "mem_limit") != NULL);
    int64_t a = memplan_limit("auto", 0, src, sizeof src);
    CHECK(a > 0);
    CHECK(strcmp(src, "cgroup limit") == 0 || strcmp(src, "MemAvailable") == 0);
    /* memory the ranks already hold counts as available to them */
    if (strcmp(src, "MemAvailable") == 0)
        CHECK_CLOSE(memplan_limit("auto", 1LL << 30, src, sizeof src), a + (1LL << 30), 0.01, 0);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    RUN(test_plan_counts_what_model_init_allocates);
    RUN(test_optimizer_state_is_two_moments_and_gradients_one_copy);
    RUN(test_activations_scale_with_micro_batches_in_flight);
    RUN(test_tensor_and_pipeline_parallelism_split_the_state);
    RUN(test_data_parallelism_adds_reduction_buffers);
    RUN(test_sizes_parse_with_binary_units);
    RUN(test_limit_from_key_or_machine);
    int rc = test_summary();
    MPI_Finalize();
    return rc;
}
