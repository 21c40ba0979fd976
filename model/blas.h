/*
 * OpenBLAS set-up for a rank: how many threads it uses, and which kernels.
 *
 * Debian's OpenBLAS (0.3.21) does not recognise recent AMD cores (Zen 4/5)
 * and falls back to its AVX2 "Haswell" kernels, about half the speed of its
 * AVX-512 "SkylakeX" kernels on the same machine. OpenBLAS picks its kernels
 * in a load-time constructor from OPENBLAS_CORETYPE, so the only way to
 * change them is to set that variable and start the program again, before
 * MPI is initialised. blas_prefer_avx512 does that: on a CPU with AVX-512
 * whose OpenBLAS kernels are AVX2-only ("Haswell", "Zen") — detected, or
 * pinned by an OPENBLAS_CORETYPE in the environment — it restarts the
 * program letting OpenBLAS detect again, and if that still gives AVX2 kernels,
 * with OPENBLAS_CORETYPE=SkylakeX. CU_BLAS_NO_REEXEC=1 keeps whatever was
 * chosen. blas_reexec_note() says what happened, for the job's log.
 */
#ifndef CU_MODEL_BLAS_H
#define CU_MODEL_BLAS_H

#include <stddef.h>

/* If this CPU has AVX-512 (F, BW, DQ, VL) but OpenBLAS chose AVX2 kernels,
 * re-executes the program with OPENBLAS_CORETYPE=SkylakeX. Returns only when
 * no re-exec was needed or it failed. Call first thing in main. */
void blas_prefer_avx512(char **argv);

/* Writes a one-line note to buf and returns 1 if blas_prefer_avx512 changed
 * the kernels; returns 0 otherwise. */
int blas_reexec_note(char *buf, size_t len);

/* Threads OpenBLAS, oneDNN and the model's OpenMP loops may use in this
 * process. */
void blas_set_threads(int n);

/* The kernel family OpenBLAS is using, e.g. "SkylakeX". */
const char *blas_core_name(void);

#endif
