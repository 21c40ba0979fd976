/*
 * codexctl completion: shell completion for codexctl and codex-train.
 * `bash` and `zsh` print the scripts (jobs/completion/, compiled in); the
 * scripts ask back for what they complete, so the lists come from the code
 * itself: `verbs` (the subcommand table), `keys` (the config schema: every
 * section.key codex-train and codexctl submit take as an override) and
 * `values KEY` (an enum's or a boolean's choices). Options are read from
 * each program's --help.
 */
#include <stdio.h>
#include <string.h>

#include "io/config.h"
#include "jobs/ctl.h"

extern const unsigned char ctl_completion_bash[], ctl_completion_zsh[];
extern const unsigned long ctl_completion_bash_len, ctl_completion_zsh_len;

static const char USAGE[] =
    "usage: codexctl completion bash|zsh\n"
    "       codexctl completion verbs|keys|values KEY\n"
    "\n"
    "Prints the shell completion script for codexctl and codex-train:\n"
    "  bash   source <(codexctl completion bash), or save it in /etc/bash_completion.d/\n"
    "  zsh    source <(codexctl completion zsh) after compinit, or save it as _codexctl\n"
    "         in a folder of $fpath\n"
    "The scripts call back for their word lists:\n"
    "  verbs       codexctl's verbs\n"
    "  keys        every config key (section.key), as overrides take them\n"
    "  values KEY  the choices of an enum or boolean key (exit 1 for other keys)\n";

static int print_values(const char *key) {
    const char *name, *values;
    for (int i = 0; (name = config_key_name(i, &values)) != NULL; i++) {
        if (strcmp(name, key)) continue;
        if (!values) return 1;
        for (const char *p = values; *p;) {
            size_t n = strcspn(p, "|");
            printf("%.*s\n", (int)n, p);
            p += n + (p[n] == '|');
        }
        return 0;
    }
    fprintf(stderr, "codexctl completion: no config key '%s'\n", key);
    return 1;
}

int ctl_completion(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "--help") || !strcmp(what, "-h")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(what, "bash")) {
        fwrite(ctl_completion_bash, 1, ctl_completion_bash_len, stdout);
    } else if (argc == 2 && !strcmp(what, "zsh")) {
        fwrite(ctl_completion_zsh, 1, ctl_completion_zsh_len, stdout);
    } else if (argc == 2 && !strcmp(what, "verbs")) {
        for (const ctl_command_t *c = CTL_COMMANDS; c->name; c++) printf("%s\n", c->name);
        printf("help\nversion\n");
    } else if (argc == 2 && !strcmp(what, "keys")) {
        const char *name;
        for (int i = 0; (name = config_key_name(i, NULL)) != NULL; i++) printf("%s\n", name);
    } else if (argc == 3 && !strcmp(what, "values")) {
        return print_values(argv[2]);
    } else {
        fputs(USAGE, stderr);
        return 2;
    }
    return 0;
}
