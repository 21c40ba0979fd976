/*
 * Unit tests of io/safetensors: round trips (F32 and BF16, single file and
 * sharded), the 16-bit conversions against a reference formula on all 65536
 * bit patterns, one hand-written rejection per header rule (each message
 * must name the tensor), and a fuzz loop that mutates a valid file's header
 * thousands of times: every mutant is either rejected with a message or
 * parses to something self-consistent, and none crashes (run under ASan).
 */
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "io/safetensors.h"

static char tmpdir[256];

static void make_tmpdir(void) {
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cu_st_test.XXXXXX");
    if (!mkdtemp(tmpdir)) abort();
}

static void tmp_path(char *buf, size_t n, const char *name) {
    make_tmpdir();
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* A small file of three tensors a (2, 3), b (4), c (), written as dtype. */
static int write_sample(const char *path, st_dtype_t dtype, float *a, float *b, float *c) {
    for (int i = 0; i < 6; i++) a[i] = (float)i * 0.5f - 1.25f;
    for (int i = 0; i < 4; i++) b[i] = (float)(i + 1) * 3.0f;
    c[0] = -7.0f;
    st_tensor_t t[3] = {{"a", a, 2, {2, 3}}, {"b", b, 1, {4}}, {"c", c, 0, {0}}};
    const char *meta[] = {"format", "pt", "note", "x"};
    cu_error_t err;
    int rc = st_write(path, t, 3, dtype, meta, 2, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc;
}

static void test_roundtrip(void) {
    char path[512];
    float a[6], b[4], c[1], out[8];
    for (int k = 0; k < 2; k++) {
        st_dtype_t dt = k ? ST_BF16 : ST_F32;
        tmp_path(path, sizeof path, k ? "rt_bf16.safetensors" : "rt_f32.safetensors");
        CHECK(write_sample(path, dt, a, b, c) == CU_OK);
        st_model_t *m;
        cu_error_t err;
        CHECK(st_open(path, &m, &err) == CU_OK);
        if (!m) continue;
        CHECK(st_count(m) == 3);
        CHECK(st_metadata(m, "format") && !strcmp(st_metadata(m, "format"), "pt"));
        const st_entry_t *e = st_find(m, "a");
        CHECK(e && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 3 && e->dtype == dt);
        CHECK(e && st_read_f32(m, e, out, &err) == CU_OK);
        /* all sample values are exact in bf16 */
        for (int i = 0; i < 6; i++) CHECK(out[i] == a[i]);
        e = st_find(m, "c");
        CHECK(e && e->ndim == 0 && e->numel == 1);
        CHECK(e && st_read_f32(m, e, out, &err) == CU_OK && out[0] == -7.0f);
        CHECK(st_find(m, "zz") == NULL);
        st_close(m);
    }
}

static void test_sharded(void) {
    char p1[512], p2[512], idx[512];
    float a[6], b[4], c[1];
    tmp_path(p1, sizeof p1, "shard-1.safetensors");
    tmp_path(p2, sizeof p2, "shard-2.safetensors");
    write_sample(p1, ST_F32, a, b, c);
    st_tensor_t t = {"d", a, 1, {6}};
    cu_error_t err;
    CHECK(st_write(p2, &t, 1, ST_F32, NULL, 0, &err) == CU_OK);
    tmp_path(idx, sizeof idx, "model.safetensors.index.json");
    FILE *f = fopen(idx, "w");
    fputs("{\"metadata\": {}, \"weight_map\": {\"a\": \"shard-1.safetensors\", \"b\": "
          "\"shard-1.safetensors\", \"c\": \"shard-1.safetensors\", \"d\": "
          "\"shard-2.safetensors\"}}",
          f);
    fclose(f);
    st_model_t *m;
    CHECK(st_open(tmpdir, &m, &err) == CU_OK);
    if (m) {
        CHECK(st_count(m) == 4 && st_file_count(m) == 2);
        float out[6];
        const st_entry_t *e = st_find(m, "d");
        CHECK(e && e->file == 1 && st_read_f32(m, e, out, &err) == CU_OK && out[5] == a[5]);
        st_close(m);
    }
    /* a mapped tensor that is not in its shard, and a path outside the folder */
    f = fopen(idx, "w");
    fputs("{\"weight_map\": {\"zz\": \"shard-1.safetensors\"}}", f);
    fclose(f);
    CHECK(st_open(idx, &m, &err) != CU_OK && strstr(err.msg, "'zz'"));
    f = fopen(idx, "w");
    fputs("{\"weight_map\": {\"a\": \"../x.safetensors\"}}", f);
    fclose(f);
    CHECK(st_open(idx, &m, &err) != CU_OK && strstr(err.msg, "weight_map['a']"));
    unlink(idx);
}

/* ---------------------------------------------------------- conversions */

static double ref_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t b) {
    int s = b >> 15, e = (b >> 7) & 255, m = b & 127;
    double v;
    if (e == 255)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -133);
    else
        v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static void test_conversions(void) {
    int bad16 = 0, badb = 0, bad_back = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float f = st_f16_to_f32((uint16_t)i), g = st_bf16_to_f32((uint16_t)i);
        double rf = ref_f16((uint16_t)i), rg = ref_bf16((uint16_t)i);
        if (isnan(rf) ? !isnan(f) : ((double)f != rf || !signbit(f) != !signbit(rf))) bad16++;
        if (isnan(rg) ? !isnan(g) : ((double)g != rg || !signbit(g) != !signbit(rg))) badb++;
        /* float32 -> bf16 is the identity on values already in bf16 */
        uint16_t back = st_f32_to_bf16(g);
        if (isnan(g) ? !isnan(st_bf16_to_f32(back)) : back != i) bad_back++;
    }
    CHECK_MSG(bad16 == 0, "%d f16 patterns differ", bad16);
    CHECK_MSG(badb == 0, "%d bf16 patterns differ", badb);
    CHECK_MSG(bad_back == 0, "%d bf16 round trips differ", bad_back);
    /* rounding to nearest, ties to even */
    CHECK(st_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);            /* tie, even is down */
    CHECK(st_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);        /* tie, even is up */
    CHECK(st_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81); /* above the tie */
    CHECK(st_f32_to_bf16(3.4028235e38f) == 0x7f80);             /* rounds to inf */
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
}

/* ----------------------------------------------------- rejection cases */

static void expect_reject(const char *json, uint64_t data_len, const char *fragment,
                          const char *fragment2) {
    st_header_t h;
    cu_error_t err = {0};
    int rc = st_parse_header(json, strlen(json), data_len, "f.safetensors", &h, &err);
    CHECK_MSG(rc == CU_EFORMAT, "accepted: %s", json);
    CHECK_MSG(strstr(err.msg, fragment) && strstr(err.msg, "f.safetensors"),
              "'%s' lacks '%s' for %s", err.msg, fragment, json);
    if (fragment2) CHECK_MSG(strstr(err.msg, fragment2), "'%s' lacks '%s'", err.msg, fragment2);
    st_header_free(&h);
}

static void test_rejections(void) {
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    st_header_t h;
    cu_error_t err;
    CHECK(st_parse_header(ok, strlen(ok), 16, "f", &h, &err) == CU_OK && h.n == 1);
    st_header_free(&h);
    expect_reject("{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
                  "unsupported dtype 'I64'", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,16]}}", 16,
                  "non-negative", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,16]}}", 16,
                  "non-negative", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 24,
                  "16 bytes for 6 F32 elements", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
                  "expected 8", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", 16,
                  "past the end", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}", 16,
                  "data_offsets", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0]}}", 16,
                  "data_offsets", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                  "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                  16, "overlap", "'w'");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "duplicate", "w");
    expect_reject("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", "'w'");
    expect_reject("{\"w\":[1,2]}", 4, "not an object", "'w'");
    expect_reject("[1,2,3]", 4, "not a JSON object", NULL);
    expect_reject("{\"w\": ", 4, "not valid JSON", NULL);
    expect_reject("{\"w\xff\":{}}", 4, "not valid JSON", NULL);
    expect_reject("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", NULL);
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                  "\"data_offsets\":[0,16]}}",
                  16, "too large", "'w'");
}

/* Header length fields that cannot be right, through st_open. */
static void test_bad_lengths(void) {
    char path[512];
    tmp_path(path, sizeof path, "len.safetensors");
    const uint64_t lens[] = {0, 1, 1000, ((uint64_t)1 << 40), UINT64_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        FILE *f = fopen(path, "wb");
        uint8_t b[8];
        for (int k = 0; k < 8; k++) b[k] = (uint8_t)(lens[i] >> (8 * k));
        fwrite(b, 1, 8, f);
        fputs("{}      ", f);
        fclose(f);
        st_model_t *m;
        cu_error_t err;
        CHECK(st_open(path, &m, &err) == CU_EFORMAT && strstr(err.msg, "header length"));
    }
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    st_model_t *m;
    cu_error_t err;
    CHECK(st_open(path, &m, &err) == CU_EFORMAT && strstr(err.msg, "too short"));
    CHECK(st_open("/nonexistent/x.safetensors", &m, &err) == CU_EINVAL);
}

/* ------------------------------------------------------------ fuzzing */

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return b;
}

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* What a successful parse must satisfy. */
static int consistent(const st_header_t *h, uint64_t data_len) {
    for (int i = 0; i < h->n; i++) {
        const st_entry_t *e = &h->entries[i];
        int sz = e->dtype == ST_F32 ? 4 : 2;
        if (e->end > data_len || e->begin > e->end) return 0;
        if (e->end - e->begin != (uint64_t)e->numel * (uint64_t)sz) return 0;
        for (int j = 0; j < i; j++) {
            const st_entry_t *o = &h->entries[j];
            if (e->begin < o->end && o->begin < e->end && e->end > e->begin && o->end > o->begin)
                return 0;
            if (!strcmp(e->name, o->name)) return 0;
        }
    }
    return 1;
}

static void test_fuzz(void) {
    char path[512], mpath[512];
    float a[6], b[4], c[1];
    tmp_path(path, sizeof path, "fuzz.safetensors");
    tmp_path(mpath, sizeof mpath, "mutant.safetensors");
    CHECK(write_sample(path, ST_F32, a, b, c) == CU_OK);
    size_t len;
    uint8_t *orig = slurp(path, &len);
    CHECK(orig && len > 8);
    if (!orig) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | orig[i];
    uint8_t *buf = malloc(len + 64);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int rejected = 0, accepted = 0, through_file = 0;
    const char *tokens[] = {
        "\"F16\"", "\"I8\"",           "-1", "99999", "[]",   "{}",         "\"a\"", ",", "]",
        "}",       "\"__metadata__\"", "0",  "1e3",   "null", "\"\\u0000\""};
    for (int iter = 0; iter < 6000; iter++) {
        size_t n = len;
        memcpy(buf, orig, len);
        uint8_t *json = buf + 8;
        int kind = (int)(xs(&seed) % 4);
        int flips = 1 + (int)(xs(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(xs(&seed) % hlen);
            if (kind == 0)
                json[at] ^= (uint8_t)(1u << (xs(&seed) % 8)); /* bit flip */
            else if (kind == 1)
                json[at] = (uint8_t)xs(&seed); /* byte */
            else if (kind == 2)
                json[at] = "0123456789[]{},:\"-"[xs(&seed) % 18];
            else { /* splice a token over the bytes at `at` */
                const char *tk = tokens[xs(&seed) % (sizeof tokens / sizeof tokens[0])];
                size_t tl = strlen(tk);
                if (at + tl <= hlen) memcpy(json + at, tk, tl);
            }
        }
        uint64_t data_len = len - 8 - hlen;
        if (iter % 7 == 0) data_len = xs(&seed) % (data_len + 8); /* truncated data */
        st_header_t h;
        cu_error_t err = {0};
        int rc = st_parse_header((const char *)json, (size_t)hlen, data_len, "mutant", &h, &err);
        if (rc) {
            rejected++;
            CHECK_MSG(rc == CU_EFORMAT && err.msg[0], "rc %d without a message", rc);
        } else {
            accepted++;
            CHECK(consistent(&h, data_len));
        }
        st_header_free(&h);
        /* every 10th mutant goes through a file, with truncation or a bad length */
        if (iter % 10 == 0) {
            through_file++;
            if (iter % 20 == 0) n = 8 + (size_t)(xs(&seed) % (len - 8 + 1));
            if (iter % 30 == 0)
                for (int k = 0; k < 8; k++) buf[k] ^= (uint8_t)(xs(&seed) % 3 ? 0 : xs(&seed));
            FILE *f = fopen(mpath, "wb");
            fwrite(buf, 1, n, f);
            fclose(f);
            st_model_t *m;
            if (st_open(mpath, &m, &err) == CU_OK) {
                float out[64];
                for (int i = 0; i < st_count(m); i++) {
                    const st_entry_t *e = st_entry(m, i);
                    if (e->numel <= 64) CHECK(st_read_f32(m, e, out, &err) == CU_OK);
                }
                st_close(m);
            } else
                CHECK(err.msg[0]);
        }
    }
    fprintf(stderr, "  fuzz: %d rejected, %d accepted, %d through files\n", rejected, accepted,
            through_file);
    CHECK(rejected > 1000);
    CHECK(accepted > 0);
    free(buf);
    free(orig);
}

/* ------------------------------------------------------- streaming writer */

/* The streaming writer gives the bytes st_write gives, whatever the chunk
 * sizes (here across tensor boundaries and one value at a time); too few or
 * too many values fail and leave no file behind. */
static void test_stream(void) {
    float a[6], b[4], c[1];
    char ref[512], path[512], tmp[600];
    for (int k = 0; k < 2; k++) {
        st_dtype_t dt = k ? ST_BF16 : ST_F32;
        tmp_path(ref, sizeof ref, k ? "st_ref_bf16.safetensors" : "st_ref_f32.safetensors");
        CHECK(write_sample(ref, dt, a, b, c) == CU_OK);
        st_tensor_t t[3] = {{"a", NULL, 2, {2, 3}}, {"b", NULL, 1, {4}}, {"c", NULL, 0, {0}}};
        const char *meta[] = {"format", "pt", "note", "x"};
        float all[11];
        memcpy(all, a, sizeof a);
        memcpy(all + 6, b, sizeof b);
        all[10] = c[0];
        for (int chunk = 1; chunk <= 11; chunk += 4) {
            tmp_path(path, sizeof path, "stream.safetensors");
            st_stream_t *s;
            cu_error_t err;
            CHECK_MSG(st_stream_begin(path, t, 3, dt, meta, 2, &s, &err) == CU_OK, "%s", err.msg);
            for (int i = 0; s && i < 11; i += chunk)
                CHECK(st_stream_put(s, all + i, (size_t)(11 - i < chunk ? 11 - i : chunk), &err) ==
                      CU_OK);
            CHECK(s && st_stream_end(s, &err) == CU_OK);
            size_t n1 = 0, n2 = 0;
            uint8_t *x = slurp(ref, &n1), *y = slurp(path, &n2);
            CHECK_MSG(x && y && n1 == n2 && n1 > 0 && !memcmp(x, y, n1), "dtype %d chunk %d", k,
                      chunk);
            free(x), free(y);
            unlink(path);
        }
        /* one value short: no file, and no temporary left */
        st_stream_t *s;
        cu_error_t err;
        CHECK(st_stream_begin(path, t, 3, dt, meta, 2, &s, &err) == CU_OK);
        CHECK(s && st_stream_put(s, all, 10, &err) == CU_OK);
        CHECK(s && st_stream_end(s, &err) != CU_OK && strstr(err.msg, "10 of 11"));
        CHECK(access(path, F_OK) != 0);
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
        CHECK(access(tmp, F_OK) != 0);
        /* one value too many: refused at the put */
        CHECK(st_stream_begin(path, t, 3, dt, meta, 2, &s, &err) == CU_OK);
        CHECK(s && st_stream_put(s, all, 11, &err) == CU_OK);
        CHECK(s && st_stream_put(s, all, 1, &err) != CU_OK);
        st_stream_abort(s);
        CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);
    }
}

/* Each tensor in its own dtype, and the data's sha256 written into a
 * metadata placeholder at the end. */
static void test_stream_typed(void) {
    float all[11];
    for (int i = 0; i < 11; i++) all[i] = 0.1f * (float)i - 0.37f;
    st_tensor_t t[3] = {{"a", NULL, 2, {2, 3}}, {"b", NULL, 1, {4}}, {"c", NULL, 0, {0}}};
    st_dtype_t dt[3] = {ST_BF16, ST_F32, ST_BF16};
    char zeros[65];
    memset(zeros, '0', 64);
    zeros[64] = 0;
    const char *meta[] = {"format", "pt", "sum", zeros};
    char path[512];
    tmp_path(path, sizeof path, "typed.safetensors");
    st_stream_t *s = NULL;
    cu_error_t err;
    CHECK_MSG(st_stream_begin_typed(path, t, dt, 3, meta, 2, &s, &err) == CU_OK, "%s", err.msg);
    CHECK(s && st_stream_checksum(s, "format", &err) != CU_OK); /* not a placeholder */
    CHECK(s && st_stream_checksum(s, "sum", &err) == CU_OK);
    for (int i = 0; s && i < 11; i += 3)
        CHECK(st_stream_put(s, all + i, (size_t)(11 - i < 3 ? 11 - i : 3), &err) == CU_OK);
    CHECK(s && st_stream_end(s, &err) == CU_OK);
    st_model_t *m = NULL;
    CHECK_MSG(st_open(path, &m, &err) == CU_OK, "%s", err.msg);
    if (!m) return;
    const st_entry_t *a = st_find(m, "a"), *b = st_find(m, "b"), *c = st_find(m, "c");
    CHECK(a && b && c && a->dtype == ST_BF16 && b->dtype == ST_F32 && c->dtype == ST_BF16);
    float got[6];
    if (a && st_read_f32(m, a, got, &err) == CU_OK)
        for (int i = 0; i < 6; i++) CHECK(got[i] == st_bf16_to_f32(st_f32_to_bf16(all[i])));
    if (b && st_read_f32(m, b, got, &err) == CU_OK) CHECK(!memcmp(got, all + 6, 4 * sizeof(float)));
    /* the recorded sum is the data area's */
    size_t n = 0;
    uint8_t *x = slurp(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; x && i >= 0; i--) hlen = (hlen << 8) | x[i];
    unsigned char d[32];
    unsigned dl = 0;
    char hex[65] = "";
    if (x && n > 8 + hlen && EVP_Digest(x + 8 + hlen, n - 8 - hlen, d, &dl, EVP_sha256(), NULL))
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    const char *sum = st_metadata(m, "sum");
    CHECK_MSG(sum && !strcmp(sum, hex), "recorded %s, data %s", sum ? sum : "(none)", hex);
    CHECK(n == 8 + hlen + 6 * 2 + 4 * 4 + 2);
    free(x);
    st_close(m);
    unlink(path);
}

static void cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (tmpdir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

TEST_MAIN(TEST(test_roundtrip), TEST(test_sharded), TEST(test_conversions), TEST(test_rejections),
          TEST(test_bad_lengths), TEST(test_fuzz), TEST(test_stream), TEST(test_stream_typed),
          TEST(cleanup))
