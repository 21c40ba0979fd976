/*
 * OpenBLAS kernel choice and threads (see blas.h for why a re-exec).
 */
#include "model/blas.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS extensions, declared here because cblas.h does not in every build. */
char *openblas_get_corename(void);
void openblas_set_num_threads(int n);

void blas_prefer_avx512(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("CU_BLAS_NO_REEXEC")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
        return;
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "Haswell") != 0 && strcasecmp(core, "Zen") != 0)) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels we have */
    unsetenv("OPENBLAS_CORETYPE");
}

void blas_set_threads(int n) {
    openblas_set_num_threads(n > 0 ? n : 1);
}

const char *blas_core_name(void) {
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}
