/*
 * OpenBLAS kernel choice and threads (see blas.h for why a re-exec).
 */
#include "model/blas.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS extensions, declared here because cblas.h does not in every build. */
char *openblas_get_corename(void);
void openblas_set_num_threads(int n);

static int is_avx2_core(const char *core) {
    return core && (strcasecmp(core, "Haswell") == 0 || strcasecmp(core, "Zen") == 0);
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

/* CU_BLAS_REEXEC counts restarts (1: detection retried, 2: SkylakeX forced)
 * so the program can never loop. */
void blas_prefer_avx512(char **argv) {
    if (getenv("CU_BLAS_NO_REEXEC") || !cpu_has_avx512()) return;
    if (!is_avx2_core(openblas_get_corename())) return;
    const char *stage = getenv("CU_BLAS_REEXEC");
    if (!stage) {
        const char *pinned = getenv("OPENBLAS_CORETYPE");
        setenv("CU_BLAS_PINNED", pinned ? pinned : "", 1);
        unsetenv("OPENBLAS_CORETYPE");
        setenv("CU_BLAS_REEXEC", "1", 1);
    } else if (strcmp(stage, "1") == 0) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        setenv("CU_BLAS_REEXEC", "2", 1);
    } else {
        return;
    }
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels we have */
}

int blas_reexec_note(char *buf, size_t len) {
    const char *pinned = getenv("CU_BLAS_PINNED");
    if (!getenv("CU_BLAS_REEXEC")) return 0;
    snprintf(buf, len,
             "OpenBLAS: AVX-512 kernels (%s) in place of AVX2%s%s%s; CU_BLAS_NO_REEXEC=1 keeps "
             "the environment's choice",
             openblas_get_corename(), pinned && *pinned ? " (OPENBLAS_CORETYPE=" : "",
             pinned && *pinned ? pinned : "", pinned && *pinned ? " was set)" : "");
    return 1;
}

void blas_set_threads(int n) {
    openblas_set_num_threads(n > 0 ? n : 1);
    /* oneDNN (OpenMP build) and the model's OpenMP loops follow this */
    omp_set_num_threads(n > 0 ? n : 1);
}

const char *blas_core_name(void) {
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}
