/*
 * The sandbox's control groups (internal to safety/): one cgroup per run,
 * made before the run's first process starts and removed after its last
 * one ends, that holds the run's memory (including shmem, memfd and tmpfs
 * pages, which RLIMIT_AS does not see), swap (none), process count and CPU
 * share, and measures its CPU time.
 *
 * cgroup v2 when a v2 tree offers memory and pids (the run's cgroup goes
 * under `parent`, a delegated directory, or under the service's own cgroup,
 * which is then split into a leaf for the service and the runs' subtree);
 * otherwise cgroup v1 hierarchies for memory, pids, cpu and cpuacct, the
 * run's cgroup made under the service's own cgroup in each.
 */
#ifndef CU_SAFETY_SANDBOX_CG_H
#define CU_SAFETY_SANDBOX_CG_H

#include <stddef.h>

#define SB_CG_MAX 4
#define SB_CG_PATH 1024

typedef struct {
    int version; /* 1 or 2; 0 = none */
    int n;       /* directories made (v2: one; v1: one per hierarchy) */
    char dir[SB_CG_MAX][SB_CG_PATH];
    int procs_fd[SB_CG_MAX];     /* each cgroup.procs, open for writing, for the run to join */
    int mem, pids, cpu, cpuacct; /* index into dir of each controller, -1 when absent */
    int slot;                    /* the run's number among the runs alive now (the uid offset) */
} sb_cg_t;

typedef struct {
    size_t mem_bytes;   /* memory.max (0: none) */
    unsigned pids;      /* pids.max (0: none) */
    double cpus;        /* cpu.max as CPUs (0: none) */
    const char *parent; /* a cgroup v2 directory to make runs in; NULL: find one */
} sb_cg_limits_t;

/* Makes the run's cgroup with the limits. 0 on success; -1 when cgroups
 * cannot be used here, with the reason in why. */
int sb_cg_create(const sb_cg_limits_t *lim, sb_cg_t *cg, char *why, size_t cap);

/* For the run's first process (async-signal-safe): joins every cgroup. */
int sb_cg_join(const sb_cg_t *cg);

/* CPU seconds used by the run's processes (-1 when unknown). */
double sb_cg_cpu_s(const sb_cg_t *cg);

/* Processes the kernel killed for going over memory.max. */
long sb_cg_oom_kills(const sb_cg_t *cg);

/* Kills whatever is still in the cgroup, removes it, closes the fds. */
void sb_cg_destroy(sb_cg_t *cg);

#endif
