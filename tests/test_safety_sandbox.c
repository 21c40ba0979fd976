/*
 * The sandbox: the child cannot open a network socket, cannot write outside
 * its private directory, cannot exhaust processes, does not outlive its
 * timeout, sees a clean environment; exit codes, signals, captured and
 * bounded output, stdin and files placed in its directory.
 *
 * The test re-executes itself (`test_safety_sandbox child MODE ...`) as the
 * sandboxed program, so the child's behaviour is plain C, not a shell's.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safety/sandbox.h"

extern char **environ;
static char self[4096];

/* ---- the child's side ---- */

static int child_main(int argc, char **argv) {
    const char *mode = argv[2];
    if (!strcmp(mode, "socket")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) {
            printf("inet:%s\n", strerror(errno));
        } else {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
            inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
            int c = connect(s, (struct sockaddr *)&a, sizeof a);
            printf("inet:ok connect:%s\n", c == 0 ? "ok" : strerror(errno));
        }
        int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
        printf("inet6:%s\n", s6 < 0 ? strerror(errno) : "ok");
        int u = socket(AF_UNIX, SOCK_STREAM, 0);
        printf("unix:%s\n", u < 0 ? strerror(errno) : "ok");
        return 0;
    }
    if (!strcmp(mode, "write")) {
        for (int i = 3; i < argc; i++) {
            int fd = open(argv[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            printf("%s:%s\n", argv[i], fd < 0 ? "denied" : "ok");
            if (fd >= 0) close(fd);
        }
        return 0;
    }
    if (!strcmp(mode, "forkbomb")) {
        int n = 0, e = 0;
        for (int i = 0; i < 100000; i++) {
            pid_t p = fork();
            if (p == 0) {
                pause();
                _exit(0);
            }
            if (p < 0) {
                e = errno;
                break;
            }
            n++;
        }
        printf("forked:%d stopped:%s\n", n, e ? strerror(e) : "never");
        return 0;
    }
    if (!strcmp(mode, "env")) {
        for (char **e = environ; *e; e++) printf("%s\n", *e);
        return 0;
    }
    if (!strcmp(mode, "pid")) {
        char cwd[4096];
        printf("pid:%d uid:%d cwd:%s\n", (int)getpid(), (int)getuid(),
               getcwd(cwd, sizeof cwd) ? cwd : "?");
        return 0;
    }
    if (!strcmp(mode, "spin")) {
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    if (!strcmp(mode, "daemon")) {
        /* leaves a child behind that would outlive the command */
        pid_t p = fork();
        if (p == 0) {
            sleep(60);
            _exit(0);
        }
        printf("left child:%d\n", (int)p);
        return 0;
    }
    return 99;
}

/* ---- the tests ---- */

static const char *CHILD_ENV[] = {"ASAN_OPTIONS=detect_leaks=0", NULL};

static void opts_for(sandbox_opts_t *o, const char **argv) {
    sandbox_opts_init(o);
    o->argv = argv;
    o->env = CHILD_ENV;
    o->timeout_s = 20;
#if defined(__SANITIZE_ADDRESS__)
    o->mem_bytes = 0; /* ASan reserves terabytes of address space */
#endif
}

static int run(sandbox_opts_t *o, sandbox_result_t *r) {
    cu_error_t err = {0};
    int rc = sandbox_run(o, r, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    return rc;
}

static void test_layers_applied(void) {
    const char *argv[] = {self, "child", "pid", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    sandbox_result_t r;
    if (run(&o, &r)) return;
    char names[160];
    sandbox_applied_string(r.applied, names, sizeof names);
    printf("  layers applied here: %s\n  child: %s", names, r.out);
    CHECK(r.applied & SANDBOX_SECCOMP);
    CHECK(r.applied & SANDBOX_RLIMITS);
    CHECK(r.exited && r.exit_code == 0);
    if (r.applied & SANDBOX_PIDNS) CHECK(strstr(r.out, "pid:2 ") != NULL);
    if (r.applied & SANDBOX_UID_DROP) CHECK(strstr(r.out, "uid:65534") != NULL);
    CHECK(strstr(r.out, "cwd:/tmp/cu-sandbox-") != NULL);
    /* the private directory is gone afterwards */
    const char *cwd = strstr(r.out, "cwd:");
    if (cwd) {
        char dir[256];
        snprintf(dir, sizeof dir, "%.*s", (int)strcspn(cwd + 4, "\n"), cwd + 4);
        struct stat sb;
        CHECK(stat(dir, &sb) != 0 && errno == ENOENT);
    }
    sandbox_result_free(&r);
}

static void test_no_network(void) {
    const char *argv[] = {self, "child", "socket", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK_MSG(strstr(r.out, "inet:Operation not permitted") != NULL, "%s", r.out);
    CHECK(strstr(r.out, "inet6:Operation not permitted") != NULL);
    CHECK(strstr(r.out, "unix:ok") != NULL);
    sandbox_result_free(&r);
    /* without the filter the network namespace alone leaves nowhere to connect to */
    o.disable = SANDBOX_SECCOMP;
    o.require = 0;
    if (run(&o, &r)) return;
    if (r.applied & SANDBOX_NETNS)
        CHECK_MSG(strstr(r.out, "inet:ok connect:Network is unreachable") != NULL, "%s", r.out);
    CHECK(!(r.applied & SANDBOX_SECCOMP));
    sandbox_result_free(&r);
}

static void test_no_writes_outside(void) {
    char outside[256], sibling[256];
    snprintf(outside, sizeof outside, "/tmp/cu_sandbox_escape_%d", (int)getpid());
    snprintf(sibling, sizeof sibling, "/var/tmp/cu_sandbox_escape_%d", (int)getpid());
    const char *argv[] = {self,    "child", "write",     "inside.txt",
                          outside, sibling, "../escape", "/etc/cu_sandbox_escape",
                          NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK_MSG(strstr(r.out, "inside.txt:ok") != NULL, "%s", r.out);
    char line[300];
    snprintf(line, sizeof line, "%s:denied", outside);
    CHECK_MSG(strstr(r.out, line) != NULL, "%s", r.out);
    snprintf(line, sizeof line, "%s:denied", sibling);
    CHECK_MSG(strstr(r.out, line) != NULL, "%s", r.out);
    CHECK(strstr(r.out, "../escape:denied") != NULL);
    CHECK(strstr(r.out, "/etc/cu_sandbox_escape:denied") != NULL);
    struct stat sb;
    CHECK(stat(outside, &sb) != 0);
    CHECK(stat(sibling, &sb) != 0);
    CHECK(stat("/tmp/escape", &sb) != 0);
    unlink(outside);
    unlink(sibling);
    sandbox_result_free(&r);
}

static void test_fork_bomb_contained(void) {
    const char *argv[] = {self, "child", "forkbomb", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    o.nproc = 16;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    int forked = -1;
    const char *p = strstr(r.out, "forked:");
    if (p) forked = atoi(p + 7);
    CHECK_MSG(forked >= 0 && forked < 16, "%s", r.out);
    CHECK(strstr(r.out, "stopped:Resource temporarily unavailable") != NULL);
    CHECK(!r.timed_out);
    CHECK(r.wall_s < 10);
    sandbox_result_free(&r);
}

static void test_timeout_kills(void) {
    const char *argv[] = {"sleep", "30", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    o.timeout_s = 0.5;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK(r.timed_out);
    CHECK(r.signaled && r.term_signal == SIGKILL);
    CHECK_MSG(r.wall_s < 3.0, "took %.2f s", r.wall_s);
    sandbox_result_free(&r);
    /* what the command leaves behind dies with it */
    const char *argv2[] = {self, "child", "daemon", NULL};
    opts_for(&o, argv2);
    if (run(&o, &r)) return;
    CHECK(r.exited && r.exit_code == 0 && !r.timed_out);
    CHECK_MSG(r.wall_s < 5.0, "took %.2f s", r.wall_s);
    sandbox_result_free(&r);
}

/* With the namespaces switched off, the filter, the limits and the process
 * group still hold; what is lost is recorded in applied. */
static void test_degraded(void) {
    const unsigned off = SANDBOX_PIDNS | SANDBOX_MOUNTNS | SANDBOX_NETNS | SANDBOX_IPCNS |
                         SANDBOX_RO_ROOT | SANDBOX_USERNS;
    const char *argv[] = {self, "child", "socket", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    o.disable = off;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK(!(r.applied & off));
    CHECK(r.applied & SANDBOX_SECCOMP);
    CHECK(strstr(r.out, "inet:Operation not permitted") != NULL);
    sandbox_result_free(&r);
    const char *argv2[] = {self, "child", "daemon", NULL};
    opts_for(&o, argv2);
    o.disable = off;
    if (run(&o, &r)) return;
    CHECK_MSG(r.wall_s < 5.0, "took %.2f s", r.wall_s);
    const char *p = strstr(r.out, "left child:");
    pid_t left = p ? (pid_t)atoi(p + 11) : 0;
    CHECK(left > 0);
    int gone = 0;
    for (int i = 0; i < 40 && left > 0 && !gone; i++) {
        char path[64], buf[512] = {0};
        snprintf(path, sizeof path, "/proc/%d/stat", (int)left);
        FILE *f = fopen(path, "r");
        if (!f) {
            gone = 1;
            break;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        const char *close_paren = n ? strrchr(buf, ')') : NULL;
        if (close_paren && close_paren[2] == 'Z')
            gone = 1; /* killed, not yet reaped */
        else
            usleep(50000);
    }
    CHECK_MSG(gone, "process %d outlived the sandbox", (int)left);
    sandbox_result_free(&r);
}

static void test_cpu_limit(void) {
    const char *argv[] = {self, "child", "spin", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    o.cpu_s = 1;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK(!r.timed_out);
    CHECK_MSG(r.signaled && (r.term_signal == SIGXCPU || r.term_signal == SIGKILL),
              "exited %d signal %d", r.exit_code, r.term_signal);
    CHECK(r.cpu_s >= 0.5); /* tick-sampled usage lags the precise time the limit uses */
    sandbox_result_free(&r);
}

static void test_clean_env(void) {
    setenv("CU_SANDBOX_CANARY", "must-not-leak", 1);
    const char *argv[] = {self, "child", "env", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    const char *env[] = {"ASAN_OPTIONS=detect_leaks=0", "EXTRA=1", NULL};
    o.env = env;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK(strstr(r.out, "CU_SANDBOX_CANARY") == NULL);
    CHECK(strstr(r.out, "PATH=/usr/local/bin:/usr/bin:/bin\n") != NULL);
    CHECK(strstr(r.out, "HOME=/tmp/cu-sandbox-") != NULL);
    CHECK(strstr(r.out, "TMPDIR=/tmp/cu-sandbox-") != NULL);
    CHECK(strstr(r.out, "EXTRA=1\n") != NULL);
    int lines = 0;
    for (const char *p = r.out; *p; p++) lines += *p == '\n';
    CHECK(lines == 6);
    sandbox_result_free(&r);
    unsetenv("CU_SANDBOX_CANARY");
}

static void test_io_and_status(void) {
    const char *argv[] = {"sh", "-c", "cat t.txt; cat; echo oops >&2; exit 3", NULL};
    sandbox_opts_t o;
    opts_for(&o, argv);
    sandbox_file_t f = {"t.txt", "from a file\n", 12, 0};
    o.files = &f;
    o.nfiles = 1;
    o.stdin_data = "from stdin\n";
    o.stdin_len = 11;
    sandbox_result_t r;
    if (run(&o, &r)) return;
    CHECK(r.exited && r.exit_code == 3);
    CHECK_MSG(!strcmp(r.out, "from a file\nfrom stdin\n"), "%s", r.out);
    CHECK(!strcmp(r.err, "oops\n"));
    sandbox_result_free(&r);
    /* output is bounded */
    const char *big[] = {"head", "-c", "5000000", "/dev/zero", NULL};
    opts_for(&o, big);
    o.max_output = 1000;
    if (run(&o, &r)) return;
    CHECK(r.out_len == 1000 && r.out_truncated);
    CHECK(r.exited && r.exit_code == 0);
    sandbox_result_free(&r);
    /* a command that does not exist, and bad options */
    const char *none[] = {"/nonexistent/cmd", NULL};
    opts_for(&o, none);
    if (run(&o, &r)) return;
    CHECK(r.exec_failed && r.exit_code == 127);
    sandbox_result_free(&r);
    const char *notfound[] = {"no-such-command-here", NULL};
    opts_for(&o, notfound);
    cu_error_t err = {0};
    CHECK(sandbox_run(&o, &r, &err) == CU_EINVAL);
    sandbox_file_t bad = {"../x", "", 0, 0};
    opts_for(&o, argv);
    o.files = &bad;
    o.nfiles = 1;
    CHECK(sandbox_run(&o, &r, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "../x") != NULL);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "child")) return child_main(argc, argv);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = '\0';
    static const cu_test_case_t cases[] = {
        TEST(test_layers_applied),      TEST(test_no_network),    TEST(test_no_writes_outside),
        TEST(test_fork_bomb_contained), TEST(test_timeout_kills), TEST(test_degraded),
        TEST(test_cpu_limit),           TEST(test_clean_env),     TEST(test_io_and_status),
    };
    return cu_test_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
