/*
 * Knowledge index (ita/kb.h): indexing rate and query latency on real code.
 *
 *   bench_kb DB [SOURCE...]      default sources: /usr/include and /usr/lib/python3.11
 *
 * Prints: the first (full) index of the sources in MB/s; a second refresh
 * with nothing changed (size and mtime checks only) as the baseline of the
 * same run, and the ratio; then p50/p99 latency of top-10 BM25 queries
 * (identifiers and phrases a developer would type), each run 5 times.
 * DB is deleted first. See docs/performance.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timer.h"
#include "ita/kb.h"
#include "safety/safety.h"

static const char *const QUERIES[] = {
    "malloc",
    "pthread_mutex_lock",
    "socket bind listen",
    "json decoder",
    "asyncio event loop",
    "EPOLLIN",
    "struct stat st_mtime",
    "unittest assertEqual",
    "getaddrinfo",
    "SIGTERM handler",
    "HTTPResponse",
    "parse_headers",
    "memcpy overlap",
    "ssl context wrap",
    "thread pool executor",
    "errno EINTR",
    "ioctl",
    "dataclass field default",
    "sqlite3 connect",
    "uint64_t",
    "readlines",
    "subprocess Popen communicate",
    "inotify",
    "zlib compress",
    "BPF_PROG_TYPE",
    "netlink",
    "argparse add_argument",
    "regex compile",
    "open O_CLOEXEC",
    "tokenize",
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_kb DB [SOURCE...]\n");
        return 2;
    }
    const char *db = argv[1];
    ita_kb_source_t src[ITA_KB_MAX_SOURCES];
    size_t n = 0;
    for (int i = 2; i < argc && n < ITA_KB_MAX_SOURCES; i++)
        src[n++] = (ita_kb_source_t){argv[i], NULL};
    if (!n) {
        src[n++] = (ita_kb_source_t){"/usr/include", NULL};
        src[n++] = (ita_kb_source_t){"/usr/lib/python3.11", NULL};
    }
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", db);
    unlink(db), unlink(wal);
    cu_error_t err;
    safety_engine_t *eng = NULL;
    ita_kb_t *kb = NULL;
    ita_kb_stats_t st;
    if (safety_engine_new(NULL, &eng, &err) || ita_kb_open(db, 1, &kb, &err)) {
        fprintf(stderr, "bench_kb: %s\n", err.msg);
        return 1;
    }
    double t0 = cu_now();
    if (ita_kb_refresh(kb, src, n, NULL, eng, &st, &err)) {
        fprintf(stderr, "bench_kb: %s\n", err.msg);
        return 1;
    }
    double full = cu_now() - t0;
    double mb = (double)st.bytes / 1e6;
    printf("full index: %zu files, %.1f MB, %zu chunks, %zu redactions in %.1f s: %.2f MB/s\n",
           st.files_indexed, mb, st.chunks, st.redactions, full, mb / full);
    t0 = cu_now();
    ita_kb_refresh(kb, src, n, NULL, eng, &st, &err);
    double again = cu_now() - t0;
    printf("refresh with nothing changed (baseline): %zu files unchanged in %.2f s; "
           "full index / refresh = %.1fx\n",
           st.files_unchanged, again, full / again);
    size_t nq = sizeof QUERIES / sizeof QUERIES[0], reps = 5, k = 0;
    double *lat = malloc(nq * reps * sizeof *lat);
    size_t hits = 0;
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < nq; i++) {
            ita_kb_query_t q = {.query = QUERIES[i], .top_k = 10};
            json_t *res = NULL;
            double q0 = cu_now();
            if (ita_kb_search(kb, &q, &res, &err) == CU_OK && r == 0) hits += json_array_size(res);
            lat[k++] = (cu_now() - q0) * 1e3;
            json_decref(res);
        }
    qsort(lat, k, sizeof *lat, cmp_double);
    printf("queries: %zu (%zu distinct x %zu), %zu results for the distinct ones; latency p50 "
           "%.2f ms, p99 %.2f ms, max %.2f ms\n",
           k, nq, reps, hits, lat[k / 2], lat[(size_t)(0.99 * (double)(k - 1))], lat[k - 1]);
    free(lat);
    ita_kb_close(kb);
    safety_engine_free(eng);
    return 0;
}
