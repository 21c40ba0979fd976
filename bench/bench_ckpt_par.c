/*
 * Benchmark: a full fine-tuning checkpoint at GPT-2 124M shapes (weights and
 * both AdamW moments, 1.5 GB) written and read by every rank at once, as
 * train.shard_optimizer does: each rank holds the weights and its 1/W slice
 * of the moments, writes its slice of every dataset with parallel HDF5, and
 * reads its slice back (checksum from every rank's piece digests) before
 * the weights are gathered. Run under mpirun with 1, 2, 4 ranks; rank 0
 * prints the times (the slowest rank's, as training waits for it).
 *
 * usage: mpirun -n W bench_ckpt_par [DIR]   (default /tmp)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timer.h"
#include "io/ckpt.h"
#include "model/gpt.h"
#include "mpi/reducer.h"
#include "mpi/world.h"

static double slowest(double t) {
    double all = t;
    MPI_Allreduce(&t, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

int main(int argc, char **argv) {
    cu_world_t w;
    cu_error_t err;
    if (world_init(&w, &argc, &argv, &err)) {
        fprintf(stderr, "bench_ckpt_par: %s\n", err.msg);
        return 1;
    }
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    gpt_config_t gc = {
        .n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257, .max_seq_len = 1024};
    lora_config_t lc = {0};
    gpt_t *m;
    if (gpt_create(&m, &gc, &lc, &err)) {
        fprintf(stderr, "bench_ckpt_par: %s\n", err.msg);
        return 1;
    }
    gpt_init_weights(m, 1, 0.02f);
    size_t n, lo, hi;
    float *p = gpt_trainable(m, &n);
    reducer_slice(n, w.size, w.rank, &lo, &hi);
    size_t len = hi - lo;
    float *mo = malloc((len + 1) * sizeof(float)), *v = malloc((len + 1) * sizeof(float));
    for (size_t i = 0; i < len; i++)
        mo[i] = 1e-3f * (float)((lo + i) % 97), v[i] = 1e-6f * (float)((lo + i) % 89);
    int nt;
    const gpt_tensor_t *t = gpt_trainable_tensors(m, &nt);
    ckpt_data_t d = {.params = p, .m = mo, .v = v, .tensors = t, .n_tensors = nt};
    ckpt_meta_t meta = {.step = 1, .world_size = w.size};
    char path[4200];
    double id = (double)getpid();
    world_bcast_doubles(&w, &id, 1, &err);
    snprintf(path, sizeof path, "%s/bench_ckpt_par_%ld.h5", dir, (long)id);
    world_barrier(&w);
    double t0 = cu_now();
    int rc = ckpt_save_parallel(path, &d, lo, hi, &meta, (long)id, &err);
    double save = slowest(cu_now() - t0);
    /* from the disk, not the page cache, where the kernel lets us */
    FILE *drop = rc == CU_OK && w.rank == 0 ? fopen("/proc/sys/vm/drop_caches", "w") : NULL;
    if (drop) {
        sync();
        fputs("1\n", drop);
        fclose(drop);
    }
    memset(mo, 0, len * sizeof(float));
    world_barrier(&w);
    t0 = cu_now();
    if (rc == CU_OK) rc = ckpt_load_slice(path, p, mo, v, lo, hi, t, nt, &meta, &err);
    if (rc == CU_OK) rc = world_allgather_slices(&w, p, n, &err);
    double load = slowest(cu_now() - t0);
    double mb = 3.0 * (double)n * 4 / 1e6;
    if (rc)
        fprintf(stderr, "bench_ckpt_par: rank %d: %s\n", w.rank, err.msg);
    else if (w.rank == 0)
        printf("%d writer%s  %8.1f MB  save %6.3f s (%6.0f MB/s)  load+verify+gather %6.3f s "
               "(%6.0f MB/s)%s\n",
               w.size, w.size == 1 ? " " : "s", mb, save, mb / save, load, mb / load,
               drop ? "" : "  [page cache not dropped]");
    if (w.rank == 0) unlink(path);
    free(mo);
    free(v);
    gpt_free(m);
    world_finalize(&w);
    return rc ? 1 : 0;
}
