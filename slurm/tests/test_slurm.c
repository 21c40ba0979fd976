/*
 * Unit tests of cu_slurm's parsing and rendering, without a Slurm: state
 * mapping (every ending Slurm has, incl. NODE_FAIL and requeues), squeue,
 * sacct and sbatch output, shell quoting that survives bash, and the batch
 * script's directives. tests/slurm_e2e.py runs the same code against a real
 * Slurm. (It lives under slurm/ because tests/ is shared; registered by
 * tests/slurm.cmake.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "rundir/status.h"
#include "slurm/slurm.h"

static void test_map_state(void) {
    int term = -1;
    CHECK(!strcmp(slurm_map_state("PENDING", &term), "PENDING") && term == 0);
    CHECK(!strcmp(slurm_map_state("REQUEUED", &term), "PENDING") && term == 0);
    CHECK(!strcmp(slurm_map_state("RUNNING", &term), "RUNNING") && term == 0);
    CHECK(!strcmp(slurm_map_state("COMPLETING", &term), "RUNNING") && term == 0);
    CHECK(!strcmp(slurm_map_state("COMPLETED", &term), "COMPLETED") && term == 1);
    CHECK(!strcmp(slurm_map_state("TIMEOUT", &term), "TIMEOUT") && term == 1);
    CHECK(!strcmp(slurm_map_state("NODE_FAIL", &term), "FAILED") && term == 1);
    CHECK(!strcmp(slurm_map_state("PREEMPTED", &term), "PREEMPTED") && term == 1);
    CHECK(!strcmp(slurm_map_state("CANCELLED by 0", &term), "CANCELLED") && term == 1);
    CHECK(slurm_map_state("BOGUS", &term) == NULL);
}

static void test_squeue_sacct(void) {
    slurm_job_info_t i;
    cu_error_t err = {0};
    CHECK(slurm_parse_squeue_line("12|PENDING|BeginTime|", &i, &err) == CU_OK);
    CHECK(!strcmp(i.id, "12") && !strcmp(i.status, "PENDING") && !strcmp(i.reason, "BeginTime"));
    CHECK(slurm_parse_squeue_line("7_1|NODE_FAIL|None|node3", &i, &err) == CU_OK);
    CHECK(!strcmp(i.status, "FAILED") && !strcmp(i.reason, "NODE_FAIL") && i.terminal);
    CHECK(!strcmp(i.nodes, "node3"));
    CHECK(slurm_parse_squeue_line("garbage", &i, &err) == CU_EFORMAT);
    CHECK(slurm_parse_squeue_line("1|WHATEVER|x|y", &i, &err) == CU_EFORMAT);
    const char *sacct = "41|REQUEUED|0:0|n1\n41.batch|CANCELLED|0:15|n1\n"
                        "41|TIMEOUT|0:0|n1\n41.batch|CANCELLED|0:15|n1\n";
    int found = 0;
    CHECK(slurm_parse_sacct(sacct, "41", &i, &found, &err) == CU_OK && found);
    CHECK(!strcmp(i.status, "TIMEOUT") && !strcmp(i.exit_code, "0:0"));
    CHECK(slurm_parse_sacct(sacct, "42", &i, &found, &err) == CU_OK && !found);
    CHECK(slurm_parse_sacct("", "41", &i, &found, &err) == CU_OK && !found);
}

static void test_sbatch_output(void) {
    char id[32];
    cu_error_t err = {0};
    CHECK(slurm_parse_sbatch_output("1234\n", id, sizeof id, &err) == CU_OK && !strcmp(id, "1234"));
    CHECK(slurm_parse_sbatch_output("99;cluster2\n", id, sizeof id, &err) == CU_OK &&
          !strcmp(id, "99"));
    CHECK(slurm_parse_sbatch_output("sbatch: error: x", id, sizeof id, &err) == CU_EFORMAT);
    CHECK(slurm_parse_sbatch_output("", id, sizeof id, &err) == CU_EFORMAT);
    CHECK(slurm_parse_sbatch_output("123456789012345678901234567890123", id, sizeof id, &err) ==
          CU_EFORMAT);
}

/* The quoted text, run through bash's echo, gives back the original. */
static void test_quote_roundtrip(void) {
    const char *hard[] = {"plain",         "",    "it's", "$(touch /tmp/x)", "a b\tc",
                          "`id`;\"q\"\\n", "''''"};
    for (size_t k = 0; k < sizeof hard / sizeof hard[0]; k++) {
        char q[256], cmd[600], got[256] = {0};
        cu_error_t err = {0};
        CHECK(slurm_shell_quote(hard[k], q, sizeof q, &err) == CU_OK);
        snprintf(cmd, sizeof cmd, "bash -c 'printf %%s \"$1\"' _ %s", q);
        FILE *p = popen(cmd, "r");
        CHECK(p != NULL);
        if (!p) continue;
        size_t n = fread(got, 1, sizeof got - 1, p);
        got[n] = '\0';
        pclose(p);
        CHECK_MSG(!strcmp(got, hard[k]), "'%s' came back as '%s'", hard[k], got);
    }
    char small[4];
    cu_error_t err = {0};
    CHECK(slurm_shell_quote("toolong", small, sizeof small, &err) == CU_EINVAL);
}

static void test_script(void) {
    cu_config_t cfg;
    cu_error_t err = {0};
    config_defaults(&cfg);
    CHECK(config_apply_override(&cfg, "slurm.partition=cpu", &err) == CU_OK);
    CHECK(config_apply_override(&cfg, "slurm.mem=4G", &err) == CU_OK);
    CHECK(config_apply_override(&cfg, "slurm.signal_grace_s=0", &err) == CU_OK);
    slurm_script_opts_t o = {.workdir = "/w/it's",
                             .runs_dir = "/w/runs",
                             .train_exe = "/bin/codex-train",
                             .array_tasks = 3};
    char *s = slurm_script_render(&cfg, &o, &err);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(strstr(s, "#SBATCH --partition=cpu\n") && strstr(s, "#SBATCH --mem=4G\n"));
    CHECK(strstr(s, "#SBATCH --array=0-2\n"));
    CHECK(strstr(s, "#SBATCH --output=/w/runs/demo-%a/slurm-%A_%a.out\n"));
    CHECK(!strstr(s, "--signal="));  /* grace 0: no warning signal */
    CHECK(!strstr(s, "--account=")); /* empty keys add nothing */
    CHECK(strstr(s, "cd '/w/it'\\''s' || exit 1\n"));
    free(s);
    o.runs_dir = "/w/my runs";
    o.array_tasks = 0;
    s = slurm_script_render(&cfg, &o, &err);
    CHECK(s == NULL && err.code == CU_EINVAL && strstr(err.msg, "white space"));
    free(s);
    o.runs_dir = "/w/runs";
    const char *bad[] = {"1BAD=x"};
    o.n_exports = 1;
    o.exports[0] = bad[0];
    s = slurm_script_render(&cfg, &o, &err);
    CHECK(s == NULL && err.code == CU_EINVAL);
    free(s);
}

static void test_plan_sweep(void) {
    slurm_plan_t p;
    cu_error_t err = {0};
    const char *yaml = "job:\n  name: sw\n";
    char *ov[] = {"train.max_steps=10", "train.micro_batch_size=4"};
    int rc = slurm_plan_build(&p, yaml, strlen(yaml), "t.yaml", ov, 2, "train.lr=1e-4,3e-4", "/w",
                              "/bin/codex-train", NULL, 0, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    CHECK(p.n_tasks == 2 && !strcmp(p.task_cfg[1].job.name, "sw-1"));
    CHECK(p.n_tasks == 2 && p.task_cfg[1].train.lr > 2.9e-4f && p.task_cfg[0].train.lr < 1.1e-4f);
    CHECK(!strcmp(p.run_dir, "/w/runs/sw-0"));
    slurm_plan_free(&p);
    rc = slurm_plan_build(&p, yaml, strlen(yaml), "t.yaml", ov, 2, "train.lr", "/w",
                          "/bin/codex-train", NULL, 0, &err);
    CHECK(rc == CU_EINVAL && strstr(err.msg, "--sweep"));
    slurm_plan_free(&p);
    char *bad[] = {"train.global_batch_size=7"};
    rc = slurm_plan_build(&p, yaml, strlen(yaml), "t.yaml", bad, 1, NULL, "/w", "/bin/x", NULL, 0,
                          &err);
    CHECK(rc == CU_EINVAL && strstr(err.msg, "2 ranks"));
    slurm_plan_free(&p);
}

/* A model.init folder that ships a tokenizer.json: the job takes its
 * tokenizer.path from it (codex-train does), so the plan validates too;
 * submit.yaml keeps the key empty for the job to derive. */
static void test_plan_model_folder_tokenizer(void) {
    char dir[] = "/tmp/cu-plan-tok-XXXXXX", file[64], yaml[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/tokenizer.json", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    snprintf(yaml, sizeof yaml, "job:\n  name: tk\nmodel:\n  init: %s\ntokenizer:\n  kind: gpt2\n",
             dir);
    char *ov[] = {"train.micro_batch_size=4"};
    slurm_plan_t p;
    cu_error_t err = {0};
    int rc = slurm_plan_build(&p, yaml, strlen(yaml), "t.yaml", ov, 1, NULL, "/w", "/bin/x", NULL,
                              0, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    CHECK(rc != CU_OK || p.cfg.tokenizer.path[0] == '\0');
    slurm_plan_free(&p);
    remove(file); /* without the tokenizer file the empty path is an error */
    rc = slurm_plan_build(&p, yaml, strlen(yaml), "t.yaml", ov, 1, NULL, "/w", "/bin/x", NULL, 0,
                          &err);
    CHECK(rc == CU_EINVAL && strstr(err.msg, "tokenizer.path is empty"));
    slurm_plan_free(&p);
    rmdir(dir);
}

static void test_array_matches(void) {
    CHECK(slurm_array_matches("1234", "1234"));
    CHECK(!slurm_array_matches("1234", "123"));
    CHECK(slurm_array_matches("1234_2", "1234_2"));
    CHECK(slurm_array_matches("1234_[0-3]", "1234_2"));
    CHECK(slurm_array_matches("1234_[0-3,7]", "1234_7"));
    CHECK(slurm_array_matches("1234_[2-3%1]", "1234_3"));
    CHECK(!slurm_array_matches("1234_[2-3%1]", "1234_1"));
    CHECK(!slurm_array_matches("1234_[0-3]", "1234_4"));
    CHECK(!slurm_array_matches("1234_[0-3]", "12345_1"));
    CHECK(!slurm_array_matches("1234_[0-3]", "1234"));
    CHECK(!slurm_array_matches("1234_[0-3]", "1234_1x"));
}

static slurm_job_info_t info_of(const char *line) {
    slurm_job_info_t i;
    cu_error_t err = {0};
    if (slurm_parse_squeue_line(line, &i, &err) != CU_OK) memset(&i, 0, sizeof i);
    return i;
}

static void test_merge_status(void) {
    char st[16], detail[256];
    slurm_job_info_t i = info_of("9|RUNNING|None|n1");
    rundir_status_merge_slurm("RUNNING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "RUNNING") && !detail[0]);
    rundir_status_merge_slurm("PENDING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "RUNNING")); /* Slurm runs it before codex-train wrote */
    rundir_status_merge_slurm("PREEMPTED", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "PREEMPTED"));
    rundir_status_merge_slurm("COMPLETED", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "COMPLETED") && strstr(detail, "finishing"));
    i = info_of("9|PENDING|BeginTime|");
    rundir_status_merge_slurm("PREEMPTED", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "PENDING") && strstr(detail, "requeued") && strstr(detail, "BeginTime"));
    i = info_of("9|TIMEOUT|None|n1");
    rundir_status_merge_slurm("RUNNING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "TIMEOUT") && strstr(detail, "TIMEOUT"));
    rundir_status_merge_slurm("COMPLETED", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "COMPLETED")); /* training finished before the limit bit */
    i = info_of("9|NODE_FAIL|None|n1");
    rundir_status_merge_slurm("RUNNING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "FAILED") && strstr(detail, "NODE_FAIL"));
    i = info_of("9|CANCELLED by 0|None|n1");
    rundir_status_merge_slurm("RUNNING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "CANCELLED"));
    i = info_of("9|COMPLETED|None|n1");
    rundir_status_merge_slurm("RUNNING", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "FAILED") && strstr(detail, "no end"));
    rundir_status_merge_slurm("PREEMPTED", &i, st, sizeof st, detail, sizeof detail);
    CHECK(!strcmp(st, "PREEMPTED") && strstr(detail, "not requeued"));
}

static void test_query_many_ids(void) {
    const char *ids[] = {"12", "bad;id"};
    slurm_job_info_t infos[2];
    int found[2];
    cu_error_t err = {0};
    CHECK(slurm_query_many(ids, 2, infos, found, 1, &err) == CU_EINVAL && strstr(err.msg, "bad"));
    CHECK(slurm_query_many(ids, 0, infos, found, 1, &err) == CU_OK);
}

static void test_run_timeout(void) {
    const char *argv[] = {"sleep", "5", NULL};
    char *out = NULL;
    int status = 0;
    cu_error_t err = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(slurm_run_timeout(argv, 0.3, &out, NULL, &status, &err) == CU_EIO &&
          strstr(err.msg, "did not answer within"));
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK((double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9 < 3.0);
    const char *echo[] = {"echo", "1234", NULL};
    CHECK(slurm_run_timeout(echo, 5, &out, NULL, &status, &err) == CU_OK && status == 0 &&
          !strcmp(out, "1234\n"));
    free(out);
}

/* Issue 18: every spelling sbatch accepts of an option that moves the
 * job's files is caught; options that do not are let through. */
static void test_extra_moves_files(void) {
    const char *bad[] = {"--output=/x",      "--output /x",     "--out=/x",    "--err=/x",
                         "--chd=/",          "-vo/x",           "-o /x",       "-e/x",
                         "--exclusive -o/x", "\"--output=/x\"", "--in=/etc/x", "-D /",
                         "--e=/x",           "-Qvo /x",         "--ch /"};
    const char *good[] = {"--exclusive",      "--mail-type=END",   "--export=ALL",
                          "-J job",           "--cpus-per-task=2", "-c 4",
                          "--constraint=avx", "--comment=o"};
    char opt[32];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int moved = slurm_extra_moves_files(bad[i], opt, sizeof opt);
        CHECK(moved);
        if (!moved) fprintf(stderr, "not caught: %s\n", bad[i]);
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int moved = slurm_extra_moves_files(good[i], opt, sizeof opt);
        CHECK(!moved);
        if (moved) fprintf(stderr, "refused: %s (%s)\n", good[i], opt);
    }
    CHECK(slurm_extra_moves_files("-vo/x", opt, sizeof opt) && !strcmp(opt, "-o"));
    CHECK(slurm_extra_moves_files("--chd=/", opt, sizeof opt) && !strcmp(opt, "--chdir"));
}

int main(void) {
    const cu_test_case_t cases[] = {
        {"map_state", test_map_state},
        {"squeue_sacct", test_squeue_sacct},
        {"sbatch_output", test_sbatch_output},
        {"quote_roundtrip", test_quote_roundtrip},
        {"script", test_script},
        {"plan_sweep", test_plan_sweep},
        {"array_matches", test_array_matches},
        {"merge_status", test_merge_status},
        {"query_many_ids", test_query_many_ids},
        {"run_timeout", test_run_timeout},
        {"extra_moves_files", test_extra_moves_files},
        {"plan_model_folder_tokenizer", test_plan_model_folder_tokenizer},
    };
    return cu_test_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
