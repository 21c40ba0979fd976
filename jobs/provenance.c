/*
 * Provenance records (see provenance.h).
 */
#include "jobs/provenance.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tensor_h5.h"
#include "model/blas.h"
#include "rundir/rundir.h"

char *openblas_get_config(void);

static void hex32(const unsigned char *md, char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void provenance_text_sha256(const char *text, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
    hex32(md, hex);
}

int provenance_file_sha256(const char *path, char hex[65], cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int bad = ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (bad) return cu_error_set(err, CU_EIO, "error reading %s", path);
    hex32(md, hex);
    return CU_OK;
}

static json_t *time_json(double t) {
    if (t <= 0) return json_null();
    char buf[40];
    rundir_time(t, buf, sizeof buf);
    return json_string(buf);
}

static json_t *str_or_null(const char *s) {
    return s && *s ? json_string(s) : json_null();
}

char *provenance_json(const provenance_t *p) {
    char *yaml = config_to_yaml(p->cfg);
    char cfg_hash[65] = "", mpi[256], hdf5[64];
    if (yaml) provenance_text_sha256(yaml, cfg_hash);
    world_mpi_version(mpi, sizeof mpi);
    h5_library_version(hdf5, sizeof hdf5);
    const cu_config_t *c = p->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "job", json_string(c->job.name));
    json_object_set_new(o, "config_sha256", json_string(cfg_hash));
    json_object_set_new(o, "config", json_string(yaml ? yaml : ""));
    json_object_set_new(o, "code_version", json_string(CU_GIT_DESCRIBE));
    json_object_set_new(o, "compiler", json_string(CU_COMPILER));
    json_object_set_new(o, "libraries",
                        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "mpi", mpi, "openblas",
                                  openblas_get_config(), "openblas_kernels", blas_core_name(),
                                  "hdf5", hdf5, "scalapack", CU_SCALAPACK_VERSION, "h2o",
                                  CU_H2O_VERSION));
    json_t *hosts = json_array();
    char hbuf[1024];
    snprintf(hbuf, sizeof hbuf, "%s", p->hosts ? p->hosts : "");
    char *save = NULL;
    for (char *h = strtok_r(hbuf, ",", &save); h; h = strtok_r(NULL, ",", &save))
        json_array_append_new(hosts, json_string(h));
    json_object_set_new(o, "hosts", hosts);
    json_object_set_new(o, "world_size", json_integer(p->world->size));
    json_object_set_new(o, "threads_per_rank", json_integer(c->train.threads));
    json_object_set_new(o, "seed", json_integer(c->job.seed));
    json_object_set_new(o, "tokenizer_sha256", str_or_null(p->tokenizer_hash));
    json_object_set_new(o, "data",
                        json_pack("{s:s,s:s,s:o}", "source", c->data.source, "path", c->data.path,
                                  "sha256", str_or_null(p->data_hash)));
    json_object_set_new(
        o, "base_model",
        json_pack("{s:s,s:o}", "init", c->model.init, "sha256", str_or_null(p->base_hash)));
    if (c->lora.init_from[0])
        json_object_set_new(o, "lora_init_from",
                            json_pack("{s:s,s:o}", "path", c->lora.init_from, "sha256",
                                      str_or_null(p->lora_init_hash)));
    json_object_set_new(o, "started_at", time_json(p->started_at));
    json_object_set_new(o, "finished_at", time_json(p->finished_at));
    json_object_set_new(o, "resumed_from_step",
                        p->resumed_from_step < 0 ? json_null()
                                                 : json_integer(p->resumed_from_step));
    json_t *safety = p->safety_json ? json_loads(p->safety_json, 0, NULL) : NULL;
    json_object_set_new(o, "safety", safety ? safety : json_null());
    const char *slurm[] = {"SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
                           "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST"};
    json_t *env = json_object();
    for (size_t i = 0; i < sizeof slurm / sizeof slurm[0]; i++)
        if (getenv(slurm[i])) json_object_set_new(env, slurm[i], json_string(getenv(slurm[i])));
    json_object_set_new(o, "slurm", env);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    free(yaml);
    return text;
}
