/* The test harness (see harness.h). */
#include "harness.h"

int cu_test_failures = 0;

int cu_test_run(const cu_test_case_t *cases, int n) {
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        int before = cu_test_failures;
        cases[i].fn();
        if (cu_test_failures == before) {
            passed++;
            printf("ok   %s\n", cases[i].name);
        } else {
            failed++;
            printf("FAIL %s\n", cases[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
