/*
 * Running untrusted commands (generated code and its tests) with as little
 * reach as the kernel allows:
 *
 *  - its own cgroup (v2, or v1 hierarchies where the controllers live
 *    there) holding memory (shmem, memfd and tmpfs pages included; no swap),
 *    the process count and the CPU share, and measuring its CPU time;
 *  - its own mount, PID, network, IPC and UTS namespaces: a root of its own
 *    that holds only the system directories (/usr, /bin, /lib*, /etc)
 *    read-only, the paths the caller names read-only, a fresh /proc, a few
 *    device nodes and a private size-capped tmpfs as /tmp (its working
 *    directory is in it); nothing else of the host — no /sys, no /run, no
 *    service files, no host sockets — and no network but a down loopback;
 *  - a seccomp filter: no socket() of any family (socketpair stays), no
 *    namespaces, mounts, ptrace, keyrings, bpf, ...;
 *  - a uid of its own (when started as root), rlimits, a wall-clock timeout
 *    that kills the whole run, and a clean environment.
 *
 * Where cgroups cannot be used (a container without them, or a non-root
 * service without a delegated subtree) memory held in memfd/shmem and the
 * process count escape the rlimits, so sandbox_run refuses unless
 * opts.allow_rlimits_only accepts that. The namespace layers degrade where
 * the kernel refuses them only when allow_rlimits_only (or opts.disable)
 * says so; result.applied says what was in force, opts.require names what
 * must be.
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
    SANDBOX_RO_ROOT = 1u << 5,  /* a root of its own: system directories read-only, nothing
                                   else of the host */
    SANDBOX_SECCOMP = 1u << 6,  /* the system-call filter */
    SANDBOX_RLIMITS = 1u << 7,  /* CPU, address space, file size, open files, processes */
    SANDBOX_UID_DROP = 1u << 8, /* runs as a uid of its own (started as root) */
    SANDBOX_CGROUP = 1u << 9,   /* its own cgroup: memory, swap, pids, cpu */
    SANDBOX_TMPFS = 1u << 10,   /* a private size-capped tmpfs as /tmp and working directory */
};

typedef struct {
    const char *name; /* a plain file name (no '/'), created in the private directory */
    const char *data;
    size_t len;
    int executable;
} sandbox_file_t;

typedef struct sandbox_opts {
    const char *const *argv; /* NULL-terminated; argv[0] a path or a name found in the PATH below */
    const char *const *env;  /* extra "NAME=value" entries, NULL-terminated, or NULL */
    const sandbox_file_t *files; /* written into the private directory first */
    size_t nfiles;
    const char *stdin_data; /* NULL: stdin is /dev/null */
    size_t stdin_len;
    const char *tmp_parent; /* where the private directory's mount point is made; default /tmp */
    double timeout_s;       /* wall clock; default 10 */
    unsigned cpu_s;         /* RLIMIT_CPU; default 10 */
    size_t mem_bytes;       /* memory.max of the run's cgroup (all its processes, shmem and
                               tmpfs included) and RLIMIT_AS; default 2 GiB */
    size_t as_bytes;        /* RLIMIT_AS when it must differ from mem_bytes; SIZE_MAX: none */
    size_t fsize_bytes;     /* RLIMIT_FSIZE; default 64 MiB */
    size_t disk_bytes;      /* size of the private tmpfs (/tmp); default 64 MiB */
    unsigned nofile;        /* RLIMIT_NOFILE; default 64 */
    unsigned nproc;         /* processes the command may have: pids.max of its cgroup (plus the
                               sandbox's two), RLIMIT_NPROC without a cgroup; default 64 */
                            /* (for the limits above, 0 means unlimited) */
    double cpus;            /* cpu.max of the run's cgroup, in CPUs; default 1, 0: none */
    size_t max_output;      /* bytes kept of stdout and of stderr each; default 1 MiB */
    unsigned require;       /* SANDBOX_* bits that must apply; default SECCOMP, CGROUP,
                               RO_ROOT, TMPFS */
    unsigned disable;       /* SANDBOX_* bits not to apply (explicit opt-outs) */
    int allow_rlimits_only; /* run where cgroups or namespaces cannot be had (weaker: memfd
                               and shmem escape RLIMIT_AS, RLIMIT_NPROC is per uid, host
                               files stay visible): drops CGROUP, RO_ROOT, TMPFS from require */
    const char *const *ro_paths;   /* host paths also visible inside, read-only; NULL-terminated */
    const char *const *hide_paths; /* never readable inside, even under a visible directory */
    const char *cgroup_parent;     /* a delegated cgroup v2 directory for the runs; NULL: the
                                      service's own cgroup (v2), or v1 hierarchies */
    uid_t run_uid;                 /* when started as root and no cgroup slot numbers the run;
                                      default 65534 (nobody) */
    gid_t run_gid;
    uid_t uid_base; /* when started as root: the run in cgroup slot N runs as
                       uid_base + N (and that gid); default 200000; 0: run_uid */
} sandbox_opts_t;

/* Fills the defaults above. */
void sandbox_opts_init(sandbox_opts_t *o);

typedef struct {
    int exited, exit_code; /* normal exit and its code */
    int signaled,
        term_signal;      /* killed by a signal (SIGKILL at a timeout, SIGXCPU at the CPU limit) */
    int timed_out;        /* the wall-clock timeout fired */
    int exec_failed;      /* the command could not be started (exit_code 127) */
    double wall_s, cpu_s; /* cpu_s: the run's cgroup's CPU time (every process it had) */
    char *out, *err;      /* captured stdout/stderr, NUL-terminated */
    size_t out_len, err_len;
    int out_truncated, err_truncated;
    unsigned applied;   /* SANDBOX_* bits that were in force */
    int cgroup_version; /* 1 or 2 when SANDBOX_CGROUP applied */
    long oom_kills;     /* processes killed for going over mem_bytes */
    unsigned uid;       /* the uid the command ran as */
} sandbox_result_t;

/* Whether sandboxed runs can have their cgroup here: 1, or 0 with the
 * reason in why (for a warning at start-up). Makes and removes one. */
int sandbox_cgroups_available(const char *cgroup_parent, char *why, size_t cap);

/* Runs opts->argv in the sandbox and waits for it. Allocates result's
 * buffers (sandbox_result_free). Fails CU_EINVAL for bad options, CU_EPOLICY
 * when the run is refused (no cgroup without allow_rlimits_only, or a
 * required layer that cannot be applied), CU_EIO when the private directory
 * or a file cannot be made; a command that fails or times out is a result,
 * not an error. */
int sandbox_run(const sandbox_opts_t *opts, sandbox_result_t *result, cu_error_t *err);
void sandbox_result_free(sandbox_result_t *r);

/* "netns,mountns,pidns,seccomp,..." for logs; buf of at least 160 bytes. */
void sandbox_applied_string(unsigned applied, char *buf, size_t cap);

#endif
