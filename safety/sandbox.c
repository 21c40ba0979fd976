/*
 * The sandbox (see sandbox.h). Three processes:
 *
 *   parent ── fork ──► setup: setsid, unshare(namespaces), uid/gid maps
 *                        │  fork (first process of the new PID namespace)
 *                        ▼
 *                      waiter: mounts (read-only root, the private directory
 *                        │  bound read-write, a fresh /proc), then
 *                        │  fork
 *                        ▼
 *                      command: rlimits, cwd, drop uid, close fds,
 *                               seccomp, execve
 *
 * The waiter reaps the command and reports its wait status; when the waiter
 * exits as PID 1 of the namespace, the kernel kills whatever the command
 * left behind. Without a PID namespace the parent kills the process group
 * (setup called setsid, and the seccomp filter refuses setsid and setpgid,
 * so nothing leaves the group). The parent collects stdout and stderr
 * through pipes, bounded, and enforces the wall-clock timeout with SIGKILL
 * to the group. A report pipe carries small fixed-size messages from the
 * children: which layers applied, an execve errno, the command's status.
 */
#include "safety/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/timer.h"

#define SANDBOX_PATH "/usr/local/bin:/usr/bin:/bin"

enum { MSG_APPLIED = 1, MSG_EXEC_ERRNO = 2, MSG_STATUS = 3 };

typedef struct {
    int32_t kind, value;
} msg_t;

void sandbox_opts_init(sandbox_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 10;
    o->cpu_s = 10;
    o->mem_bytes = (size_t)2 << 30;
    o->fsize_bytes = (size_t)64 << 20;
    o->nofile = 64;
    o->nproc = 64;
    o->max_output = (size_t)1 << 20;
    o->require = SANDBOX_SECCOMP;
    o->run_uid = 65534;
    o->run_gid = 65534;
}

void sandbox_result_free(sandbox_result_t *r) {
    if (!r) return;
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

void sandbox_applied_string(unsigned applied, char *buf, size_t cap) {
    static const char *const NAMES[] = {"netns",   "mountns", "pidns",   "userns",  "ipcns",
                                        "ro_root", "seccomp", "rlimits", "uid_drop"};
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < 9; i++)
        if (applied & (1u << i)) {
            int m = snprintf(buf + n, cap > n ? cap - n : 0, "%s%s", n ? "," : "", NAMES[i]);
            if (m > 0) n += (size_t)m;
        }
    if (n == 0) snprintf(buf, cap, "none");
}

/* ---- the seccomp program, built before fork ---- */

static int build_seccomp(struct sock_fprog *prog, cu_error_t *err) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return cu_error_set(err, CU_ENOMEM, "seccomp_init failed");
    int rc = 0;
    const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
    /* every socket family but AF_UNIX */
    rc |= seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    rc |= seccomp_rule_add(ctx, deny, SCMP_SYS(socketpair), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    /* no new namespaces from inside */
    const uint64_t ns_flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWNET,   CLONE_NEWPID,
                                 CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP};
    for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0]; i++)
        rc |= seccomp_rule_add(ctx, deny, SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    /* clone3 takes its flags in memory a filter cannot read: make libc fall back to clone */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    rc |= seccomp_rule_add(ctx, deny, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TIOCSTI));
    static const char *const DENIED[] = {
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "swapon",
        "swapoff",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "acct",
        "quotactl",
        "syslog",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "sethostname",
        "setdomainname",
        "iopl",
        "ioperm",
        "open_by_handle_at",
        "name_to_handle_at",
        "mount_setattr",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "setsid",
        "setpgid",
        "personality",
        "vhangup",
        "lookup_dcookie",
        "io_uring_setup",
    };
    for (size_t i = 0; i < sizeof DENIED / sizeof DENIED[0]; i++) {
        int nr = seccomp_syscall_resolve_name(DENIED[i]);
        if (nr != __NR_SCMP_ERROR) rc |= seccomp_rule_add(ctx, deny, nr, 0);
    }
    if (rc) {
        seccomp_release(ctx);
        return cu_error_set(err, CU_EINTERNAL, "building the seccomp filter failed");
    }
    int fd = memfd_create("cu-seccomp", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) != 0) {
        if (fd >= 0) close(fd);
        seccomp_release(ctx);
        return cu_error_set(err, CU_EINTERNAL, "exporting the seccomp filter failed");
    }
    seccomp_release(ctx);
    off_t size = lseek(fd, 0, SEEK_END);
    struct sock_filter *f = size > 0 ? malloc((size_t)size) : NULL;
    if (!f || pread(fd, f, (size_t)size, 0) != (ssize_t)size) {
        free(f);
        close(fd);
        return cu_error_set(err, CU_EINTERNAL, "reading the seccomp filter failed");
    }
    close(fd);
    prog->len = (unsigned short)((size_t)size / sizeof *f);
    prog->filter = f;
    return CU_OK;
}

/* ---- helpers for the children (async-signal-safe only) ---- */

static void send_msg(int fd, int kind, int value) {
    msg_t m = {kind, value};
    ssize_t w = write(fd, &m, sizeof m);
    (void)w;
}

static int write_file_str(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

typedef struct {
    const sandbox_opts_t *o;
    const char *dir;
    const char *exe;
    char *const *argv;
    char *const *envp;
    struct sock_fprog *prog;
    int out_w, err_w, in_fd, rep_w;
    int root;
    char uid_map[64], gid_map[64];
} child_t;

static unsigned try_unshare(child_t *c) {
    unsigned want = ~c->o->disable;
    int base = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!(want & SANDBOX_MOUNTNS)) base &= ~CLONE_NEWNS;
    if (!(want & SANDBOX_NETNS)) base &= ~CLONE_NEWNET;
    if (!(want & SANDBOX_PIDNS)) base &= ~CLONE_NEWPID;
    if (!(want & SANDBOX_IPCNS)) base &= ~(CLONE_NEWIPC | CLONE_NEWUTS);
    int user = (!c->root && (want & SANDBOX_USERNS)) ? CLONE_NEWUSER : 0;
    /* the full set, then without PID, then network alone, then nothing */
    int tries[] = {base | user, (base & ~CLONE_NEWPID) | user, (base & CLONE_NEWNET) | user, user};
    for (int i = 0; i < 4; i++) {
        int flags = tries[i];
        if (!flags || unshare(flags) != 0) continue;
        unsigned applied = 0;
        if (flags & CLONE_NEWUSER) {
            if (write_file_str("/proc/self/setgroups", "deny") != 0 ||
                write_file_str("/proc/self/uid_map", c->uid_map) != 0 ||
                write_file_str("/proc/self/gid_map", c->gid_map) != 0)
                _exit(126); /* half a user namespace is worse than none */
            applied |= SANDBOX_USERNS;
        }
        if (flags & CLONE_NEWNS) applied |= SANDBOX_MOUNTNS;
        if (flags & CLONE_NEWNET) applied |= SANDBOX_NETNS;
        if (flags & CLONE_NEWPID) applied |= SANDBOX_PIDNS;
        if (flags & CLONE_NEWIPC) applied |= SANDBOX_IPCNS;
        return applied;
    }
    return 0;
}

static unsigned setup_mounts(child_t *c, unsigned applied) {
    if (!(applied & SANDBOX_MOUNTNS)) return 0;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 0;
    unsigned got = 0;
    if (!(c->o->disable & SANDBOX_RO_ROOT)) {
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID};
        if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof attr) == 0 &&
            mount(c->dir, c->dir, NULL, MS_BIND, NULL) == 0 &&
            mount(NULL, c->dir, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) == 0)
            got |= SANDBOX_RO_ROOT;
    }
    if (applied & SANDBOX_PIDNS)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    return got;
}

static void set_limit(int res, rlim_t v) {
    if (v == 0 && res != RLIMIT_CORE) v = RLIM_INFINITY; /* 0 = no limit */
    struct rlimit rl = {v, v};
    setrlimit(res, &rl);
}

static void __attribute__((noreturn)) run_command(child_t *c) {
    const sandbox_opts_t *o = c->o;
    dup2(c->in_fd, 0);
    dup2(c->out_w, 1);
    dup2(c->err_w, 2);
    /* the report pipe as fd 3, closed by a successful execve */
    if (c->rep_w != 3) {
        dup2(c->rep_w, 3);
    }
    fcntl(3, F_SETFD, FD_CLOEXEC);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    unsigned applied = 0;
    if (!(o->disable & SANDBOX_RLIMITS)) {
        set_limit(RLIMIT_CPU, o->cpu_s);
        set_limit(RLIMIT_AS, o->mem_bytes);
        set_limit(RLIMIT_FSIZE, o->fsize_bytes);
        set_limit(RLIMIT_NOFILE, o->nofile);
        set_limit(RLIMIT_NPROC, o->nproc);
        set_limit(RLIMIT_CORE, 0);
        applied |= SANDBOX_RLIMITS;
    }
    if (chdir(c->dir) != 0) _exit(126);
    if (c->root && !(o->disable & SANDBOX_UID_DROP)) {
        if (setgroups(0, NULL) != 0 || setresgid(o->run_gid, o->run_gid, o->run_gid) != 0 ||
            setresuid(o->run_uid, o->run_uid, o->run_uid) != 0)
            _exit(126);
        applied |= SANDBOX_UID_DROP;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (c->prog) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c->prog) == 0)
            applied |= SANDBOX_SECCOMP;
        else if (o->require & SANDBOX_SECCOMP) {
            send_msg(3, MSG_APPLIED, (int)applied);
            send_msg(3, MSG_EXEC_ERRNO, errno);
            _exit(126);
        }
    }
    send_msg(3, MSG_APPLIED, (int)applied);
    execve(c->exe, c->argv, c->envp);
    send_msg(3, MSG_EXEC_ERRNO, errno);
    _exit(127);
}

/* Waits for the command; reports its status; returns the exit code for itself. */
static int wait_command(child_t *c, pid_t cmd) {
    int status = 0;
    for (;;) {
        pid_t w = waitpid(-1, &status, 0);
        if (w == cmd) break;
        if (w < 0 && errno != EINTR) return 125;
    }
    send_msg(c->rep_w, MSG_STATUS, status);
    return 0;
}

static void __attribute__((noreturn)) run_setup(child_t *c) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setsid();
    unsigned applied = try_unshare(c);
    pid_t waiter = 0;
    if (applied & SANDBOX_PIDNS) {
        waiter = fork();
        if (waiter < 0) _exit(125);
        if (waiter > 0) {
            /* setup's only task now: outlive nothing, report nothing */
            int st;
            while (waitpid(waiter, &st, 0) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    }
    applied |= setup_mounts(c, applied);
    send_msg(c->rep_w, MSG_APPLIED, (int)applied);
    pid_t cmd = fork();
    if (cmd < 0) _exit(125);
    if (cmd == 0) run_command(c);
    _exit(wait_command(c, cmd));
}

/* ---- the parent ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: what cannot go stays, the walk goes on */
    return 0;
}

static void remove_tree(const char *dir) {
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int valid_name(const char *name) {
    if (!name || !*name || name[0] == '/') return 0;
    for (const char *p = name; *p; p++)
        if (p[0] == '.' && p[1] == '.' && (p == name || p[-1] == '/') && (p[2] == '/' || !p[2]))
            return 0;
    return !strchr(name, '/');
}

static int write_files(const sandbox_opts_t *o, const char *dir, int chown_to, cu_error_t *err) {
    for (size_t i = 0; i < o->nfiles; i++) {
        const sandbox_file_t *f = &o->files[i];
        if (!valid_name(f->name))
            return cu_error_set(err, CU_EINVAL, "sandbox file name '%s' must be a plain name",
                                f->name ? f->name : "(null)");
        char path[4096];
        if (cu_format(path, sizeof path, err, "%s/%s", dir, f->name)) return err->code;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f->executable ? 0755 : 0644);
        if (fd < 0) return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
        size_t off = 0;
        while (off < f->len) {
            ssize_t w = write(fd, f->data + off, f->len - off);
            if (w <= 0) {
                close(fd);
                return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
            }
            off += (size_t)w;
        }
        if (chown_to && fchown(fd, o->run_uid, o->run_gid) != 0) {
            close(fd);
            return cu_error_set(err, CU_EIO, "%s: chown: %s", path, strerror(errno));
        }
        close(fd);
    }
    return CU_OK;
}

static char *find_exe(const char *name) {
    if (strchr(name, '/')) return strdup(name);
    char path[4096];
    const char *p = SANDBOX_PATH;
    while (*p) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/%s", (int)n, p, name);
        if (access(path, X_OK) == 0) return strdup(path);
        p += n + (p[n] == ':');
    }
    return NULL;
}

typedef struct {
    char *buf;
    size_t len, cap, limit;
    int truncated;
} capture_t;

static void capture_read(capture_t *c, int fd, int *open_flag) {
    char tmp[16384];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        *open_flag = 0;
        return;
    }
    size_t keep = (size_t)n;
    if (c->len + keep > c->limit) {
        keep = c->limit - c->len;
        c->truncated = 1;
    }
    if (keep) {
        memcpy(c->buf + c->len, tmp, keep);
        c->len += keep;
    }
}

int sandbox_run(const sandbox_opts_t *opts, sandbox_result_t *res, cu_error_t *err) {
    memset(res, 0, sizeof *res);
    if (!opts || !opts->argv || !opts->argv[0])
        return cu_error_set(err, CU_EINVAL, "sandbox: no command given");
    const sandbox_opts_t *o = opts;
    int root = geteuid() == 0;
    int rc = CU_OK;
    char dir[4096];
    char *exe = NULL;
    char **envp = NULL;
    struct sock_fprog prog = {0};
    int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1}, in_fd = -1;
    capture_t cap_out = {0}, cap_err = {0};
    int made_dir = 0;

    if (cu_format(dir, sizeof dir, err, "%s/cu-sandbox-XXXXXX",
                  o->tmp_parent ? o->tmp_parent : "/tmp"))
        return err->code;
    if (!mkdtemp(dir))
        return cu_error_set(err, CU_EIO, "sandbox: mkdtemp %s: %s", dir, strerror(errno));
    made_dir = 1;
    if (root && !(o->disable & SANDBOX_UID_DROP) && chown(dir, o->run_uid, o->run_gid) != 0) {
        rc = cu_error_set(err, CU_EIO, "sandbox: chown %s: %s", dir, strerror(errno));
        goto done;
    }
    if ((rc = write_files(o, dir, root && !(o->disable & SANDBOX_UID_DROP), err))) goto done;
    exe = find_exe(o->argv[0]);
    if (!exe) {
        rc =
            cu_error_set(err, CU_EINVAL, "sandbox: '%s' not found in %s", o->argv[0], SANDBOX_PATH);
        goto done;
    }
    /* the clean environment */
    size_t nenv = 0;
    while (o->env && o->env[nenv]) nenv++;
    envp = calloc(nenv + 6, sizeof *envp);
    if (!envp) {
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    size_t k = 0;
    if (asprintf(&envp[k++], "PATH=%s", SANDBOX_PATH) < 0 ||
        asprintf(&envp[k++], "HOME=%s", dir) < 0 || asprintf(&envp[k++], "TMPDIR=%s", dir) < 0 ||
        asprintf(&envp[k++], "LANG=C.UTF-8") < 0) {
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nenv; i++) {
        envp[k] = strdup(o->env[i]);
        if (!envp[k++]) {
            rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
            goto done;
        }
    }
    if (!(o->disable & SANDBOX_SECCOMP) && (rc = build_seccomp(&prog, err))) goto done;
    if (o->stdin_data) {
        in_fd = memfd_create("cu-sandbox-stdin", MFD_CLOEXEC);
        if (in_fd < 0 || write(in_fd, o->stdin_data, o->stdin_len) != (ssize_t)o->stdin_len ||
            lseek(in_fd, 0, SEEK_SET) != 0) {
            rc = cu_error_set(err, CU_EIO, "sandbox: stdin: %s", strerror(errno));
            goto done;
        }
    } else {
        in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (in_fd < 0 || pipe2(out_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC) ||
        pipe2(rep_p, O_CLOEXEC)) {
        rc = cu_error_set(err, CU_EIO, "sandbox: pipes: %s", strerror(errno));
        goto done;
    }
    cap_out.limit = cap_err.limit = o->max_output;
    cap_out.buf = malloc(o->max_output + 1);
    cap_err.buf = malloc(o->max_output + 1);
    if (!cap_out.buf || !cap_err.buf) {
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    child_t c = {.o = o,
                 .dir = dir,
                 .exe = exe,
                 .argv = (char *const *)o->argv,
                 .envp = envp,
                 .prog = prog.filter ? &prog : NULL,
                 .out_w = out_p[1],
                 .err_w = err_p[1],
                 .in_fd = in_fd,
                 .rep_w = rep_p[1],
                 .root = root};
    snprintf(c.uid_map, sizeof c.uid_map, "%u %u 1\n", (unsigned)geteuid(), (unsigned)geteuid());
    snprintf(c.gid_map, sizeof c.gid_map, "%u %u 1\n", (unsigned)getegid(), (unsigned)getegid());

    double t0 = cu_now();
    pid_t pid = fork();
    if (pid < 0) {
        rc = cu_error_set(err, CU_EIO, "sandbox: fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) {
        /* the pipes' read ends are close-on-exec; the children never exec them */
        close(out_p[0]);
        close(err_p[0]);
        close(rep_p[0]);
        run_setup(&c);
    }
    close(out_p[1]);
    close(err_p[1]);
    close(rep_p[1]);
    out_p[1] = err_p[1] = rep_p[1] = -1;

    int out_open = 1, err_open = 1, rep_open = 1, reaped = 0, status = 0, have_status = 0;
    int exec_errno = 0;
    unsigned applied = 0;
    struct rusage ru = {0};
    double deadline = t0 + (o->timeout_s > 0 ? o->timeout_s : 10);
    double drain_until = 0;
    while (out_open || err_open || rep_open || !reaped) {
        double now = cu_now();
        if (!res->timed_out && !reaped && now >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            res->timed_out = 1;
        }
        if (!reaped) {
            int st;
            pid_t w = wait4(pid, &st, WNOHANG, &ru);
            if (w == pid) {
                reaped = 1;
                if (!have_status) status = st;
                /* whatever is left of the group goes with it */
                kill(-pid, SIGKILL);
                drain_until = cu_now() + 2.0;
            }
        }
        if (reaped && drain_until && cu_now() > drain_until) break;
        struct pollfd pf[3];
        int n = 0;
        if (out_open) pf[n++] = (struct pollfd){out_p[0], POLLIN, 0};
        if (err_open) pf[n++] = (struct pollfd){err_p[0], POLLIN, 0};
        if (rep_open) pf[n++] = (struct pollfd){rep_p[0], POLLIN, 0};
        if (n == 0) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (poll(pf, (nfds_t)n, 10) <= 0) continue;
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (pf[i].fd == out_p[0])
                capture_read(&cap_out, out_p[0], &out_open);
            else if (pf[i].fd == err_p[0])
                capture_read(&cap_err, err_p[0], &err_open);
            else {
                msg_t m;
                ssize_t r = read(rep_p[0], &m, sizeof m);
                if (r == (ssize_t)sizeof m) {
                    if (m.kind == MSG_APPLIED)
                        applied |= (unsigned)m.value;
                    else if (m.kind == MSG_EXEC_ERRNO)
                        exec_errno = m.value;
                    else if (m.kind == MSG_STATUS) {
                        status = m.value;
                        have_status = 1;
                    }
                } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                    rep_open = 0;
                }
            }
        }
    }
    if (!reaped) {
        kill(-pid, SIGKILL);
        wait4(pid, &status, 0, &ru);
    }
    res->wall_s = cu_now() - t0;
    res->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    res->applied = applied;
    if (res->timed_out) {
        res->signaled = 1;
        res->term_signal = SIGKILL;
    } else if (exec_errno) {
        res->exec_failed = 1;
        res->exited = 1;
        res->exit_code = 127;
    } else if (WIFEXITED(status)) {
        res->exited = 1;
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->signaled = 1;
        res->term_signal = WTERMSIG(status);
    }
    cap_out.buf[cap_out.len] = '\0';
    cap_err.buf[cap_err.len] = '\0';
    res->out = cap_out.buf;
    res->out_len = cap_out.len;
    res->out_truncated = cap_out.truncated;
    res->err = cap_err.buf;
    res->err_len = cap_err.len;
    res->err_truncated = cap_err.truncated;
    cap_out.buf = cap_err.buf = NULL;
    unsigned missing = o->require & ~applied & ~o->disable;
    if (missing && !res->timed_out) {
        char names[160];
        sandbox_applied_string(missing, names, sizeof names);
        rc = cu_error_set(err, CU_EINVAL, "sandbox: required isolation not available here: %s%s%s",
                          names, exec_errno ? "; " : "", exec_errno ? strerror(exec_errno) : "");
        sandbox_result_free(res);
    }
done:
    if (made_dir) remove_tree(dir);
    free(cap_out.buf);
    free(cap_err.buf);
    free(prog.filter);
    for (int i = 0; i < 2; i++) {
        if (out_p[i] >= 0) close(out_p[i]);
        if (err_p[i] >= 0) close(err_p[i]);
        if (rep_p[i] >= 0) close(rep_p[i]);
    }
    if (in_fd >= 0) close(in_fd);
    if (envp)
        for (size_t i = 0; envp[i]; i++) free(envp[i]);
    free(envp);
    free(exe);
    return rc;
}
