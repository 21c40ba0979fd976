/*
 * The sandbox's control groups (see sandbox_cg.h).
 *
 * Where the hierarchies are comes from /proc/self/mountinfo (a cgroup2
 * mount, or cgroup mounts whose options name a controller); where the
 * service itself sits in each from /proc/self/cgroup. Runs are numbered by
 * the directory they manage to make, run-<slot>, so two processes running
 * sandboxes never share one; a directory left by a service that died is
 * taken over once it holds no process.
 */
#include "safety/sandbox_cg.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 4096
#define SERVICE_LEAF "cu-service" /* v2: the leaf the service moves into */
#define SANDBOX_DIR "cu-sandbox"  /* the runs' subtree, run-<slot> below it */

/* snprintf that may cut (every path here fits; a cut one fails to open) */
static void fmt(char *out, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, cap, f, ap);
    va_end(ap);
}

static int write_file(const char *dir, const char *name, const char *val) {
    char path[SB_CG_PATH + 64];
    fmt(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t n = write(fd, val, strlen(val));
    int e = n == (ssize_t)strlen(val) ? 0 : (n < 0 ? errno : EIO);
    close(fd);
    return e;
}

static int read_file(const char *dir, const char *name, char *buf, size_t cap) {
    char path[SB_CG_PATH + 64];
    fmt(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == cap - 1) break;
    }
    close(fd);
    buf[len] = '\0';
    return (int)len;
}

/* "key N" in a flat-keyed file; -1 when absent. */
static long long read_key(const char *dir, const char *name, const char *key) {
    char buf[4096];
    if (read_file(dir, name, buf, sizeof buf) < 0) return -1;
    size_t kl = strlen(key);
    for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, kl) && p[kl] == ' ') return strtoll(p + kl + 1, NULL, 10);
    return -1;
}

static int has_word(const char *list, const char *word, const char *seps) {
    size_t wl = strlen(word);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, seps);
        if (n == wl && !strncmp(p, word, wl)) return 1;
        p += n;
        if (*p) p++;
    }
    return 0;
}

/* The service's own path in the hierarchy that has controller (v1), or in
 * the unified one (controller NULL). */
static int own_path(const char *controller, char *out, size_t cap) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return -1;
    char line[2048];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        int match = controller ? has_word(c1 + 1, controller, ",") : (c1[1] == '\0');
        if (match) {
            fmt(out, cap, "%s", c2 + 1);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* The mount point and mount root of the v1 hierarchy with controller, or of
 * the cgroup2 tree (controller NULL). */
static int find_mount(const char *controller, char *mnt, size_t mcap, char *root, size_t rcap) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return -1;
    char line[4096];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *sep = strstr(line, " - ");
        if (!sep) continue;
        *sep = '\0';
        char fstype[32], source[256], opts[1024] = "";
        if (sscanf(sep + 3, "%31s %255s %1023s", fstype, source, opts) < 2) continue;
        char r[1024], m[1024];
        if (sscanf(line, "%*s %*s %*s %1023s %1023s", r, m) != 2) continue;
        if (controller ? (!strcmp(fstype, "cgroup") && has_word(opts, controller, ","))
                       : !strcmp(fstype, "cgroup2")) {
            fmt(mnt, mcap, "%s", m);
            fmt(root, rcap, "%s", r);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* mount point + (own path less the mount's root) */
static int own_dir(const char *controller, char *out, size_t cap) {
    char mnt[1024], root[1024], own[1024];
    if (find_mount(controller, mnt, sizeof mnt, root, sizeof root) ||
        own_path(controller, own, sizeof own))
        return -1;
    const char *rel = own;
    size_t rl = strlen(root);
    if (strcmp(root, "/") && !strncmp(own, root, rl) && (own[rl] == '/' || !own[rl])) rel += rl;
    if (!strcmp(rel, "/")) rel = "";
    if (strlen(mnt) + strlen(rel) >= cap) return -1;
    fmt(out, cap, "%s%s", mnt, rel);
    return 0;
}

static int procs_empty(const char *dir) {
    char buf[64];
    return read_file(dir, "cgroup.procs", buf, sizeof buf) == 0;
}

/* Makes base/run-<slot> for the first free slot; returns the slot or -1. */
static int claim_slot(const char *base, char *out, size_t cap) {
    for (int s = 0; s < MAX_SLOTS; s++) {
        fmt(out, cap, "%s/run-%d", base, s);
        if (mkdir(out, 0755) == 0) return s;
        if (errno != EEXIST) return -1;
        /* left by a service that died: taken over once empty and old */
        struct stat sb;
        if (stat(out, &sb) == 0 && time(NULL) - sb.st_mtime > 300 && procs_empty(out) &&
            rmdir(out) == 0 && mkdir(out, 0755) == 0)
            return s;
    }
    errno = EBUSY;
    return -1;
}

static void set_why(char *why, size_t cap, const char *f, const char *a, int e) {
    char m[2048];
    fmt(m, sizeof m, f, a);
    fmt(why, cap, "%s%s%s", m, e ? ": " : "", e ? strerror(e) : "");
}

static int enable_controllers(const char *dir, int with_cpu) {
    int e = write_file(dir, "cgroup.subtree_control", "+memory");
    if (!e) e = write_file(dir, "cgroup.subtree_control", "+pids");
    if (!e && with_cpu) write_file(dir, "cgroup.subtree_control", "+cpu"); /* optional */
    return e;
}

/* The service's own cgroup v2 directory: where it sits, or the parent of
 * the leaf it moved into on an earlier run (the runs' subtree stays beside
 * that leaf instead of going one level deeper each time). */
static int service_dir(char *out, size_t cap) {
    if (own_dir(NULL, out, cap)) return -1;
    size_t n = strlen(out), ln = strlen("/" SERVICE_LEAF);
    if (n > ln && !strcmp(out + n - ln, "/" SERVICE_LEAF)) out[n - ln] = '\0';
    return 0;
}

/* Moves every process of dir into leaf, until dir holds none (processes
 * forked meanwhile are caught by the next round). 0 or an errno. */
static int move_all(const char *dir, const char *leaf) {
    for (int round = 0; round < 100; round++) {
        char buf[16384];
        int n = read_file(dir, "cgroup.procs", buf, sizeof buf);
        if (n < 0) return errno ? errno : EIO;
        if (n == 0) return 0;
        if (n == (int)sizeof buf - 1) {
            /* a full buffer may end in half a pid: keep whole lines only */
            char *nl = strrchr(buf, '\n');
            if (!nl) return EOVERFLOW;
            nl[1] = '\0';
        }
        for (char *p = buf; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p || (*end && *end != '\n')) return EINVAL;
            p = end + (*end == '\n');
            char v[32];
            fmt(v, sizeof v, "%ld", pid);
            int e = write_file(leaf, "cgroup.procs", v);
            if (e && e != ESRCH) return e; /* ESRCH: it ended meanwhile */
        }
    }
    return EBUSY;
}

/* The runs' subtree, SANDBOX_DIR, under the service's own cgroup base. A
 * cgroup with processes cannot hand controllers down ("no internal
 * processes"), so when base has processes (the service, and whatever else
 * its unit started) they all move into the leaf SERVICE_LEAF first; the
 * service's own limits still hold them, as its cgroup is their ancestor. */
static int prepare_own_subtree(const char *base, int with_cpu, char *runs, size_t rcap, char *why,
                               size_t cap) {
    char leaf[SB_CG_PATH + 16], have[256];
    fmt(runs, rcap, "%s/" SANDBOX_DIR, base);
    fmt(leaf, sizeof leaf, "%s/" SERVICE_LEAF, base);
    if (read_file(runs, "cgroup.subtree_control", have, sizeof have) >= 0 &&
        has_word(have, "memory", " \n") && has_word(have, "pids", " \n"))
        return 0; /* made by an earlier run */
    int e = enable_controllers(base, with_cpu);
    if (e == EBUSY) {
        if (mkdir(leaf, 0755) && errno != EEXIST) {
            set_why(why, cap, "cgroup v2: cannot make %s", leaf, errno);
            return -1;
        }
        e = move_all(base, leaf);
        if (e) {
            set_why(why, cap, "cgroup v2: cannot move the processes of %s into its leaf", base, e);
            return -1;
        }
        e = enable_controllers(base, with_cpu);
    }
    if (e) {
        set_why(why, cap, "cgroup v2: cannot enable memory and pids below %s", base, e);
        return -1;
    }
    if (mkdir(runs, 0755) && errno != EEXIST) {
        set_why(why, cap, "cgroup v2: cannot make %s", runs, errno);
        return -1;
    }
    e = enable_controllers(runs, with_cpu);
    if (e) {
        set_why(why, cap, "cgroup v2: cannot enable memory and pids in %s", runs, e);
        return -1;
    }
    return 0;
}

static int create_v2(const sb_cg_limits_t *lim, sb_cg_t *cg, char *why, size_t cap) {
    char base[SB_CG_PATH], runs[SB_CG_PATH + 16], ctl[512];
    if (lim->parent) {
        fmt(base, sizeof base, "%s", lim->parent);
    } else if (service_dir(base, sizeof base)) {
        set_why(why, cap, "no cgroup v2 tree%s", "", 0);
        return -1;
    }
    if (read_file(base, "cgroup.controllers", ctl, sizeof ctl) < 0) {
        set_why(why, cap, "cgroup v2: cannot read %s/cgroup.controllers", base, errno);
        return -1;
    }
    if (!has_word(ctl, "memory", " \n") || !has_word(ctl, "pids", " \n")) {
        set_why(why, cap, "cgroup v2: %s does not offer the memory and pids controllers", base, 0);
        return -1;
    }
    int with_cpu = has_word(ctl, "cpu", " \n");
    if (lim->parent) {
        /* a delegated directory: the runs go straight under it */
        int e = enable_controllers(base, with_cpu);
        if (e) {
            set_why(why, cap,
                    e == EBUSY ? "cgroup v2: cannot enable memory and pids in %s (it holds "
                                 "processes: give sandbox.cgroup_parent a directory without any)"
                               : "cgroup v2: cannot enable memory and pids in %s",
                    base, e);
            return -1;
        }
        fmt(runs, sizeof runs, "%s", base);
    } else if (prepare_own_subtree(base, with_cpu, runs, sizeof runs, why, cap)) {
        return -1;
    }
    cg->slot = claim_slot(runs, cg->dir[0], sizeof cg->dir[0]);
    if (cg->slot < 0) {
        set_why(why, cap, "cgroup v2: cannot make a run's cgroup under %s", runs, errno);
        return -1;
    }
    cg->version = 2;
    cg->n = 1;
    cg->mem = cg->pids = cg->cpuacct = 0;
    cg->cpu = with_cpu ? 0 : -1;
    char v[64];
    int e = 0;
    if (lim->mem_bytes) {
        fmt(v, sizeof v, "%zu", lim->mem_bytes);
        e = write_file(cg->dir[0], "memory.max", v);
        int se = write_file(cg->dir[0], "memory.swap.max", "0");
        if (!e && se && se != ENOENT) e = se;
        write_file(cg->dir[0], "memory.oom.group", "1");
    }
    if (!e && lim->pids) {
        fmt(v, sizeof v, "%u", lim->pids);
        e = write_file(cg->dir[0], "pids.max", v);
    }
    if (!e && lim->cpus > 0 && with_cpu) {
        /* optional: the cpu controller may not have been handed down */
        fmt(v, sizeof v, "%ld 100000", (long)(lim->cpus * 100000));
        if (write_file(cg->dir[0], "cpu.max", v) != 0) cg->cpu = -1;
    }
    if (e) {
        set_why(why, cap, "cgroup v2: setting the limits in %s", cg->dir[0], e);
        return -1;
    }
    return 0;
}

static int create_v1(const sb_cg_limits_t *lim, sb_cg_t *cg, char *why, size_t cap) {
    static const char *const CTL[] = {"memory", "pids", "cpu", "cpuacct"};
    int *idx[] = {&cg->mem, &cg->pids, &cg->cpu, &cg->cpuacct};
    char bases[SB_CG_MAX][SB_CG_PATH];
    char mnts[SB_CG_MAX][1024];
    int nb = 0;
    for (int c = 0; c < 4; c++) {
        char mnt[1024], root[1024];
        *idx[c] = -1;
        if (find_mount(CTL[c], mnt, sizeof mnt, root, sizeof root)) {
            if (c < 2) {
                set_why(why, cap, "no cgroup v1 hierarchy with the %s controller", CTL[c], 0);
                return -1;
            }
            continue;
        }
        for (int b = 0; b < nb; b++)
            if (!strcmp(mnts[b], mnt)) *idx[c] = b; /* co-mounted, e.g. cpu,cpuacct */
        if (*idx[c] >= 0) continue;
        if (own_dir(CTL[c], bases[nb], sizeof bases[nb])) {
            set_why(why, cap, "cgroup v1: cannot place the service in the %s hierarchy", CTL[c], 0);
            return -1;
        }
        fmt(mnts[nb], sizeof mnts[nb], "%s", mnt);
        *idx[c] = nb++;
    }
    /* the slot is claimed in the memory hierarchy, the others follow it */
    for (int b = 0; b < nb; b++) {
        char runs[SB_CG_PATH + 16];
        fmt(runs, sizeof runs, "%s/" SANDBOX_DIR, bases[b]);
        if (mkdir(runs, 0755) && errno != EEXIST) {
            set_why(why, cap, "cgroup v1: cannot make %s", runs, errno);
            return -1;
        }
        if (b == cg->mem) {
            cg->slot = claim_slot(runs, cg->dir[b], sizeof cg->dir[b]);
            if (cg->slot < 0) {
                set_why(why, cap, "cgroup v1: cannot make a run's cgroup under %s", runs, errno);
                return -1;
            }
        }
    }
    cg->version = 1;
    for (int b = 0; b < nb; b++) {
        if (b == cg->mem) continue;
        fmt(cg->dir[b], sizeof cg->dir[b], "%s/" SANDBOX_DIR "/run-%d", bases[b], cg->slot);
        if (mkdir(cg->dir[b], 0755) && !(errno == EEXIST && procs_empty(cg->dir[b]))) {
            int e = errno;
            cg->n = b;
            set_why(why, cap, "cgroup v1: cannot make %s", cg->dir[b], e);
            return -1;
        }
    }
    cg->n = nb;
    char v[64];
    int e = 0;
    if (lim->mem_bytes) {
        fmt(v, sizeof v, "%zu", lim->mem_bytes);
        e = write_file(cg->dir[cg->mem], "memory.limit_in_bytes", v);
        /* memory+swap at the same figure: no swap */
        int se = write_file(cg->dir[cg->mem], "memory.memsw.limit_in_bytes", v);
        if (!e && se && se != ENOENT) e = se;
    }
    if (!e && lim->pids) {
        fmt(v, sizeof v, "%u", lim->pids);
        e = write_file(cg->dir[cg->pids], "pids.max", v);
    }
    if (!e && lim->cpus > 0 && cg->cpu >= 0) {
        e = write_file(cg->dir[cg->cpu], "cpu.cfs_period_us", "100000");
        fmt(v, sizeof v, "%ld", (long)(lim->cpus * 100000));
        if (!e) e = write_file(cg->dir[cg->cpu], "cpu.cfs_quota_us", v);
    }
    if (e) {
        set_why(why, cap, "cgroup v1: setting the limits of %s", cg->dir[0], e);
        return -1;
    }
    return 0;
}

int sb_cg_create(const sb_cg_limits_t *lim, sb_cg_t *cg, char *why, size_t cap) {
    memset(cg, 0, sizeof *cg);
    for (int i = 0; i < SB_CG_MAX; i++) cg->procs_fd[i] = -1;
    cg->mem = cg->pids = cg->cpu = cg->cpuacct = -1;
    cg->slot = -1;
    char why2[512] = "";
    int rc = create_v2(lim, cg, why, cap);
    if (rc && !lim->parent) {
        sb_cg_destroy(cg);
        for (int i = 0; i < SB_CG_MAX; i++) cg->procs_fd[i] = -1;
        fmt(why2, sizeof why2, "%s", why);
        rc = create_v1(lim, cg, why, cap);
        if (rc) {
            char both[1100];
            fmt(both, sizeof both, "%s; %s", why2, why);
            fmt(why, cap, "%s", both);
        }
    }
    for (int i = 0; rc == 0 && i < cg->n; i++) {
        char path[SB_CG_PATH + 32];
        fmt(path, sizeof path, "%s/cgroup.procs", cg->dir[i]);
        cg->procs_fd[i] = open(path, O_WRONLY | O_CLOEXEC);
        if (cg->procs_fd[i] < 0) {
            set_why(why, cap, "cannot open %s", path, errno);
            rc = -1;
        }
    }
    if (rc) sb_cg_destroy(cg);
    return rc;
}

int sb_cg_join(const sb_cg_t *cg) {
    for (int i = 0; i < cg->n; i++)
        if (write(cg->procs_fd[i], "0", 1) != 1) return -1;
    return 0;
}

double sb_cg_cpu_s(const sb_cg_t *cg) {
    if (cg->version == 2) {
        long long us = read_key(cg->dir[0], "cpu.stat", "usage_usec");
        return us < 0 ? -1 : (double)us * 1e-6;
    }
    if (cg->version == 1 && cg->cpuacct >= 0) {
        char buf[64];
        if (read_file(cg->dir[cg->cpuacct], "cpuacct.usage", buf, sizeof buf) <= 0) return -1;
        return (double)strtoull(buf, NULL, 10) * 1e-9;
    }
    return -1;
}

long sb_cg_oom_kills(const sb_cg_t *cg) {
    if (cg->mem < 0) return 0;
    long long n = read_key(cg->dir[cg->mem],
                           cg->version == 2 ? "memory.events" : "memory.oom_control", "oom_kill");
    return n < 0 ? 0 : (long)n;
}

/* SIGKILL to every process listed in dir's cgroup.procs; 1 when none was. */
static int kill_listed(const char *dir) {
    char buf[16384];
    if (read_file(dir, "cgroup.procs", buf, sizeof buf) <= 0) return 1;
    int any = 0;
    for (char *p = buf; *p;) {
        long pid = strtol(p, &p, 10);
        if (pid > 0) {
            kill((pid_t)pid, SIGKILL);
            any = 1;
        }
        while (*p == '\n') p++;
    }
    return !any;
}

/* rmdir once the last process is gone (zombies included), at most ~5 s */
static void remove_dir(const char *dir) {
    for (int t = 0; t < 500; t++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return;
        if (errno != EBUSY) return;
        kill_listed(dir);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void sb_cg_destroy(sb_cg_t *cg) {
    for (int i = 0; i < SB_CG_MAX; i++)
        if (cg->procs_fd[i] >= 0) {
            close(cg->procs_fd[i]);
            cg->procs_fd[i] = -1;
        }
    if (cg->version == 2 && cg->n) write_file(cg->dir[0], "cgroup.kill", "1");
    /* the directory that holds the slot goes last: on v1 another run that
     * claims the slot takes over run-<slot> in the other hierarchies, which
     * must not be removed under it */
    int claim = cg->mem >= 0 && cg->mem < cg->n ? cg->mem : -1;
    for (int i = 0; i < cg->n; i++)
        if (i != claim) remove_dir(cg->dir[i]);
    if (claim >= 0) remove_dir(cg->dir[claim]);
    cg->n = 0;
    cg->version = 0;
}
