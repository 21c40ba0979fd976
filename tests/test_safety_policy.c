/*
 * The safety policy and what acts on it: the shipped policy loads and names
 * every rule, validation errors carry file:line:column, the hash follows
 * content not layout, actions and allowlists resolve as documented, and
 * redaction and output checks produce the placeholders, counts, verdicts
 * and events the rest of the system records.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "safety/output.h"
#include "safety/redact.h"
#include "safety/safety.h"

#include "safety_samples.h"

static char *policy_path(void) {
    static char path[1024];
    const char *src = getenv("CU_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/configs/safety/policy.yaml", src ? src : ".");
    return path;
}

static safety_policy_t *parse(const char *text, cu_error_t *err) {
    safety_policy_t *p = NULL;
    cu_error_clear(err);
    safety_policy_parse(text, strlen(text), "test.yaml", &p, err);
    return p;
}

static void test_shipped_policy(void) {
    safety_policy_t *p = NULL;
    cu_error_t err = {0};
    CHECK_MSG(safety_policy_load(policy_path(), &p, &err) == CU_OK, "%s", err.msg);
    if (!p) return;
    CHECK(strlen(safety_policy_sha256(p)) == 64);
    /* every rule is named in the file, so each has a deliberate decision */
    FILE *f = fopen(policy_path(), "rb");
    char *text = calloc(1, 1 << 20);
    size_t n = f && text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    CHECK(n > 0);
    for (int r = 0; r < safety_rule_count(); r++) {
        char key[128];
        snprintf(key, sizeof key, "\n  %s: {", safety_rules()[r].id);
        CHECK_MSG(text && strstr(text, key), "policy.yaml does not name rule %s",
                  safety_rules()[r].id);
    }
    free(text);
    int aws = safety_rule_find("aws_access_key"), pem = safety_rule_find("private_key_block");
    CHECK(safety_policy_action(p, aws, SAFETY_STAGE_DATA) == SAFETY_ACTION_REDACT);
    CHECK(safety_policy_action(p, aws, SAFETY_STAGE_OUTPUT) == SAFETY_ACTION_BLOCK);
    CHECK(safety_policy_action(p, pem, SAFETY_STAGE_DATA) == SAFETY_ACTION_BLOCK);
    CHECK(safety_policy_refuse_export(p));
    CHECK(!safety_policy_fail_job(p));
    /* the same content loads to the same hash */
    safety_policy_t *q = NULL;
    CHECK(safety_policy_load(policy_path(), &q, &err) == CU_OK);
    if (q) CHECK(!strcmp(safety_policy_sha256(p), safety_policy_sha256(q)));
    safety_policy_free(q);
    safety_policy_free(p);
}

static void test_hash_follows_content(void) {
    cu_error_t err;
    safety_policy_t *a = parse("version: 1\nrules:\n  email: {output: allow}\n", &err);
    safety_policy_t *b =
        parse("# a comment\nversion: 1\nrules:\n  email:\n    output: allow\n", &err);
    safety_policy_t *c = parse("version: 1\nrules:\n  email: {output: block}\n", &err);
    safety_policy_t *d = NULL;
    CHECK(safety_policy_default(&d, &err) == CU_OK);
    CHECK(a && b && c && d);
    if (a && b && c && d) {
        CHECK(!strcmp(safety_policy_sha256(a), safety_policy_sha256(b)));
        CHECK(strcmp(safety_policy_sha256(a), safety_policy_sha256(c)) != 0);
        CHECK(strcmp(safety_policy_sha256(a), safety_policy_sha256(d)) != 0);
    }
    /* the built-in default is the shipped file, compiled in: same hash, and
     * stricter than the category defaults alone ("version: 1") */
    safety_policy_t *e = parse("version: 1\n", &err), *f = NULL;
    CHECK(safety_policy_load(policy_path(), &f, &err) == CU_OK);
    if (f && d) CHECK(!strcmp(safety_policy_sha256(f), safety_policy_sha256(d)));
    if (e && d) CHECK(strcmp(safety_policy_sha256(e), safety_policy_sha256(d)) != 0);
    if (d) CHECK(!strcmp(safety_policy_source(d), "built-in"));
    if (d)
        CHECK(safety_policy_action(d, safety_rule_find("private_key_block"), SAFETY_STAGE_DATA) ==
              SAFETY_ACTION_BLOCK);
    safety_policy_free(f);
    safety_policy_free(a);
    safety_policy_free(b);
    safety_policy_free(c);
    safety_policy_free(d);
    safety_policy_free(e);
}

static void expect_error(const char *text, const char *where, const char *what) {
    cu_error_t err;
    safety_policy_t *p = parse(text, &err);
    CHECK_MSG(p == NULL, "accepted: %s", text);
    safety_policy_free(p);
    CHECK(err.code == CU_EINVAL);
    CHECK_MSG(strstr(err.msg, where) != NULL, "expected '%s' in: %s", where, err.msg);
    CHECK_MSG(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

static void test_validation_errors(void) {
    expect_error("", "test.yaml", "empty");
    expect_error("- a\n- b\n", "test.yaml:1:1:", "mapping");
    expect_error("rules: {}\n", "test.yaml:1:1:", "version");
    expect_error("version: 2\n", "test.yaml:1:10:", "version must be 1");
    expect_error("version: 1\nfoo: 1\n", "test.yaml:2:1:", "unknown key 'foo'");
    expect_error("version: 1\nrules:\n  aws_acess_key: {data: redact}\n",
                 "test.yaml:3:3:", "unknown rule 'aws_acess_key'");
    expect_error("version: 1\nrules:\n  email: {data: delete}\n",
                 "test.yaml:3:17:", "unknown action 'delete'");
    expect_error("version: 1\nrules:\n  email: {training: block}\n",
                 "test.yaml:3:11:", "unknown key 'training'");
    expect_error("version: 1\nrules:\n  email: {severity: huge}\n",
                 "test.yaml:3:21:", "unknown severity 'huge'");
    expect_error("version: 1\nrules:\n  email: {enabled: maybe}\n",
                 "test.yaml:3:20:", "true or false");
    expect_error("version: 1\nrules:\n  email: {}\n  email: {}\n", "test.yaml:4:3:", "twice");
    expect_error("version: 1\ndefaults:\n  secrets: {data: block}\n",
                 "test.yaml:3:3:", "unknown category 'secrets'");
    expect_error("version: 1\ndefaults:\n  secret: {model: block}\n",
                 "test.yaml:3:12:", "unknown stage 'model'");
    expect_error("version: 1\nallowlist:\n  regexes: ['ok', '(unclosed']\n",
                 "test.yaml:3:19:", "bad regex '(unclosed'");
    expect_error("version: 1\nallowlist:\n  paths: foo\n", "test.yaml:3:10:", "list of strings");
    expect_error("version: 1\nevaluation: {fail_job: perhaps}\n",
                 "test.yaml:2:24:", "true or false");
    expect_error("version: 1\nrules: [\n", "test.yaml:", "YAML syntax error");
    /* a missing file is bad input (exit 2 in codex-train), never the default policy */
    safety_engine_t *eng = NULL;
    cu_error_t err = {0};
    CHECK(safety_engine_new("/nonexistent/policy.yaml", &eng, &err) == CU_EINVAL);
    CHECK(eng == NULL);
    CHECK(strstr(err.msg, "/nonexistent/policy.yaml") != NULL);
}

static void test_actions_and_relaxations(void) {
    cu_error_t err;
    safety_policy_t *p = parse("version: 1\n"
                               "rules:\n"
                               "  email: {output: allow, severity: low}\n"
                               "  aws_access_key: {data: block}\n"
                               "  phone_us: {enabled: false}\n"
                               "defaults:\n"
                               "  pii: {prompt: block}\n"
                               "allowlist:\n"
                               "  paths: ['vendor/*', '*.lock']\n"
                               "  inline: false\n",
                               &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    if (!p) return;
    int email = safety_rule_find("email"), aws = safety_rule_find("aws_access_key"),
        phone = safety_rule_find("phone_us"), ssn = safety_rule_find("us_ssn");
    /* rules override defaults whatever their order in the file */
    CHECK(safety_policy_action(p, email, SAFETY_STAGE_OUTPUT) == SAFETY_ACTION_ALLOW);
    CHECK(safety_policy_action(p, email, SAFETY_STAGE_PROMPT) == SAFETY_ACTION_BLOCK);
    CHECK(safety_policy_action(p, ssn, SAFETY_STAGE_PROMPT) == SAFETY_ACTION_BLOCK);
    CHECK(safety_policy_action(p, aws, SAFETY_STAGE_DATA) == SAFETY_ACTION_BLOCK);
    CHECK(safety_policy_severity(p, email) == SAFETY_SEV_LOW);
    CHECK(!safety_policy_rule_enabled(p, phone));
    CHECK(safety_policy_action(p, phone, SAFETY_STAGE_DATA) == SAFETY_ACTION_ALLOW);
    CHECK(safety_policy_path_allowed(p, "vendor/lib/x.c"));
    CHECK(safety_policy_path_allowed(p, "./vendor/x.c"));
    CHECK(safety_policy_path_allowed(p, "a/b/Cargo.lock"));
    CHECK(!safety_policy_path_allowed(p, "src/vendor.c"));
    json_t *prov = safety_policy_provenance(p);
    char *s = json_dumps(prov, JSON_COMPACT);
    CHECK(s && strstr(s, "rule email: output allow"));
    CHECK(s && strstr(s, "rule phone_us: disabled"));
    CHECK(s && strstr(s, "allowlist.paths: vendor/*"));
    CHECK(s && !strstr(s, "allowlist.inline"));
    CHECK(s && strstr(s, safety_policy_sha256(p)));
    free(s);
    json_decref(prov);
    safety_policy_free(p);
}

static safety_engine_t *engine(const char *yaml) {
    cu_error_t err = {0};
    safety_policy_t *p = yaml ? parse(yaml, &err) : NULL;
    if (yaml && !p) {
        CHECK_MSG(0, "%s", err.msg);
        return NULL;
    }
    safety_engine_t *eng = NULL;
    int rc =
        p ? safety_engine_from_policy(p, &eng, &err) : safety_engine_new(policy_path(), &eng, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    return eng;
}

static void test_redaction(void) {
    safety_engine_t *eng = engine(NULL);
    if (!eng) return;
    cu_error_t err = {0};
    const char *in = "aws = \"" AWS "\"\n"
                     "token: " GHP " and again " GHP "\n"
                     "password = \"Xk9#mP2$vL7qR4\"\n"
                     "mail jane@corp.io, docs@example.com\n";
    safety_redact_result_t r;
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, "src/a.py", in, strlen(in), &r, &err) == CU_OK);
    const char *want = "aws = \"<REDACTED:aws_access_key>\"\n"
                       "token: <REDACTED:github_pat> and again <REDACTED:github_pat>\n"
                       "password = \"<REDACTED:generic_secret_assignment>\"\n"
                       "mail <REDACTED:email>, docs@example.com\n";
    CHECK_MSG(r.text && !strcmp(r.text, want), "got:\n%s", r.text ? r.text : "(null)");
    CHECK(r.len == strlen(want));
    CHECK(r.total == 5);
    CHECK(r.counts[safety_rule_find("github_pat")] == 2);
    CHECK(r.counts[safety_rule_find("aws_access_key")] == 1);
    CHECK(r.counts[safety_rule_find("email")] == 1);
    CHECK(!r.blocked && r.block_rule == -1);
    safety_report_t rep;
    CHECK(safety_report_init(&rep, &err) == CU_OK);
    CHECK(safety_report_add(&rep, "src/a.py", &r, &err) == CU_OK);
    safety_redact_result_free(&r);

    /* a private key blocks the file at the data stage; the text is still redacted */
    const char *key = "config\n" PEM "more\n";
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, "id_rsa", key, strlen(key), &r, &err) == CU_OK);
    CHECK(r.blocked);
    CHECK(r.block_rule == safety_rule_find("private_key_block"));
    CHECK(r.text && !strcmp(r.text, "config\n<REDACTED:private_key_block>\nmore\n"));
    CHECK(safety_report_add(&rep, "keys/id_rsa", &r, &err) == CU_OK);
    safety_redact_result_free(&r);

    /* nothing found: the same bytes, including NULs */
    const char clean[] = "int main(void) { return 0; }\n\0tail";
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, "m.c", clean, sizeof clean - 1, &r, &err) == CU_OK);
    CHECK(r.len == sizeof clean - 1 && !memcmp(r.text, clean, r.len) && r.total == 0);
    CHECK(safety_report_add(&rep, "m.c", &r, &err) == CU_OK);
    safety_redact_result_free(&r);

    json_t *j = safety_report_json(&rep, eng);
    CHECK(json_integer_value(json_object_get(j, "files")) == 3);
    CHECK(json_integer_value(json_object_get(j, "files_blocked")) == 1);
    CHECK(json_integer_value(json_object_get(j, "files_redacted")) == 2);
    CHECK(json_integer_value(json_object_get(j, "total")) == 6);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "redactions"), "github_pat")) == 2);
    json_t *b0 = json_array_get(json_object_get(j, "blocked"), 0);
    CHECK(b0 && !strcmp(json_string_value(json_object_get(b0, "path")), "keys/id_rsa"));
    CHECK(b0 && !strcmp(json_string_value(json_object_get(b0, "rule")), "private_key_block"));
    CHECK(json_string_value(json_object_get(json_object_get(j, "policy"), "sha256")) != NULL);
    json_decref(j);
    safety_report_free(&rep);
    safety_engine_free(eng);
}

static void test_redaction_policy_effects(void) {
    safety_engine_t *eng = engine("version: 1\n"
                                  "rules:\n"
                                  "  email: {data: allow}\n"
                                  "allowlist:\n"
                                  "  paths: ['fixtures/*']\n");
    if (!eng) return;
    cu_error_t err = {0};
    const char *in = "a " AWS " b jane@corp.io\n";
    safety_redact_result_t r;
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, "x.c", in, strlen(in), &r, &err) == CU_OK);
    CHECK(r.text && !strcmp(r.text, "a <REDACTED:aws_access_key> b jane@corp.io\n"));
    CHECK(r.findings.count == 1);
    safety_redact_result_free(&r);
    /* allowlisted path: untouched */
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, "fixtures/x.c", in, strlen(in), &r, &err) == CU_OK);
    CHECK(r.text && !strcmp(r.text, in) && r.total == 0);
    safety_redact_result_free(&r);
    safety_engine_free(eng);
}

static void test_overlap_absorbed(void) {
    safety_engine_t *eng = engine(NULL);
    if (!eng) return;
    cu_error_t err = {0};
    /* an email-looking tail inside a URL password and the URL rule overlap */
    const char *in = "https://bob:"
                     "s3cr3tFAKEpw"
                     "@git.corp.io/x\n";
    safety_redact_result_t r;
    CHECK(safety_redact(eng, SAFETY_STAGE_DATA, NULL, in, strlen(in), &r, &err) == CU_OK);
    CHECK_MSG(r.text && !strstr(r.text, "s3cr3tFAKEpw"), "%s", r.text);
    CHECK(r.total >= 1);
    safety_redact_result_free(&r);
    safety_engine_free(eng);
}

static void test_output_checks(void) {
    safety_engine_t *eng = engine(NULL);
    if (!eng) return;
    cu_error_t err = {0};
    safety_output_result_t r;
    const char *clean = "def add(a, b):\n    return a + b\n";
    CHECK(safety_check_output(eng, clean, strlen(clean), &r, &err) == CU_OK);
    CHECK(r.verdict == SAFETY_VERDICT_PASS);
    safety_output_result_free(&r);
    const char *pii = "# author: jane@corp.io\n";
    CHECK(safety_check_output(eng, pii, strlen(pii), &r, &err) == CU_OK);
    CHECK(r.verdict == SAFETY_VERDICT_REDACT);
    CHECK(r.redacted.text && strstr(r.redacted.text, "<REDACTED:email>"));
    safety_output_result_free(&r);
    const char *leak = "client = Client(key=\"" GHP "\")\n";
    CHECK(safety_check_output(eng, leak, strlen(leak), &r, &err) == CU_OK);
    CHECK(r.verdict == SAFETY_VERDICT_BLOCK);
    CHECK(r.redacted.block_rule == safety_rule_find("github_pat"));
    json_t *ev = safety_output_event_json(eng, &r, 120, leak);
    char *s = json_dumps(ev, JSON_COMPACT);
    CHECK(s && strstr(s, "\"type\":\"safety\""));
    CHECK(s && strstr(s, "\"verdict\":\"block\""));
    CHECK(s && strstr(s, "\"rule\":\"github_pat\""));
    CHECK(s && strstr(s, "\"step\":120"));
    CHECK_MSG(s && !strstr(s, "Fak3Xq7Lm2Pz9KwT4nB8"), "the event leaks the secret: %s", s);
    free(s);
    json_decref(ev);
    safety_output_result_free(&r);
    /* the prompt stage has its own actions */
    CHECK(safety_check_text(eng, SAFETY_STAGE_PROMPT, pii, strlen(pii), &r, &err) == CU_OK);
    CHECK(r.verdict == SAFETY_VERDICT_REDACT);
    safety_output_result_free(&r);
    safety_engine_free(eng);
}

TEST_MAIN(TEST(test_shipped_policy), TEST(test_hash_follows_content), TEST(test_validation_errors),
          TEST(test_actions_and_relaxations), TEST(test_redaction),
          TEST(test_redaction_policy_effects), TEST(test_overlap_absorbed),
          TEST(test_output_checks))
