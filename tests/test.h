/* test.h — the minimal test harness shared by every tests/test_<module>.c.
 *
 * A test is a plain function `static void test_what_it_proves(void)` that calls
 * CHECK(...) / CHECK_CLOSE(...). Register it with RUN(test_fn) from main() and end main
 * with `return test_summary();`, which prints "N passed, N failed" (tests/run.sh adds
 * these lines up) and returns non-zero when anything failed.
 *
 * Under MPI, only rank 0 prints (set test_rank before RUN), but every rank counts, so
 * a failure on any rank is reported through test_summary_mpi().
 */
#ifndef TRIDENT_TEST_H
#define TRIDENT_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_n_pass, test_n_fail, test_cur_failed, test_rank;
static const char *test_cur_name;

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
        fn();                                                                        \
        if (test_cur_failed) test_n_fail++; else test_n_pass++;                      \
        if (test_rank == 0) {                                                        \
            printf("%s %s\n", test_cur_failed ? "FAIL" : "ok  ", #fn);               \
            fflush(stdout);                                                          \
        }                                                                            \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_n_pass, test_n_fail);
    return test_n_fail ? 1 : 0;
}

#endif
