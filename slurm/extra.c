/*
 * Which sbatch options a slurm.extra entry sets, read the way sbatch reads
 * an #SBATCH line: the line split into words (quotes removed), long
 * options by any prefix getopt_long would accept ("--out=", "--chd"),
 * "--name value" with a space, and bundled short options ("-vo/x" is -v
 * and -o /x). The check errs on the refusing side: a prefix shared by
 * several options (which sbatch rejects as ambiguous) counts as each of
 * them, and every word is looked at, even one that could be an argument.
 */
#include <stdio.h>
#include <string.h>

#include "slurm/slurm.h"

/* The options that place the job's files or change its directory. */
static const char *const MOVING_LONG[] = {"output", "error", "input", "chdir"};
static const char MOVING_SHORT[] = "oeiD";
/* sbatch's short options that take an argument (-k takes an optional,
 * attached one: the rest of the word). */
static const char SHORT_WITH_ARG[] = "aAbBcCdDeFGiJkLmMnNopqStwx";

/* Next word of *s into out (quotes removed); 0 when none is left. */
static int next_word(const char **s, char *out, size_t cap) {
    const char *p = *s;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) return 0;
    size_t n = 0;
    char quote = 0;
    for (; *p && (quote || (*p != ' ' && *p != '\t')); p++) {
        if (!quote && (*p == '"' || *p == '\'')) {
            quote = *p;
        } else if (quote && *p == quote) {
            quote = 0;
        } else if (n + 1 < cap) {
            out[n++] = *p;
        }
    }
    out[n] = 0;
    *s = p;
    return 1;
}

/* The moving option a long option name (before any '=') may stand for. */
static const char *long_moves(const char *name, size_t len) {
    if (len == 0) return NULL;
    for (size_t k = 0; k < sizeof MOVING_LONG / sizeof *MOVING_LONG; k++)
        if (len <= strlen(MOVING_LONG[k]) && !strncmp(name, MOVING_LONG[k], len))
            return MOVING_LONG[k];
    return NULL;
}

/* The moving option of a bundle of short options ("vo/x"), or 0. */
static char short_moves(const char *bundle) {
    for (const char *c = bundle; *c; c++) {
        if (strchr(MOVING_SHORT, *c)) return *c;
        if (strchr(SHORT_WITH_ARG, *c)) return 0; /* the rest is its argument */
    }
    return 0;
}

int slurm_extra_moves_files(const char *entry, char *opt, size_t cap) {
    char w[1024];
    const char *s = entry;
    while (next_word(&s, w, sizeof w)) {
        if (w[0] != '-' || !w[1]) continue;
        if (w[1] == '-') {
            const char *m = long_moves(w + 2, strcspn(w + 2, "="));
            if (m) {
                snprintf(opt, cap, "--%s", m);
                return 1;
            }
            continue;
        }
        char c = short_moves(w + 1);
        if (c) {
            snprintf(opt, cap, "-%c", c);
            return 1;
        }
    }
    return 0;
}
