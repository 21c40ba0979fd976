/*
 * The sandbox (see sandbox.h). Three processes:
 *
 *   parent ── makes the run's cgroup, then fork ──►
 *                      setup: joins the cgroup, setsid, unshare(namespaces),
 *                        │  uid/gid maps
 *                        │  fork (first process of the new PID namespace)
 *                        ▼
 *                      waiter: builds the run's root (a tmpfs with the
 *                        │  system directories bound read-only, /tmp a
 *                        │  size-capped tmpfs, /dev nodes, a fresh /proc),
 *                        │  pivot_root into it, writes the files, then
 *                        │  fork
 *                        ▼
 *                      command: rlimits, drop uid, close fds, seccomp,
 *                               execve
 *
 * The waiter reaps the command and reports its wait status; when the waiter
 * exits as PID 1 of the namespace, the kernel kills whatever the command
 * left behind, and the parent kills whatever is still in the cgroup before
 * removing it. Without a PID namespace the parent kills the process group
 * (setup called setsid, and the seccomp filter refuses setsid and setpgid,
 * so nothing leaves the group). The parent collects stdout and stderr
 * through pipes, bounded, and enforces the wall-clock timeout with SIGKILL
 * to the group. A report pipe carries small fixed-size messages from the
 * children: which layers applied, an errno of a failed step, the command's
 * status.
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
#include "safety/sandbox_cg.h"

#define SANDBOX_PATH "/usr/local/bin:/usr/bin:/bin"

enum {
    MSG_APPLIED = 1,
    MSG_EXEC_ERRNO = 2,
    MSG_STATUS = 3,
    MSG_SETUP_STEP = 4,
    MSG_SETUP_ERRNO = 5
};

/* The steps of building the run, named in the error when one fails. */
static const char *const STEPS[] = {"",
                                    "joining the cgroup",
                                    "making / private",
                                    "mounting the root tmpfs",
                                    "binding a system directory",
                                    "binding a read-only path",
                                    "hiding a path",
                                    "mounting /tmp",
                                    "making /dev",
                                    "mounting /proc",
                                    "pivot_root",
                                    "making the working directory",
                                    "writing a file"};
enum {
    STEP_CGROUP = 1,
    STEP_PRIVATE,
    STEP_ROOT,
    STEP_SYSDIR,
    STEP_RO_PATH,
    STEP_HIDE,
    STEP_TMP,
    STEP_DEV,
    STEP_PROC,
    STEP_PIVOT,
    STEP_WORKDIR,
    STEP_FILES,
    N_STEPS
};

typedef struct {
    int32_t kind, value;
} msg_t;

void sandbox_opts_init(sandbox_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 10;
    o->cpu_s = 10;
    o->mem_bytes = (size_t)2 << 30;
    o->fsize_bytes = (size_t)64 << 20;
    o->disk_bytes = (size_t)64 << 20;
    o->cpus = 1;
    o->nofile = 64;
    o->nproc = 64;
    o->max_output = (size_t)1 << 20;
    o->require = SANDBOX_SECCOMP | SANDBOX_CGROUP | SANDBOX_RO_ROOT | SANDBOX_TMPFS;
    o->run_uid = 65534;
    o->run_gid = 65534;
    o->uid_base = 200000;
}

void sandbox_result_free(sandbox_result_t *r) {
    if (!r) return;
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

void sandbox_applied_string(unsigned applied, char *buf, size_t cap) {
    static const char *const NAMES[] = {"netns",    "mountns", "pidns",   "userns",
                                        "ipcns",    "ro_root", "seccomp", "rlimits",
                                        "uid_drop", "cgroup",  "tmpfs"};
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < 11; i++)
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
    /* no socket of any family: a named AF_UNIX socket reaches host services by
     * path (or by abstract name); unnamed AF_UNIX pairs stay */
    rc |= seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 0);
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

/* dst = a + b (async-signal-safe); 0, or -1 when it does not fit */
static int join2(char *dst, size_t cap, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 1 > cap) return -1;
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return 0;
}

typedef struct {
    const sandbox_opts_t *o;
    const char *dir;  /* the host directory: the new root's mount point, or (without a mount
                         namespace) the working directory itself */
    const char *work; /* the working directory inside the new root, "/tmp/<name>" */
    const char *exe;
    char *const *argv;
    char *const *envp;      /* for the new root */
    char *const *envp_host; /* without one */
    struct sock_fprog *prog;
    const sb_cg_t *cg;
    char *const *ro_paths;   /* resolved */
    char *const *hide_paths; /* resolved */
    int out_w, err_w, in_fd, rep_w;
    int root;
    uid_t uid;
    gid_t gid;
    char uid_map[64], gid_map[64];
    char tmp_opts[64]; /* mount options of /tmp */
} child_t;

static void __attribute__((noreturn)) fail_step(child_t *c, int step, int e) {
    send_msg(c->rep_w, MSG_SETUP_STEP, step);
    send_msg(c->rep_w, MSG_SETUP_ERRNO, e);
    _exit(126);
}

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

/* Makes a mount point for src at dst: a directory, or an empty file. */
static int make_point(const char *src, const char *dst) {
    struct stat sb;
    if (stat(src, &sb) != 0) return -1;
    if (S_ISDIR(sb.st_mode)) return mkdir(dst, 0755) == 0 || errno == EEXIST ? 0 : -1;
    int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* Binds src at dst read-only (recursively), no setuid, no devices. */
static int bind_ro(const char *src, const char *dst) {
    if (make_point(src, dst) != 0) return -1;
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) return -1;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (syscall(SYS_mount_setattr, AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof attr) == 0) return 0;
    return mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}

/* mkdir -p of path's parents below root (they land on the root tmpfs). */
static int make_parents(const char *root, const char *path) {
    char buf[4096];
    if (join2(buf, sizeof buf, root, path) != 0) return -1;
    size_t rl = strlen(root);
    for (char *p = buf + rl + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = mkdir(buf, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

static int write_all(int fd, const char *data, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}

/* The run's root at c->dir, then pivot_root into it. Fails the run (the
 * parent names the step) rather than go on half-built. */
static void build_root(child_t *c, unsigned applied) {
    const char *R = c->dir;
    char dst[4096];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail_step(c, STEP_PRIVATE, errno);
    if (mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755") != 0)
        fail_step(c, STEP_ROOT, errno);
    /* the system directories (merged-/usr links stay links) */
    static const char *const SYS[] = {"/usr",   "/bin",   "/sbin",   "/lib",
                                      "/lib32", "/lib64", "/libx32", "/etc"};
    for (size_t i = 0; i < sizeof SYS / sizeof SYS[0]; i++) {
        struct stat sb;
        if (lstat(SYS[i], &sb) != 0) continue;
        if (join2(dst, sizeof dst, R, SYS[i]) != 0) fail_step(c, STEP_SYSDIR, ENAMETOOLONG);
        if (S_ISLNK(sb.st_mode)) {
            char target[4096];
            ssize_t n = readlink(SYS[i], target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            if (symlink(target, dst) != 0) fail_step(c, STEP_SYSDIR, errno);
        } else if (S_ISDIR(sb.st_mode) && bind_ro(SYS[i], dst) != 0) {
            fail_step(c, STEP_SYSDIR, errno);
        }
    }
    /* /tmp: the run's only writable place, capped */
    if (join2(dst, sizeof dst, R, "/tmp") != 0 || mkdir(dst, 01777) != 0 ||
        mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, c->tmp_opts) != 0)
        fail_step(c, STEP_TMP, errno);
    /* the caller's read-only paths (a path already visible stays as it is) */
    for (size_t i = 0; c->ro_paths && c->ro_paths[i]; i++) {
        struct stat sb;
        if (join2(dst, sizeof dst, R, c->ro_paths[i]) != 0)
            fail_step(c, STEP_RO_PATH, ENAMETOOLONG);
        if (lstat(dst, &sb) == 0 || stat(c->ro_paths[i], &sb) != 0) continue; /* shown / absent */
        if (make_parents(R, c->ro_paths[i]) != 0 || bind_ro(c->ro_paths[i], dst) != 0)
            fail_step(c, STEP_RO_PATH, errno);
    }
    /* hidden: an empty unreadable file or directory over each that is visible */
    char hidden_file[4096], hidden_dir[4096];
    if (join2(hidden_file, sizeof hidden_file, R, "/.hidden") != 0 ||
        join2(hidden_dir, sizeof hidden_dir, R, "/.hidden.d") != 0)
        fail_step(c, STEP_HIDE, ENAMETOOLONG);
    int hf = open(hidden_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0);
    if (hf < 0 || mkdir(hidden_dir, 0) != 0) fail_step(c, STEP_HIDE, errno);
    close(hf);
    for (size_t i = 0; c->hide_paths && c->hide_paths[i]; i++) {
        struct stat sb;
        if (join2(dst, sizeof dst, R, c->hide_paths[i]) != 0) fail_step(c, STEP_HIDE, ENAMETOOLONG);
        if (lstat(dst, &sb) != 0 || S_ISLNK(sb.st_mode)) continue; /* not visible */
        const char *over = S_ISDIR(sb.st_mode) ? hidden_dir : hidden_file;
        if (mount(over, dst, NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) !=
                0)
            fail_step(c, STEP_HIDE, errno);
    }
    /* /dev: a few nodes bound from the host, the usual links */
    if (join2(dst, sizeof dst, R, "/dev") != 0 || mkdir(dst, 0755) != 0 ||
        mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755") != 0)
        fail_step(c, STEP_DEV, errno);
    static const char *const DEV[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                      "/dev/urandom"};
    for (size_t i = 0; i < sizeof DEV / sizeof DEV[0]; i++) {
        if (join2(dst, sizeof dst, R, DEV[i]) != 0) fail_step(c, STEP_DEV, ENAMETOOLONG);
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) fail_step(c, STEP_DEV, errno);
        close(fd);
        if (mount(DEV[i], dst, NULL, MS_BIND, NULL) != 0) fail_step(c, STEP_DEV, errno);
    }
    static const char *const LINKS[][2] = {{"/dev/fd", "/proc/self/fd"},
                                           {"/dev/stdin", "/proc/self/fd/0"},
                                           {"/dev/stdout", "/proc/self/fd/1"},
                                           {"/dev/stderr", "/proc/self/fd/2"},
                                           {"/dev/shm", "/tmp"}};
    for (size_t i = 0; i < sizeof LINKS / sizeof LINKS[0]; i++)
        if (join2(dst, sizeof dst, R, LINKS[i][0]) != 0 || symlink(LINKS[i][1], dst) != 0)
            fail_step(c, STEP_DEV, errno);
    if (join2(dst, sizeof dst, R, "/dev") != 0 ||
        mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) != 0)
        fail_step(c, STEP_DEV, errno);
    /* a /proc of the run's own PID namespace; none without one */
    if (join2(dst, sizeof dst, R, "/proc") != 0 || mkdir(dst, 0555) != 0)
        fail_step(c, STEP_PROC, errno);
    if ((applied & SANDBOX_PIDNS) &&
        mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        fail_step(c, STEP_PROC, errno);
    /* into it; the old root goes */
    if (chdir(R) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
        chdir("/") != 0)
        fail_step(c, STEP_PIVOT, errno);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        fail_step(c, STEP_PIVOT, errno);
}

/* The working directory (made when it is in the new root), the files. */
static void enter_workdir(child_t *c, int in_new_root) {
    const char *w = in_new_root ? c->work : c->dir;
    if (in_new_root) {
        if (mkdir(w, 0700) != 0) fail_step(c, STEP_WORKDIR, errno);
        if (c->root && !(c->o->disable & SANDBOX_UID_DROP) && chown(w, c->uid, c->gid) != 0)
            fail_step(c, STEP_WORKDIR, errno);
    }
    if (chdir(w) != 0) fail_step(c, STEP_WORKDIR, errno);
    for (size_t i = 0; i < c->o->nfiles; i++) {
        const sandbox_file_t *f = &c->o->files[i];
        int fd =
            open(f->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f->executable ? 0755 : 0644);
        if (fd < 0) fail_step(c, STEP_FILES, errno);
        if (write_all(fd, f->data, f->len) != 0 ||
            (c->root && !(c->o->disable & SANDBOX_UID_DROP) && fchown(fd, c->uid, c->gid) != 0))
            fail_step(c, STEP_FILES, errno ? errno : EIO);
        close(fd);
    }
}

static void set_limit(int res, rlim_t v) {
    if (v == 0 && res != RLIMIT_CORE) v = RLIM_INFINITY; /* 0 = no limit */
    struct rlimit rl = {v, v};
    setrlimit(res, &rl);
}

static void __attribute__((noreturn)) run_command(child_t *c, int new_root) {
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
        size_t as = o->as_bytes == SIZE_MAX ? 0 : o->as_bytes ? o->as_bytes : o->mem_bytes;
        set_limit(RLIMIT_AS, as);
        set_limit(RLIMIT_FSIZE, o->fsize_bytes);
        set_limit(RLIMIT_NOFILE, o->nofile);
        /* per uid: only without the cgroup's per-run pids.max */
        set_limit(RLIMIT_NPROC, c->cg ? 0 : o->nproc);
        set_limit(RLIMIT_CORE, 0);
        applied |= SANDBOX_RLIMITS;
    }
    if (c->root && !(o->disable & SANDBOX_UID_DROP)) {
        if (setgroups(0, NULL) != 0 || setresgid(c->gid, c->gid, c->gid) != 0 ||
            setresuid(c->uid, c->uid, c->uid) != 0)
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
    execve(c->exe, c->argv, new_root ? c->envp : c->envp_host);
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
    if (c->cg && sb_cg_join(c->cg) != 0) fail_step(c, STEP_CGROUP, errno);
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
    int new_root = (applied & SANDBOX_MOUNTNS) && !(c->o->disable & SANDBOX_RO_ROOT);
    if (new_root) {
        build_root(c, applied);
        applied |= SANDBOX_RO_ROOT | SANDBOX_TMPFS;
    } else if (applied & SANDBOX_MOUNTNS) {
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    }
    enter_workdir(c, new_root);
    send_msg(c->rep_w, MSG_APPLIED, (int)applied);
    pid_t cmd = fork();
    if (cmd < 0) _exit(125);
    if (cmd == 0) run_command(c, new_root);
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

static void free_list(char **l) {
    if (l)
        for (size_t i = 0; l[i]; i++) free(l[i]);
    free(l);
}

/* Resolved copies of paths (a path that does not exist is kept as written
 * when absolute, left out when relative: nothing there to show or hide).
 * NULL-terminated; NULL when out of memory. */
static char **resolve_paths(const char *const *paths, cu_error_t *err) {
    size_t n = 0;
    while (paths && paths[n]) n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) {
        cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!paths[i][0]) continue;
        out[k] = realpath(paths[i], NULL);
        if (!out[k] && paths[i][0] != '/') continue;
        if (!out[k]) out[k] = strdup(paths[i]);
        if (!out[k++]) {
            cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
            free_list(out);
            return NULL;
        }
    }
    return out;
}

/* The clean environment, with the working directory as HOME and TMPDIR. */
static char **make_env(const sandbox_opts_t *o, const char *work) {
    size_t nenv = 0;
    while (o->env && o->env[nenv]) nenv++;
    char **envp = calloc(nenv + 6, sizeof *envp);
    if (!envp) return NULL;
    size_t k = 0;
    if (asprintf(&envp[k++], "PATH=%s", SANDBOX_PATH) < 0 ||
        asprintf(&envp[k++], "HOME=%s", work) < 0 || asprintf(&envp[k++], "TMPDIR=%s", work) < 0 ||
        asprintf(&envp[k++], "LANG=C.UTF-8") < 0) {
        envp[k - 1] = NULL;
        free_list(envp);
        return NULL;
    }
    for (size_t i = 0; i < nenv; i++) {
        envp[k] = strdup(o->env[i]);
        if (!envp[k++]) {
            free_list(envp);
            return NULL;
        }
    }
    return envp;
}

int sandbox_cgroups_available(const char *cgroup_parent, char *why, size_t cap) {
    sb_cg_limits_t lim = {
        .mem_bytes = (size_t)64 << 20, .pids = 8, .cpus = 1, .parent = cgroup_parent};
    sb_cg_t cg;
    if (sb_cg_create(&lim, &cg, why, cap) != 0) return 0;
    snprintf(why, cap, "cgroup v%d", cg.version);
    sb_cg_destroy(&cg);
    return 1;
}

int sandbox_run(const sandbox_opts_t *opts, sandbox_result_t *res, cu_error_t *err) {
    memset(res, 0, sizeof *res);
    if (!opts || !opts->argv || !opts->argv[0])
        return cu_error_set(err, CU_EINVAL, "sandbox: no command given");
    const sandbox_opts_t *o = opts;
    int root = geteuid() == 0;
    int rc = CU_OK;
    char dir[4096], work[4096];
    char *exe = NULL;
    char **envp = NULL, **envp_host = NULL, **ro = NULL, **hide = NULL;
    struct sock_fprog prog = {0};
    int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1}, in_fd = -1;
    capture_t cap_out = {0}, cap_err = {0};
    int made_dir = 0;
    sb_cg_t cg = {.version = 0};
    for (int i = 0; i < SB_CG_MAX; i++) cg.procs_fd[i] = -1;
    int have_cg = 0;

    unsigned off = o->disable;
    if (off & (SANDBOX_MOUNTNS | SANDBOX_RO_ROOT)) off |= SANDBOX_RO_ROOT | SANDBOX_TMPFS;
    unsigned require = o->require & ~off;
    if (o->allow_rlimits_only) require &= ~(SANDBOX_CGROUP | SANDBOX_RO_ROOT | SANDBOX_TMPFS);

    for (size_t i = 0; i < o->nfiles; i++)
        if (!valid_name(o->files[i].name))
            return cu_error_set(err, CU_EINVAL, "sandbox file name '%s' must be a plain name",
                                o->files[i].name ? o->files[i].name : "(null)");
    exe = find_exe(o->argv[0]);
    if (!exe)
        return cu_error_set(err, CU_EINVAL, "sandbox: '%s' not found in %s", o->argv[0],
                            SANDBOX_PATH);
    /* the run's cgroup first: its slot numbers the run's uid */
    if (!(off & SANDBOX_CGROUP)) {
        sb_cg_limits_t lim = {.mem_bytes = o->mem_bytes,
                              .pids = o->nproc ? o->nproc + 2 : 0, /* + setup and waiter */
                              .cpus = o->cpus,
                              .parent = o->cgroup_parent};
        char why[1200];
        if (sb_cg_create(&lim, &cg, why, sizeof why) == 0) {
            have_cg = 1;
        } else if (require & SANDBOX_CGROUP) {
            rc = cu_error_set(err, CU_EPOLICY,
                              "sandbox: refused: no cgroup for the run here (%s); without one, "
                              "memory held in memfd/shmem and the process count escape the "
                              "rlimits. Delegate a cgroup subtree to the service, or accept "
                              "rlimits only (sandbox.allow_rlimits_only: true)",
                              why);
            goto done;
        }
    }
    uid_t uid = o->run_uid;
    gid_t gid = o->run_gid;
    if (have_cg && o->uid_base) {
        uid = o->uid_base + (uid_t)cg.slot;
        gid = (gid_t)(o->uid_base + (uid_t)cg.slot);
    }
    if (cu_format(dir, sizeof dir, err, "%s/cu-sandbox-XXXXXX",
                  o->tmp_parent ? o->tmp_parent : "/tmp")) {
        rc = err->code;
        goto done;
    }
    if (!mkdtemp(dir)) {
        rc = cu_error_set(err, CU_EIO, "sandbox: mkdtemp %s: %s", dir, strerror(errno));
        goto done;
    }
    made_dir = 1;
    /* (the working directory itself when there is no mount namespace) */
    if (root && !(o->disable & SANDBOX_UID_DROP) && chown(dir, uid, gid) != 0) {
        rc = cu_error_set(err, CU_EIO, "sandbox: chown %s: %s", dir, strerror(errno));
        goto done;
    }
    snprintf(work, sizeof work, "/tmp/%s", strrchr(dir, '/') + 1);
    envp = make_env(o, work);
    envp_host = make_env(o, dir);
    if (!envp || !envp_host) {
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    static const char *const HIDE_ALWAYS[] = {"/etc/ssl/private", NULL};
    size_t nh = 0, nx = 0;
    while (o->hide_paths && o->hide_paths[nh]) nh++;
    const char **hide_all = calloc(nh + 2, sizeof *hide_all);
    if (!hide_all) {
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nh; i++) hide_all[nx++] = o->hide_paths[i];
    hide_all[nx++] = HIDE_ALWAYS[0];
    hide_all[nx] = NULL;
    /* read-only inside: the caller's paths and the program itself */
    size_t nr = 0;
    while (o->ro_paths && o->ro_paths[nr]) nr++;
    const char **ro_all = calloc(nr + 2, sizeof *ro_all);
    if (!ro_all) {
        free(hide_all);
        rc = cu_error_set(err, CU_ENOMEM, "sandbox: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nr; i++) ro_all[i] = o->ro_paths[i];
    ro_all[nr] = exe;
    ro = resolve_paths(ro_all, err);
    free(ro_all);
    hide = ro ? resolve_paths(hide_all, err) : NULL;
    free(hide_all);
    if (!ro || !hide) {
        rc = err->code;
        goto done;
    }
    if (!(off & SANDBOX_SECCOMP) && (rc = build_seccomp(&prog, err))) goto done;
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
                 .work = work,
                 .exe = exe,
                 .argv = (char *const *)o->argv,
                 .envp = envp,
                 .envp_host = envp_host,
                 .prog = prog.filter ? &prog : NULL,
                 .cg = have_cg ? &cg : NULL,
                 .ro_paths = ro,
                 .hide_paths = hide,
                 .out_w = out_p[1],
                 .err_w = err_p[1],
                 .in_fd = in_fd,
                 .rep_w = rep_p[1],
                 .root = root,
                 .uid = uid,
                 .gid = gid};
    snprintf(c.uid_map, sizeof c.uid_map, "%u %u 1\n", (unsigned)geteuid(), (unsigned)geteuid());
    snprintf(c.gid_map, sizeof c.gid_map, "%u %u 1\n", (unsigned)getegid(), (unsigned)getegid());
    size_t disk = o->disk_bytes ? o->disk_bytes : o->mem_bytes;
    snprintf(c.tmp_opts, sizeof c.tmp_opts, "size=%zu,nr_inodes=16384,mode=1777",
             disk ? disk : (size_t)64 << 20);

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
    int exec_errno = 0, setup_step = 0, setup_errno = 0;
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
                    } else if (m.kind == MSG_SETUP_STEP)
                        setup_step = m.value;
                    else if (m.kind == MSG_SETUP_ERRNO)
                        setup_errno = m.value;
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
    if (have_cg) {
        /* every process of the run, reaped or not, and none of the parent's */
        double cg_cpu = sb_cg_cpu_s(&cg);
        if (cg_cpu >= 0) res->cpu_s = cg_cpu;
        res->oom_kills = sb_cg_oom_kills(&cg);
        res->cgroup_version = cg.version;
        if (setup_step != STEP_CGROUP) applied |= SANDBOX_CGROUP;
    }
    res->applied = applied;
    res->uid = (applied & SANDBOX_UID_DROP) ? (unsigned)uid : (unsigned)geteuid();
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
    unsigned missing = require & ~applied;
    if (setup_step > 0 && setup_step < N_STEPS && !res->timed_out) {
        rc = cu_error_set(err, setup_step == STEP_FILES ? CU_EIO : CU_EINVAL,
                          "sandbox: %s failed: %s", STEPS[setup_step], strerror(setup_errno));
        sandbox_result_free(res);
    } else if (missing && !res->timed_out) {
        char names[160];
        sandbox_applied_string(missing, names, sizeof names);
        rc = cu_error_set(err, CU_EPOLICY, "sandbox: required isolation not available here: %s%s%s",
                          names, exec_errno ? "; " : "", exec_errno ? strerror(exec_errno) : "");
        sandbox_result_free(res);
    }
done:
    if (have_cg) sb_cg_destroy(&cg);
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
    free_list(envp);
    free_list(envp_host);
    free_list(ro);
    free_list(hide);
    free(exe);
    return rc;
}
