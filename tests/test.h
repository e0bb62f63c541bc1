/* test.h — the minimal test harness shared by every tests/test_<module>.c.
 *
 * A test is a plain function `static void test_what_it_proves(void)` that calls
 * CHECK(...) / CHECK_CLOSE(...). Register it with RUN(test_fn) from main() and end main
 * with `return test_summary();`, which prints "N passed, N failed, N skipped"
 * (tests/run.sh adds these lines up) and returns non-zero when anything failed.
 *
 * A test that cannot run here calls SKIP("reason", ...) and returns at once: it counts as
 * skipped, not passed, and RUN prints "skip test_name: reason" (unless a CHECK already
 * failed, which still counts as a failure).
 *
 * Under MPI, only rank 0 prints (set test_rank before RUN), but every rank counts, so
 * a failure on any rank must reach rank 0 before test_summary() (test_io.c reduces
 * test_n_fail with MPI_MAX).
 */
#ifndef TRIDENT_TEST_H
#define TRIDENT_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_n_pass, test_n_fail, test_n_skip, test_cur_failed, test_cur_skipped, test_rank;
static const char *test_cur_name;
static char test_cur_skip_reason[256];

/* SKIP(fmt, ...): this test cannot run here; say why and return from the test function */
#define SKIP(...)                                                                    \
    do {                                                                             \
        snprintf(test_cur_skip_reason, sizeof test_cur_skip_reason, __VA_ARGS__);    \
        test_cur_skipped = 1;                                                        \
        return;                                                                      \
    } while (0)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  [rank %d] %s:%d: %s: CHECK(%s) failed\n", test_rank,  \
                    __FILE__, __LINE__, test_cur_name, #cond);                       \
            test_cur_failed = 1;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  [rank %d] %s:%d: %s: ", test_rank, __FILE__, __LINE__, \
                    test_cur_name);                                                  \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            test_cur_failed = 1;                                                     \
        }                                                                            \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, rtol, atol)                                                \
    do {                                                                             \
        double ca_ = (double)(a), cb_ = (double)(b);                                 \
        if (!(fabs(ca_ - cb_) <= (atol) + (rtol) * fabs(cb_))) {                     \
            fprintf(stderr, "  [rank %d] %s:%d: %s: %s = %.9g, expected %s = %.9g\n", \
                    test_rank, __FILE__, __LINE__, test_cur_name, #a, ca_, #b, cb_); \
            test_cur_failed = 1;                                                     \
        }                                                                            \
    } while (0)

#define RUN(fn)                                                                      \
    do {                                                                             \
        test_cur_name = #fn;                                                         \
        test_cur_failed = 0;                                                         \
        test_cur_skipped = 0;                                                        \
        fn();                                                                        \
        if (test_cur_failed) test_n_fail++;                                          \
        else if (test_cur_skipped) test_n_skip++;                                    \
        else test_n_pass++;                                                          \
        if (test_rank == 0) {                                                        \
            if (!test_cur_failed && test_cur_skipped)                                \
                printf("skip %s: %s\n", #fn, test_cur_skip_reason);                  \
            else                                                                     \
                printf("%s %s\n", test_cur_failed ? "FAIL" : "ok  ", #fn);           \
            fflush(stdout);                                                          \
        }                                                                            \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", test_n_pass, test_n_fail, test_n_skip);
    return test_n_fail ? 1 : 0;
}

#endif
