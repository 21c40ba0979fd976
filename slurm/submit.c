/*
 * Submitting a batch script: `sbatch --parsable --chdir=WORKDIR SCRIPT`,
 * whose only output on success is the job id (with ";cluster" on a
 * federation). On failure sbatch's own message is what the user needs, so
 * it becomes ours.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "slurm/slurm.h"

int slurm_parse_sbatch_output(const char *text, char *id, size_t cap, cu_error_t *err) {
    while (*text && isspace((unsigned char)*text)) text++;
    size_t n = 0;
    while (text[n] && (isdigit((unsigned char)text[n]) || text[n] == '_')) n++;
    const char *rest = text + n;
    if (n == 0 || (*rest && *rest != ';' && !isspace((unsigned char)*rest)))
        return cu_error_set(err, CU_EFORMAT, "sbatch printed '%.80s', not a job id", text);
    if (n >= cap) return cu_error_set(err, CU_EFORMAT, "job id too long");
    memcpy(id, text, n);
    id[n] = '\0';
    return CU_OK;
}

/* The last non-empty line of sbatch's stderr, trimmed. */
static void last_line(const char *text, char *out, size_t cap) {
    const char *end = text + strlen(text);
    while (end > text && isspace((unsigned char)end[-1])) end--;
    const char *start = end;
    while (start > text && start[-1] != '\n') start--;
    size_t n = (size_t)(end - start);
    if (n >= cap) n = cap - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

int slurm_submit(const char *script_path, const char *workdir, char *id, size_t cap,
                 cu_error_t *err) {
    return slurm_submit_timeout(script_path, workdir, 0, id, cap, err);
}

int slurm_submit_timeout(const char *script_path, const char *workdir, double timeout_s, char *id,
                         size_t cap, cu_error_t *err) {
    char chdir_opt[4200];
    if (cu_format(chdir_opt, sizeof chdir_opt, err, "--chdir=%s", workdir) != CU_OK)
        return err->code;
    const char *argv[] = {"sbatch", "--parsable", chdir_opt, script_path, NULL};
    char *out = NULL, *etext = NULL;
    int status = 0;
    int rc = slurm_run_timeout(argv, timeout_s, &out, &etext, &status, err);
    if (rc != CU_OK) return rc;
    if (status != 0) {
        char line[600];
        last_line(etext, line, sizeof line);
        rc = cu_error_set(err, CU_EIO, "sbatch failed (exit %d): %s", status,
                          line[0] ? line : "no message");
    } else {
        rc = slurm_parse_sbatch_output(out, id, cap, err);
    }
    free(out);
    free(etext);
    return rc;
}
