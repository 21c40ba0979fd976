/*
 * A minimal test harness: CHECK records a failure with file and line and
 * carries on, so one run shows every broken assertion; test_main runs the
 * registered cases and ends with a "N passed, N failed" line.
 */
#ifndef CU_TESTS_HARNESS_H
#define CU_TESTS_HARNESS_H

#include <math.h>
#include <stdio.h>

extern int cu_test_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            cu_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            cu_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

/* |a - b| <= tol * max(|a|, |b|, floor) */
#define CHECK_REL(a, b, tol, floor)                                                                \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        double s_ = fmax(fmax(fabs(a_), fabs(b_)), (floor));                                       \
        if (!(fabs(a_ - b_) <= (tol)*s_)) {                                                        \
            fprintf(stderr, "%s:%d: CHECK_REL failed: %s=%.9g vs %s=%.9g (rel %.3g > %g)\n",       \
                    __FILE__, __LINE__, #a, a_, #b, b_, fabs(a_ - b_) / s_, (double)(tol));        \
            cu_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} cu_test_case_t;

/* Runs each case, prints its name and outcome, returns the exit code. */
int cu_test_run(const cu_test_case_t *cases, int n);

#define TEST_MAIN(...)                                                                             \
    int main(void) {                                                                               \
        static const cu_test_case_t cases_[] = {__VA_ARGS__};                                      \
        return cu_test_run(cases_, (int)(sizeof cases_ / sizeof cases_[0]));                       \
    }
#define TEST(fn)                                                                                   \
    { #fn, fn }

#endif
