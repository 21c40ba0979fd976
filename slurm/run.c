/*
 * Runs one of Slurm's commands with an argv (fork/exec, no shell), collects
 * its stdout and stderr, and reports how it ended. Both pipes are read with
 * poll() so a command that fills one while we wait on the other cannot
 * deadlock. With a timeout, a command that has not finished in time is
 * killed (a hung slurmctld must not hang a service that asked).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slurm/slurm.h"

typedef struct {
    char *buf;
    size_t len, cap;
} grow_t;

static int grow_read(grow_t *g, int fd) {
    if (g->len + 4097 > g->cap) {
        size_t cap = g->cap * 2 + 8192;
        char *b = realloc(g->buf, cap);
        if (!b) return -1;
        g->buf = b;
        g->cap = cap;
    }
    ssize_t n = read(fd, g->buf + g->len, 4096);
    if (n > 0) g->len += (size_t)n;
    g->buf[g->len] = '\0';
    return (int)n;
}

/* In the child: stdout/stderr onto the pipes, then exec; 127 if exec fails. */
static void child_exec(const char *const argv[], int out_fd, int err_fd) {
    /* a service caller may block or ignore signals; the command must not
     * inherit that */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execvp(argv[0], (char *const *)argv);
    dprintf(2, "%s: %s", argv[0], strerror(errno));
    _exit(127);
}

int slurm_run(const char *const argv[], char **out, char **errtext, int *status, cu_error_t *err) {
    return slurm_run_timeout(argv, 0, out, errtext, status, err);
}

int slurm_run_timeout(const char *const argv[], double timeout_s, char **out, char **errtext,
                      int *status, cu_error_t *err) {
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) return cu_error_set(err, CU_EIO, "pipe: %s", strerror(errno));
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        return cu_error_set(err, CU_EIO, "pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return cu_error_set(err, CU_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) child_exec(argv, po[1], pe[1]);
    close(po[1]);
    close(pe[1]);
    grow_t go = {0}, ge = {0};
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2, oom = 0, killed = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (open_fds > 0) {
        int wait_ms = -1;
        if (timeout_s > 0) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            double left = timeout_s - (double)(t.tv_sec - t0.tv_sec) -
                          (double)(t.tv_nsec - t0.tv_nsec) * 1e-9;
            if (left <= 0) {
                /* the command hangs (e.g. slurmctld does not answer): stop it
                 * and its output pipes close */
                if (!killed) kill(pid, SIGKILL);
                killed = 1;
                wait_ms = 100;
            } else {
                wait_ms = (int)(left * 1000) + 1;
            }
        }
        int pr = poll(fds, 2, wait_ms);
        if (pr < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int n = grow_read(i == 0 ? &go : &ge, fds[i].fd);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                if (n < 0 && !(i == 0 ? go.buf : ge.buf)) oom = 1;
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (killed) {
        free(go.buf);
        free(ge.buf);
        return cu_error_set(err, CU_EIO, "%s did not answer within %g s", argv[0], timeout_s);
    }
    const char *e = ge.buf ? ge.buf : "";
    if (*status == 127 && strstr(e, strerror(ENOENT))) {
        int rc =
            cu_error_set(err, CU_EIO, "%s: not found; is Slurm installed and in PATH?", argv[0]);
        free(go.buf);
        free(ge.buf);
        return rc;
    }
    if (oom) {
        free(go.buf);
        free(ge.buf);
        return cu_error_set(err, CU_ENOMEM, "out of memory reading %s's output", argv[0]);
    }
    if (out)
        *out = go.buf ? go.buf : strdup("");
    else
        free(go.buf);
    if (errtext)
        *errtext = ge.buf ? ge.buf : strdup("");
    else
        free(ge.buf);
    return CU_OK;
}
