/*
 * Running untrusted commands (generated code and its tests) with as little
 * reach as the kernel allows: no network (a new network namespace, and a
 * seccomp filter that refuses every socket family but AF_UNIX), its own
 * mount, PID, IPC and UTS namespaces, the file system read-only except a
 * private temporary directory that is its working directory and is removed
 * afterwards, an unprivileged user (when started as root), rlimits on CPU,
 * memory, file size, open files and processes, a wall-clock timeout that
 * kills the whole process group, and a clean environment.
 *
 * What the kernel refuses degrades instead of failing (namespaces are often
 * forbidden in containers); result.applied says what was in force, and
 * opts.require names what must be or the run fails with CU_EINVAL.
 *
 * Not for multi-threaded callers that fork concurrently from other threads:
 * the child only calls async-signal-safe functions, but the seccomp program
 * and everything else is prepared before fork.
 */
#ifndef CU_SAFETY_SANDBOX_H
#define CU_SAFETY_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

/* Isolation layers, for opts.require, opts.disable and result.applied. */
enum {
    SANDBOX_NETNS = 1u << 0,    /* new network namespace: no interfaces but a down loopback */
    SANDBOX_MOUNTNS = 1u << 1,  /* new mount namespace */
    SANDBOX_PIDNS = 1u << 2,    /* new PID namespace: the command cannot see or signal others,
                                   and everything it starts dies with it */
    SANDBOX_USERNS = 1u << 3,   /* new user namespace (when not root) */
    SANDBOX_IPCNS = 1u << 4,    /* new IPC and UTS namespaces */
    SANDBOX_RO_ROOT = 1u << 5,  /* every mount read-only except the private directory */
    SANDBOX_SECCOMP = 1u << 6,  /* the system-call filter */
    SANDBOX_RLIMITS = 1u << 7,  /* CPU, address space, file size, open files, processes */
    SANDBOX_UID_DROP = 1u << 8, /* runs as run_uid/run_gid (started as root) */
};

typedef struct {
    const char *name; /* a plain file name (no '/'), created in the private directory */
    const char *data;
    size_t len;
    int executable;
} sandbox_file_t;

typedef struct {
    const char *const *argv; /* NULL-terminated; argv[0] a path or a name found in the PATH below */
    const char *const *env;  /* extra "NAME=value" entries, NULL-terminated, or NULL */
    const sandbox_file_t *files; /* written into the private directory first */
    size_t nfiles;
    const char *stdin_data; /* NULL: stdin is /dev/null */
    size_t stdin_len;
    const char *tmp_parent; /* where the private directory is made; default /tmp */
    double timeout_s;       /* wall clock; default 10 */
    unsigned cpu_s;         /* RLIMIT_CPU; default 10 */
    size_t mem_bytes;       /* RLIMIT_AS; default 2 GiB */
    size_t fsize_bytes;     /* RLIMIT_FSIZE; default 64 MiB */
    unsigned nofile;        /* RLIMIT_NOFILE; default 64 */
    unsigned nproc;         /* RLIMIT_NPROC; default 64 (counts the run user's processes) */
                            /* (for the five limits, 0 means unlimited) */
    size_t max_output;      /* bytes kept of stdout and of stderr each; default 1 MiB */
    unsigned require;       /* SANDBOX_* bits that must apply; default SANDBOX_SECCOMP */
    unsigned disable;       /* SANDBOX_* bits not to apply (explicit opt-outs) */
    uid_t run_uid;          /* when started as root; default 65534 (nobody) */
    gid_t run_gid;
} sandbox_opts_t;

/* Fills the defaults above. */
void sandbox_opts_init(sandbox_opts_t *o);

typedef struct {
    int exited, exit_code; /* normal exit and its code */
    int signaled,
        term_signal; /* killed by a signal (SIGKILL at a timeout, SIGXCPU at the CPU limit) */
    int timed_out;   /* the wall-clock timeout fired */
    int exec_failed; /* the command could not be started (exit_code 127) */
    double wall_s, cpu_s;
    char *out, *err; /* captured stdout/stderr, NUL-terminated */
    size_t out_len, err_len;
    int out_truncated, err_truncated;
    unsigned applied; /* SANDBOX_* bits that were in force */
} sandbox_result_t;

/* Runs opts->argv in the sandbox and waits for it. Allocates result's
 * buffers (sandbox_result_free). Fails (CU_EINVAL) for bad options or when a
 * required layer cannot be applied, CU_EIO when the private directory cannot
 * be made; a command that fails or times out is a result, not an error. */
int sandbox_run(const sandbox_opts_t *opts, sandbox_result_t *result, cu_error_t *err);
void sandbox_result_free(sandbox_result_t *r);

/* "netns,mountns,pidns,seccomp,..." for logs; buf of at least 128 bytes. */
void sandbox_applied_string(unsigned applied, char *buf, size_t cap);

#endif
