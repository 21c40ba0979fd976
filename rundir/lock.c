/*
 * The run directory's lock (see rundir.h). flock(2) on <dir>/lock: the
 * kernel drops it when the holder dies however it dies, and on NFS v4 and
 * Lustre it is seen by every host sharing the file system. The file's text
 * ("pid host start-time") is only for the message that refuses a second
 * writer; the lock itself is the flock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "rundir/rundir.h"

static void read_holder(int fd, char *holder, size_t cap) {
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    long pid = 0;
    char host[256] = "?", since[64] = "?";
    if (sscanf(buf, "%ld %255s %63s", &pid, host, since) >= 1)
        snprintf(holder, cap, "pid %ld on %s since %s", pid, host, since);
    else
        snprintf(holder, cap, "a process that has not written its name yet");
}

int rundir_lock_holder(const char *dir, char *holder, size_t cap) {
    char path[4200];
    holder[0] = '\0';
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = rundir_open_regular(AT_FDCWD, path, O_RDONLY, 0);
    if (fd < 0) return 0;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (held) read_holder(fd, holder, cap);
    close(fd); /* also drops the shared lock just taken */
    return held;
}

int rundir_lock(rundir_t *d, cu_error_t *err) {
    char path[4200];
    int rc = cu_format(path, sizeof path, err, "%s/lock", d->dir);
    if (rc) return rc;
    int fd = rundir_open_regular(AT_FDCWD, path, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return cu_error_set(err, CU_EIO, "cannot open %s: %s", path,
                            errno == EINVAL ? "not a regular file" : strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[400];
        read_holder(fd, holder, sizeof holder);
        close(fd);
        if (e != EWOULDBLOCK)
            return cu_error_set(err, CU_EIO, "cannot lock %s: %s", path, strerror(e));
        return cu_error_set(err, CU_EINVAL,
                            "run directory %s is in use by another codex-train (%s); wait for it "
                            "to end, stop it (codexctl cancel), or give this run another job.name",
                            d->dir, holder);
    }
    char host[256] = "", since[40], text[400];
    gethostname(host, sizeof host - 1);
    rundir_time(rundir_now(), since, sizeof since);
    int n = snprintf(text, sizeof text, "%ld %s %s\n", (long)getpid(), host[0] ? host : "?", since);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return cu_error_set(err, CU_EIO, "cannot write %s: %s", path, strerror(e));
    }
    d->lock_fd = fd;
    return CU_OK;
}

/* 1 when name ends in ".tmp." and digits. */
static int is_tmp_name(const char *name) {
    const char *p = strstr(name, ".tmp.");
    if (!p) return 0;
    while (strstr(p + 1, ".tmp.")) p = strstr(p + 1, ".tmp.");
    p += 5;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

static int remove_tmp_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_tmp_name(e->d_name)) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    return removed;
}

int rundir_remove_stale_tmp(const char *dir) {
    char sub[4200];
    int n = remove_tmp_in(dir);
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    n += remove_tmp_in(sub);
    snprintf(sub, sizeof sub, "%s/ranks", dir);
    return n + remove_tmp_in(sub);
}

int rundir_pid_gone(long pid, const char *host) {
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    if (pid <= 1 || !host || strcmp(host, me) != 0) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void rundir_reserve(rundir_t *d, size_t bytes) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.reserve", d->dir);
    int fd = rundir_open_regular(AT_FDCWD, path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) return;
    if (posix_fallocate(fd, 0, (off_t)bytes) != 0) {
        /* file systems without fallocate: real blocks of zeros */
        char zero[4096] = {0};
        for (size_t done = 0; done < bytes; done += sizeof zero)
            if (write(fd, zero, sizeof zero) != (ssize_t)sizeof zero) break;
    }
    close(fd);
}

void rundir_release_reserve(rundir_t *d) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.reserve", d->dir);
    unlink(path);
}

int rundir_state_lock_at(int dirfd) {
    int fd = rundir_open_regular(dirfd, "state.lock", O_RDWR | O_CREAT, 0644);
    if (fd < 0) return -1;
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 2;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (errno != EWOULDBLOCK || now.tv_sec > end.tv_sec ||
            (now.tv_sec == end.tv_sec && now.tv_nsec > end.tv_nsec))
            break; /* a holder stopped (SIGSTOP) must not stop the others */
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return fd;
}

void rundir_state_unlock(int fd) {
    if (fd >= 0) close(fd);
}
