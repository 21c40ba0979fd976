/*
 * Located findings (safety/hits.h): unified diffs with several files and no
 * `diff` lines, added lines that look like headers, empty context lines,
 * CRLF line ends, "\ No newline" markers and deleted files; the JSON and
 * SARIF reports of a text scan.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "safety/hits.h"

#include "safety_samples.h"

static safety_engine_t *engine(void) {
    safety_engine_t *eng = NULL;
    cu_error_t err = {0};
    CHECK_MSG(safety_engine_new(NULL, &eng, &err) == CU_OK, "%s", err.msg);
    return eng;
}

static const safety_hit_t *find(const safety_hits_t *h, const char *path, const char *rule) {
    for (size_t i = 0; i < h->count; i++)
        if (!strcmp(h->items[i].path, path) && !strcmp(safety_rules()[h->items[i].f.rule].id, rule))
            return &h->items[i];
    return NULL;
}

static void test_diff_parsing(void) {
    safety_engine_t *eng = engine();
    if (!eng) return;
    const char *diff = "--- a/one.py\t2026-11-24 07:00:00\n"
                       "+++ b/one.py\t2026-11-24 07:01:00\n"
                       "@@ -1,4 +1,5 @@\n"
                       " first\n"
                       "\n" /* an empty context line whose space was stripped */
                       "-gone = \"" AWS "\"\n"
                       "+++ key = \"" GHP "\"\n" /* an added line that starts with "++ " */
                       "+tail\n"
                       " last\n"
                       "\\ No newline at end of file\n"
                       "--- a/two.txt\n"
                       "+++ b/two.txt\n"
                       "@@ -10,0 +11,2 @@\n"
                       "+mail jane@corp.io\r\n"
                       "+x " AWS "\r\n"
                       "--- a/three.txt\n"
                       "+++ /dev/null\n"
                       "@@ -1 +0,0 @@\n"
                       "-" AWS "\n";
    safety_hits_t h = {0};
    cu_error_t err = {0};
    CHECK(safety_hits_scan_diff(eng, SAFETY_STAGE_DATA, diff, strlen(diff), &h, &err) == CU_OK);
    CHECK_MSG(h.count == 3, "%zu hits", h.count);
    const safety_hit_t *g = find(&h, "one.py", "github_pat");
    CHECK(g && g->line == 3 && g->column == 11 && g->end_line == 3);
    const safety_hit_t *e = find(&h, "two.txt", "email");
    CHECK(e && e->line == 11 && e->column == 6);
    const safety_hit_t *a = find(&h, "two.txt", "aws_access_key");
    CHECK(a && a->line == 12 && a->column == 3 && a->end_column == 23);
    CHECK(find(&h, "three.txt", "aws_access_key") == NULL);
    CHECK(h.files == 2);
    json_t *j = safety_hits_json(eng, SAFETY_STAGE_DATA, &h);
    json_t *f0 = json_array_get(json_object_get(j, "findings"), 0);
    CHECK(f0 && !json_object_get(f0, "start")); /* not file offsets: left out */
    json_decref(j);
    safety_hits_free(&h);
    /* garbage is not an error, and finds nothing */
    const char *junk = "@@ nonsense @@\n+++\n+" AWS "\n";
    CHECK(safety_hits_scan_diff(eng, SAFETY_STAGE_DATA, junk, strlen(junk), &h, &err) == CU_OK);
    CHECK(h.count == 0);
    safety_hits_free(&h);
    safety_engine_free(eng);
}

static void test_text_reports(void) {
    safety_engine_t *eng = engine();
    if (!eng) return;
    const char *text = "a\n-----BEGIN EC PRIVATE"
                       " KEY-----\nMHcCAQEEIFak3Xq7Lm2Pz9KwT4nB8\n"
                       "-----END EC PRIVATE KEY-----\n";
    safety_hits_t h = {0};
    cu_error_t err = {0};
    CHECK(safety_hits_scan_text(eng, SAFETY_STAGE_DATA, "k.pem", text, strlen(text), &h, &err) ==
          CU_OK);
    CHECK(h.count == 1);
    if (h.count == 1) {
        CHECK(h.items[0].line == 2 && h.items[0].column == 1);
        CHECK(h.items[0].end_line == 4 && h.items[0].end_column == 29);
        CHECK(strlen(h.items[0].fingerprint) == 64);
    }
    json_t *s = safety_hits_sarif(eng, &h);
    char *dump = json_dumps(s, JSON_COMPACT);
    CHECK(dump && strstr(dump, "\"ruleId\":\"private_key_block\""));
    CHECK(dump && strstr(dump, "\"uri\":\"k.pem\""));
    CHECK(dump && !strstr(dump, "MHcCAQEEIFak3Xq7"));
    free(dump);
    json_decref(s);
    safety_hits_free(&h);
    safety_engine_free(eng);
}

TEST_MAIN(TEST(test_diff_parsing), TEST(test_text_reports))
