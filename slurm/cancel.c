/*
 * Cancelling or signalling a job with scancel. A signal goes to the batch
 * shell (--batch), which the generated script makes forward it to the
 * ranks; that way it reaches ranks started by srun or by mpirun alike.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "slurm/slurm.h"

int slurm_cancel(const char *id, const char *signal, cu_error_t *err) {
    return slurm_cancel_timeout(id, signal, 0, err);
}

int slurm_cancel_timeout(const char *id, const char *signal, double timeout_s, cu_error_t *err) {
    if (!slurm_id_valid(id)) return cu_error_set(err, CU_EINVAL, "'%s' is not a Slurm job id", id);
    char sig_opt[64];
    const char *argv[6];
    int n = 0;
    argv[n++] = "scancel";
    if (signal) {
        for (const char *c = signal; *c; c++)
            if (!isalnum((unsigned char)*c))
                return cu_error_set(err, CU_EINVAL, "'%s' is not a signal name", signal);
        if (cu_format(sig_opt, sizeof sig_opt, err, "--signal=%s", signal) != CU_OK)
            return err->code;
        argv[n++] = sig_opt;
        argv[n++] = "--batch";
    }
    argv[n++] = id;
    argv[n] = NULL;
    char *etext = NULL;
    int status = 0;
    int rc = slurm_run_timeout(argv, timeout_s, NULL, &etext, &status, err);
    if (rc != CU_OK) return rc;
    /* scancel exits 0 but warns for a job that already ended */
    if (status != 0 || strstr(etext, "error")) {
        size_t n2 = strlen(etext);
        while (n2 && (etext[n2 - 1] == '\n' || etext[n2 - 1] == ' ')) etext[--n2] = '\0';
        rc =
            cu_error_set(err, CU_EIO, "scancel %s failed: %s", id, etext[0] ? etext : "no message");
    }
    free(etext);
    return rc;
}
