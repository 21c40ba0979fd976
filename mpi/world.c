/*
 * MPI world (see world.h). MPI's own errors are returned as values: the
 * communicator's error handler is set to MPI_ERRORS_RETURN so a failed call
 * reaches a place that can report it with context.
 */
#include "mpi/world.h"

#include <mpi.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int mpi_fail(int rc, const char *what, cu_error_t *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return cu_error_set(err, CU_EMPI, "%s failed: %s", what, msg);
}

static _Atomic unsigned long collectives;

unsigned long world_collectives(void) {
    return atomic_load(&collectives);
}

void world_collective_enter(void) {
    atomic_fetch_add(&collectives, 1);
}

int world_init(cu_world_t *w, int *argc, char ***argv, cu_error_t *err) {
    memset(w, 0, sizeof *w);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* only the main thread calls MPI; others (the watchdog) never do */
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", err);
        w->owns_mpi = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    if (gethostname(w->host, sizeof w->host - 1) != 0) snprintf(w->host, sizeof w->host, "unknown");
    return CU_OK;
}

void world_finalize(cu_world_t *w) {
    if (w->owns_mpi) MPI_Finalize();
    w->owns_mpi = 0;
}

void world_abort(const cu_world_t *w, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

int world_sum_floats(const cu_world_t *w, float *buf, size_t n, cu_error_t *err) {
    if (w->size == 1) return CU_OK;
    /* MPI counts are int: reduce in slices for very large buffers */
    const size_t slice = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += slice) {
        int count = (int)(n - off < slice ? n - off : slice);
        world_collective_enter();
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err);
    }
    return CU_OK;
}

int world_sum_doubles(const cu_world_t *w, double *buf, int n, cu_error_t *err) {
    if (w->size == 1) return CU_OK;
    world_collective_enter();
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? CU_OK : mpi_fail(rc, "MPI_Allreduce", err);
}

int world_bcast_floats(const cu_world_t *w, float *buf, size_t n, cu_error_t *err) {
    if (w->size == 1) return CU_OK;
    const size_t slice = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += slice) {
        int count = (int)(n - off < slice ? n - off : slice);
        world_collective_enter();
        int rc = MPI_Bcast(buf + off, count, MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", err);
    }
    return CU_OK;
}

int world_bcast_doubles(const cu_world_t *w, double *buf, int n, cu_error_t *err) {
    if (w->size == 1) return CU_OK;
    world_collective_enter();
    int rc = MPI_Bcast(buf, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? CU_OK : mpi_fail(rc, "MPI_Bcast", err);
}

int world_bcast_bytes(const cu_world_t *w, void *buf, int n, cu_error_t *err) {
    if (w->size == 1) return CU_OK;
    world_collective_enter();
    int rc = MPI_Bcast(buf, n, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? CU_OK : mpi_fail(rc, "MPI_Bcast", err);
}

int world_agree(const cu_world_t *w, int rc) {
    if (w->size == 1) return rc;
    int out = rc;
    world_collective_enter();
    MPI_Allreduce(&rc, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

void world_barrier(const cu_world_t *w) {
    if (w->size > 1) {
        world_collective_enter();
        MPI_Barrier(MPI_COMM_WORLD);
    }
}

int world_hosts(const cu_world_t *w, char *buf, size_t len, cu_error_t *err) {
    enum { HOST = 256 };
    char *all = calloc((size_t)w->size, HOST);
    if (!all) return cu_error_set(err, CU_ENOMEM, "out of memory (host names)");
    char mine[HOST] = {0};
    snprintf(mine, sizeof mine, "%s", w->host);
    int rc = MPI_SUCCESS;
    if (w->size > 1) {
        world_collective_enter();
        rc = MPI_Allgather(mine, HOST, MPI_CHAR, all, HOST, MPI_CHAR, MPI_COMM_WORLD);
    } else {
        memcpy(all, mine, HOST);
    }
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Allgather", err);
    }
    buf[0] = '\0';
    size_t used = 0;
    for (int r = 0; r < w->size; r++) {
        const char *h = all + (size_t)r * HOST;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = strcmp(h, all + (size_t)q * HOST) == 0;
        if (seen) continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", h);
        if (n < 0 || (size_t)n >= len - used) break;
        used += (size_t)n;
    }
    free(all);
    return CU_OK;
}

void world_mpi_version(char *buf, size_t len) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    MPI_Get_library_version(v, &n);
    /* keep the first line only */
    char *nl = strchr(v, '\n');
    if (nl) *nl = 0;
    snprintf(buf, len, "%s", v);
}

int world_node_rank(const cu_world_t *w, int *node_rank, cu_error_t *err) {
    *node_rank = 0;
    if (w->size == 1) return CU_OK;
    world_collective_enter();
    MPI_Comm node;
    int rc =
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_split_type", err);
    rc = MPI_Comm_rank(node, node_rank);
    MPI_Comm_free(&node);
    return rc == MPI_SUCCESS ? CU_OK : mpi_fail(rc, "MPI_Comm_rank", err);
}
