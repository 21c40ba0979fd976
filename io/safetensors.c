/*
 * safetensors reader and writer (see safetensors.h).
 *
 * The header is parsed with jansson (JSON_REJECT_DUPLICATES, so a name given
 * twice is an error instead of jansson silently keeping the last), then
 * every entry is checked against the size of the data area; ranges are
 * sorted to find overlaps. Data is read tensor by tensor with fread at the
 * entry's offset, so a 500 MB model never sits in memory twice.
 */
#include "io/safetensors.h"
#include "core/fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* ------------------------------------------------------------ conversions */

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13); /* inf, NaN (payload kept) */
    else if (exp != 0)
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    else if (man == 0)
        bits = sign; /* +-0 */
    else {           /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float st_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u); /* quiet NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u); /* nearest even; overflow rounds to inf */
    return (uint16_t)(bits >> 16);
}

static const struct {
    const char *name;
    st_dtype_t dtype;
    int size;
} DTYPES[] = {{"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}};

const char *st_dtype_name(st_dtype_t d) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].dtype == d) return DTYPES[i].name;
    return "?";
}

static int dtype_size(st_dtype_t d) {
    return d == ST_F32 ? 4 : 2;
}

/* ------------------------------------------------------------ the header */

void st_header_free(st_header_t *h) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) free(h->entries[i].name);
    for (int i = 0; i < h->n_meta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_values[i]);
    }
    free(h->entries);
    free(h->meta_keys);
    free(h->meta_values);
    memset(h, 0, sizeof *h);
}

static int parse_metadata(json_t *meta, const char *origin, st_header_t *h, cu_error_t *err) {
    if (!json_is_object(meta))
        return cu_error_set(err, CU_EFORMAT, "%s: __metadata__ is not an object", origin);
    size_t n = json_object_size(meta);
    h->meta_keys = calloc(n ? n : 1, sizeof(char *));
    h->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!h->meta_keys || !h->meta_values) return cu_error_set(err, CU_ENOMEM, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return cu_error_set(err, CU_EFORMAT, "%s: __metadata__ value '%s' is not a string",
                                origin, key);
        h->meta_keys[h->n_meta] = strdup(key);
        h->meta_values[h->n_meta] = strdup(json_string_value(v));
        h->n_meta++;
        if (!h->meta_keys[h->n_meta - 1] || !h->meta_values[h->n_meta - 1])
            return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    return CU_OK;
}

static int parse_entry(const char *name, json_t *v, uint64_t data_len, const char *origin,
                       st_entry_t *e, cu_error_t *err) {
    if (!json_is_object(v))
        return cu_error_set(err, CU_EFORMAT, "%s: tensor '%s': entry is not an object", origin,
                            name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: tensor '%s': needs a string dtype, a shape list and "
                            "data_offsets",
                            origin, name);
    int found = 0;
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (!strcmp(json_string_value(dt), DTYPES[i].name)) {
            e->dtype = DTYPES[i].dtype;
            found = 1;
        }
    if (!found)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: tensor '%s': unsupported dtype '%.32s' (F32, F16 and BF16 are "
                            "supported)",
                            origin, name, json_string_value(dt));
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return cu_error_set(err, CU_EFORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", origin,
                            name, nd, ST_MAX_DIMS);
    e->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return cu_error_set(err, CU_EFORMAT,
                                "%s: tensor '%s': shape must be non-negative integers", origin,
                                name);
        uint64_t di = (uint64_t)json_integer_value(d);
        e->shape[i] = (int64_t)di;
        if (di && numel > (UINT64_MAX / 8) / di)
            return cu_error_set(err, CU_EFORMAT, "%s: tensor '%s': shape too large", origin, name);
        numel *= di;
    }
    e->numel = (int64_t)numel;
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (json_array_size(offs) != 2 || !json_is_integer(b) || !json_is_integer(en) ||
        json_integer_value(b) < 0 || json_integer_value(en) < json_integer_value(b))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: tensor '%s': data_offsets must be [begin, end] with "
                            "0 <= begin <= end",
                            origin, name);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->end > data_len)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
                            "data (%llu bytes)",
                            origin, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                            (unsigned long long)data_len);
    if (e->end - e->begin != numel * (uint64_t)dtype_size(e->dtype))
        return cu_error_set(
            err, CU_EFORMAT, "%s: tensor '%s': %llu bytes for %llu %s elements (expected %llu)",
            origin, name, (unsigned long long)(e->end - e->begin), (unsigned long long)numel,
            st_dtype_name(e->dtype), (unsigned long long)(numel * (uint64_t)dtype_size(e->dtype)));
    return CU_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry_t *x = *(const st_entry_t *const *)a, *y = *(const st_entry_t *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int check_overlaps(st_header_t *h, const char *origin, cu_error_t *err) {
    st_entry_t **order = malloc((h->n ? (size_t)h->n : 1) * sizeof *order);
    if (!order) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int m = 0;
    for (int i = 0; i < h->n; i++)
        if (h->entries[i].end > h->entries[i].begin) order[m++] = &h->entries[i];
    qsort(order, (size_t)m, sizeof *order, cmp_begin);
    int rc = CU_OK;
    for (int i = 1; i < m && rc == CU_OK; i++)
        if (order[i]->begin < order[i - 1]->end)
            rc = cu_error_set(err, CU_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data",
                              origin, order[i - 1]->name, order[i]->name);
    free(order);
    return rc;
}

int st_parse_header(const char *json, size_t len, uint64_t data_len, const char *origin,
                    st_header_t *h, cu_error_t *err) {
    memset(h, 0, sizeof *h);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cu_error_set(err, CU_EFORMAT, "%s: header is not valid JSON: %s (byte %d)", origin,
                            jerr.text, jerr.position);
    int rc = CU_OK;
    if (!json_is_object(root)) {
        rc = cu_error_set(err, CU_EFORMAT, "%s: header is not a JSON object", origin);
        goto done;
    }
    size_t n = json_object_size(root);
    h->entries = calloc(n ? n : 1, sizeof *h->entries);
    if (!h->entries) {
        rc = cu_error_set(err, CU_ENOMEM, "out of memory");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if ((rc = parse_metadata(v, origin, h, err))) goto done;
            continue;
        }
        if (!*key) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: a tensor has an empty name", origin);
            goto done;
        }
        st_entry_t *e = &h->entries[h->n];
        if ((rc = parse_entry(key, v, data_len, origin, e, err))) goto done;
        if (!(e->name = strdup(key))) {
            rc = cu_error_set(err, CU_ENOMEM, "out of memory");
            goto done;
        }
        h->n++;
    }
    rc = check_overlaps(h, origin, err);
done:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ the reader */

typedef struct {
    char *path;
    FILE *f;
    uint64_t data_start;
    st_header_t h;
    void *map; /* st_map_entry's read-only mapping of the whole file, or NULL */
    size_t map_len;
} st_shard_t;

struct st_model {
    st_shard_t *shards;
    int n_shards;
    st_entry_t **index; /* every entry of every shard, sorted by name */
    int n;
};

static int open_shard(const char *path, st_shard_t *s, cu_error_t *err) {
    memset(s, 0, sizeof *s);
    if (!(s->path = strdup(path))) return cu_error_set(err, CU_ENOMEM, "out of memory");
    s->f = fopen(path, "rb");
    if (!s->f) return cu_error_set(err, CU_EINVAL, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(s->f), &sb) != 0 || !S_ISREG(sb.st_mode))
        return cu_error_set(err, CU_EINVAL, "%s is not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t lenb[8];
    if (size < 8 || fread(lenb, 1, 8, s->f) != 8)
        return cu_error_set(err, CU_EFORMAT, "%s: too short for a safetensors file (%llu bytes)",
                            path, (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > size - 8)
        return cu_error_set(
            err, CU_EFORMAT, "%s: header length %llu is impossible (file of %llu bytes, limit %u)",
            path, (unsigned long long)hlen, (unsigned long long)size, ST_MAX_HEADER);
    char *json = malloc(hlen);
    if (!json) return cu_error_set(err, CU_ENOMEM, "out of memory reading %s", path);
    int rc = CU_OK;
    if (fread(json, 1, hlen, s->f) != hlen)
        rc = cu_error_set(err, CU_EIO, "%s: cannot read the header", path);
    else
        rc = st_parse_header(json, hlen, size - 8 - hlen, path, &s->h, err);
    free(json);
    s->data_start = 8 + hlen;
    return rc;
}

static void close_shard(st_shard_t *s) {
    if (s->map) munmap(s->map, s->map_len);
    if (s->f) fclose(s->f);
    free(s->path);
    st_header_free(&s->h);
}

void st_close(st_model_t *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) close_shard(&m->shards[i]);
    free(m->shards);
    free(m->index);
    free(m);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_entry_t *const *)a)->name, (*(const st_entry_t *const *)b)->name);
}

/* Sorts every shard's entries by name; a name in two shards is an error. */
static int build_index(st_model_t *m, cu_error_t *err) {
    int total = 0;
    for (int s = 0; s < m->n_shards; s++) total += m->shards[s].h.n;
    m->index = malloc((total ? (size_t)total : 1) * sizeof *m->index);
    if (!m->index) return cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int s = 0; s < m->n_shards; s++)
        for (int i = 0; i < m->shards[s].h.n; i++) {
            m->shards[s].h.entries[i].file = s;
            m->index[m->n++] = &m->shards[s].h.entries[i];
        }
    qsort(m->index, (size_t)m->n, sizeof *m->index, cmp_name);
    for (int i = 1; i < m->n; i++)
        if (!strcmp(m->index[i]->name, m->index[i - 1]->name))
            return cu_error_set(err, CU_EFORMAT, "tensor '%s' is in both %s and %s",
                                m->index[i]->name, m->shards[m->index[i - 1]->file].path,
                                m->shards[m->index[i]->file].path);
    return CU_OK;
}

/* Opens each distinct shard the index's weight_map names (plain file names
 * beside the index) and checks every mapped tensor is in its shard. */
static int open_index(st_model_t *m, const char *index_path, cu_error_t *err) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cu_error_set(err, CU_EFORMAT, "%s: not valid JSON: %s (line %d)", index_path,
                            jerr.text, jerr.line);
    int rc = CU_OK;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        rc = cu_error_set(err, CU_EFORMAT, "%s: needs a non-empty weight_map object", index_path);
        goto done;
    }
    char dir[4096];
    const char *slash = strrchr(index_path, '/');
    int dlen = slash ? (int)(slash - index_path) : 1;
    snprintf(dir, sizeof dir, "%.*s", dlen, slash ? index_path : ".");
    m->shards = calloc(json_object_size(map), sizeof *m->shards);
    if (!m->shards) {
        rc = cu_error_set(err, CU_ENOMEM, "out of memory");
        goto done;
    }
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        const char *fn = json_is_string(file) ? json_string_value(file) : NULL;
        if (!fn || !*fn || strchr(fn, '/') || !strcmp(fn, "..") || !strcmp(fn, ".")) {
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s: weight_map['%s'] must be a file name beside the index",
                              index_path, name);
            goto done;
        }
        char path[4096];
        if ((rc = cu_format(path, sizeof path, err, "%s/%s", dir, fn))) goto done;
        int s = 0;
        while (s < m->n_shards && strcmp(m->shards[s].path, path)) s++;
        if (s == m->n_shards) {
            m->n_shards++;
            if ((rc = open_shard(path, &m->shards[s], err))) goto done;
        }
        int found = 0;
        for (int i = 0; i < m->shards[s].h.n && !found; i++)
            found = !strcmp(m->shards[s].h.entries[i].name, name);
        if (!found) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: tensor '%s' is mapped to %s but not in it",
                              index_path, name, path);
            goto done;
        }
    }
done:
    json_decref(root);
    return rc;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int st_open(const char *path, st_model_t **out, cu_error_t *err) {
    *out = NULL;
    st_model_t *m = calloc(1, sizeof *m);
    if (!m) return cu_error_set(err, CU_ENOMEM, "out of memory");
    char buf[4096];
    int rc = CU_OK;
    if (cu_is_dir(path)) {
        if ((rc = cu_format(buf, sizeof buf, err, "%s/%s", path, ST_INDEX_NAME))) goto fail;
        if (access(buf, F_OK) != 0 &&
            (rc = cu_format(buf, sizeof buf, err, "%s/%s", path, ST_SINGLE_NAME)))
            goto fail;
        if (access(buf, F_OK) != 0) {
            rc = cu_error_set(err, CU_EINVAL, "%s holds neither %s nor %s", path, ST_INDEX_NAME,
                              ST_SINGLE_NAME);
            goto fail;
        }
        path = buf;
    }
    if (has_suffix(path, ".json"))
        rc = open_index(m, path, err);
    else {
        m->shards = calloc(1, sizeof *m->shards);
        if (!m->shards)
            rc = cu_error_set(err, CU_ENOMEM, "out of memory");
        else {
            m->n_shards = 1;
            rc = open_shard(path, &m->shards[0], err);
        }
    }
    if (rc == CU_OK) rc = build_index(m, err);
    if (rc == CU_OK) {
        *out = m;
        return CU_OK;
    }
fail:
    st_close(m);
    return rc;
}

int st_count(const st_model_t *m) {
    return m->n;
}
const st_entry_t *st_entry(const st_model_t *m, int i) {
    return m->index[i];
}
int st_file_count(const st_model_t *m) {
    return m->n_shards;
}
const char *st_file_path(const st_model_t *m, int file) {
    return m->shards[file].path;
}

const st_entry_t *st_find(const st_model_t *m, const char *name) {
    int lo = 0, hi = m->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(m->index[mid]->name, name);
        if (!c) return m->index[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *st_metadata(const st_model_t *m, const char *key) {
    if (m->n_shards == 0) return NULL;
    const st_header_t *h = &m->shards[0].h;
    for (int i = 0; i < h->n_meta; i++)
        if (!strcmp(h->meta_keys[i], key)) return h->meta_values[i];
    return NULL;
}

int st_read_f32(st_model_t *m, const st_entry_t *e, float *dst, cu_error_t *err) {
    st_shard_t *s = &m->shards[e->file];
    size_t bytes = (size_t)(e->end - e->begin);
    if (bytes == 0) return CU_OK;
    if (fseeko(s->f, (off_t)(s->data_start + e->begin), SEEK_SET) != 0)
        return cu_error_set(err, CU_EIO, "%s: tensor '%s': cannot seek", s->path, e->name);
    if (e->dtype == ST_F32) {
        if (fread(dst, 1, bytes, s->f) != bytes)
            return cu_error_set(err, CU_EIO, "%s: tensor '%s': short read", s->path, e->name);
        return CU_OK;
    }
    /* 16-bit: read into the second half of dst, convert front to back */
    uint16_t *half = (uint16_t *)(dst + e->numel) - e->numel;
    if (fread(half, 1, bytes, s->f) != bytes)
        return cu_error_set(err, CU_EIO, "%s: tensor '%s': short read", s->path, e->name);
    for (int64_t i = 0; i < e->numel; i++) {
        uint16_t v;
        memcpy(&v, &half[i], 2);
        dst[i] = e->dtype == ST_F16 ? st_f16_to_f32(v) : st_bf16_to_f32(v);
    }
    return CU_OK;
}

const void *st_map_entry(st_model_t *m, const st_entry_t *e, cu_error_t *err) {
    st_shard_t *s = &m->shards[e->file];
    if (!s->map) {
        struct stat sb;
        if (fstat(fileno(s->f), &sb) != 0 || sb.st_size <= 0) {
            cu_error_set(err, CU_EIO, "%s: cannot stat", s->path);
            return NULL;
        }
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fileno(s->f), 0);
        if (p == MAP_FAILED) {
            cu_error_set(err, CU_EIO, "%s: cannot map: %s", s->path, strerror(errno));
            return NULL;
        }
        s->map = p;
        s->map_len = (size_t)sb.st_size;
    }
    uint64_t at = s->data_start + e->begin;
    if (at % 2 || s->data_start + e->end > s->map_len) {
        cu_error_set(err, CU_EFORMAT, "%s: tensor '%s' is not 2-byte aligned in the file", s->path,
                     e->name);
        return NULL;
    }
    return (const char *)s->map + at;
}

/* ------------------------------------------------------------ the writer */

static int64_t tensor_numel(const st_tensor_t *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes. */
static char *build_header(const st_tensor_t *tensors, int n, st_dtype_t dtype,
                          const st_dtype_t *dtypes, const char *const *meta, int n_meta,
                          size_t *len, cu_error_t *err) {
    json_t *root = json_object();
    uint64_t off = 0;
    int rc = root ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK && n_meta > 0) {
        json_t *mo = json_object();
        for (int i = 0; i < n_meta; i++)
            json_object_set_new(mo, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(root, "__metadata__", mo);
    }
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const st_tensor_t *t = &tensors[i];
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || json_object_get(root, t->name)) {
            rc = cu_error_set(err, CU_EINVAL, "tensor '%s': bad shape or duplicate name", t->name);
            break;
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        st_dtype_t dt = dtypes ? dtypes[i] : dtype;
        uint64_t bytes = (uint64_t)tensor_numel(t) * (uint64_t)dtype_size(dt);
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_name(dt), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + bytes));
        if (!e || json_object_set_new(root, t->name, e))
            rc = cu_error_set(err, CU_ENOMEM, "out of memory");
        off += bytes;
    }
    char *text = rc == CU_OK ? json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(root);
    if (rc != CU_OK) return NULL;
    if (!text) {
        cu_error_set(err, CU_ENOMEM, "out of memory");
        return NULL;
    }
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        cu_error_set(err, CU_ENOMEM, "out of memory");
        return NULL;
    }
    memset(out + tl, ' ', padded - tl);
    out[padded] = 0;
    *len = padded;
    return out;
}

static int write_data(FILE *f, const st_tensor_t *t, st_dtype_t dtype) {
    int64_t n = tensor_numel(t);
    if (dtype == ST_F32) return n == 0 || fwrite(t->data, 4, (size_t)n, f) == (size_t)n;
    uint16_t buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        for (int64_t j = 0; j < k; j++) buf[j] = st_f32_to_bf16(t->data[i + j]);
        if (fwrite(buf, 2, (size_t)k, f) != (size_t)k) return 0;
    }
    return 1;
}

/* ------------------------------------------------------- streaming writer */

struct st_stream {
    FILE *f;
    char path[4096], tmp[4096];
    st_dtype_t *dtypes; /* each tensor's */
    uint64_t *numel;
    int n, cur;         /* tensors; the one being written */
    uint64_t cur_left;  /* values of tensor cur still to come */
    uint64_t want, put; /* values: in all, written so far */
    char *header;       /* its text (for st_stream_checksum) */
    size_t hlen;
    EVP_MD_CTX *md; /* sha256 of the data area, when asked */
    long sum_at;    /* file offset of the 64 hex digits it goes to */
};

static void stream_free(st_stream_t *s) {
    EVP_MD_CTX_free(s->md);
    free(s->dtypes);
    free(s->numel);
    free(s->header);
    free(s);
}

int st_stream_begin_typed(const char *path, const st_tensor_t *tensors, const st_dtype_t *dtypes,
                          int n, const char *const *meta, int n_meta, st_stream_t **out,
                          cu_error_t *err) {
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (dtypes[i] != ST_F32 && dtypes[i] != ST_BF16)
            return cu_error_set(err, CU_EINVAL, "%s: can only write F32 or BF16", path);
    st_stream_t *s = calloc(1, sizeof *s);
    if (!s) return cu_error_set(err, CU_ENOMEM, "out of memory");
    s->n = n;
    s->dtypes = malloc((n ? (size_t)n : 1) * sizeof *s->dtypes);
    s->numel = malloc((n ? (size_t)n : 1) * sizeof *s->numel);
    int rc = s->dtypes && s->numel ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int i = 0; rc == CU_OK && i < n; i++) {
        s->dtypes[i] = dtypes[i];
        s->numel[i] = (uint64_t)tensor_numel(&tensors[i]);
        s->want += s->numel[i];
    }
    if (rc == CU_OK) {
        s->header = build_header(tensors, n, ST_F32, dtypes, meta, n_meta, &s->hlen, err);
        if (!s->header) rc = cu_error_prefix(err, "%s", path);
    }
    if (rc == CU_OK) rc = cu_format(s->path, sizeof s->path, err, "%s", path);
    if (rc == CU_OK) rc = cu_format(s->tmp, sizeof s->tmp, err, "%s.tmp.%d", path, (int)getpid());
    if (rc == CU_OK && !(s->f = fopen(s->tmp, "wb")))
        rc = cu_error_set(err, CU_EIO, "cannot create %s: %s", s->tmp, strerror(errno));
    if (rc == CU_OK) {
        uint8_t lenb[8];
        for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)s->hlen >> (8 * i));
        if (fwrite(lenb, 1, 8, s->f) != 8 || fwrite(s->header, 1, s->hlen, s->f) != s->hlen)
            rc = cu_error_set(err, CU_EIO, "cannot write %s: %s", s->tmp, strerror(errno));
    }
    while (rc == CU_OK && s->cur < n && s->numel[s->cur] == 0) s->cur++;
    if (rc == CU_OK && s->cur < n) s->cur_left = s->numel[s->cur];
    if (rc) {
        st_stream_abort(s);
        return rc;
    }
    *out = s;
    return CU_OK;
}

int st_stream_begin(const char *path, const st_tensor_t *tensors, int n, st_dtype_t dtype,
                    const char *const *meta, int n_meta, st_stream_t **out, cu_error_t *err) {
    *out = NULL;
    st_dtype_t *d = malloc((n ? (size_t)n : 1) * sizeof *d);
    if (!d) return cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) d[i] = dtype;
    int rc = st_stream_begin_typed(path, tensors, d, n, meta, n_meta, out, err);
    free(d);
    return rc;
}

int st_stream_checksum(st_stream_t *s, const char *key, cu_error_t *err) {
    char pat[300];
    int rc = cu_format(pat, sizeof pat, err, "\"%s\":\"", key);
    const char *at = rc ? NULL : strstr(s->header, pat);
    if (rc == CU_OK && (!at || strlen(at + strlen(pat)) < 65 || at[strlen(pat) + 64] != '"'))
        return cu_error_set(err, CU_EINVAL, "%s: metadata '%s' must be a 64-character placeholder",
                            s->path, key);
    if (rc) return rc;
    s->sum_at = 8 + (long)(at + strlen(pat) - s->header);
    if (!(s->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(s->md, EVP_sha256(), NULL))
        return cu_error_set(err, CU_EINTERNAL, "sha256 unavailable");
    return CU_OK;
}

/* Writes n values of tensor cur's dtype (all within it). */
static int stream_write(st_stream_t *s, const float *values, size_t n) {
    if (s->dtypes[s->cur] == ST_F32) {
        if (s->md) EVP_DigestUpdate(s->md, values, n * 4);
        return fwrite(values, 4, n, s->f) == n;
    }
    uint16_t buf[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++) buf[j] = st_f32_to_bf16(values[i + j]);
        if (s->md) EVP_DigestUpdate(s->md, buf, k * 2);
        if (fwrite(buf, 2, k, s->f) != k) return 0;
    }
    return 1;
}

int st_stream_put(st_stream_t *s, const float *values, size_t n, cu_error_t *err) {
    if (n > s->want - s->put)
        return cu_error_set(err, CU_EINVAL, "%s: %zu values past the end of the tensors", s->path,
                            (size_t)(n - (s->want - s->put)));
    while (n > 0) {
        size_t k = n < s->cur_left ? n : (size_t)s->cur_left;
        if (!stream_write(s, values, k))
            return cu_error_set(err, CU_EIO, "cannot write %s: %s", s->tmp, strerror(errno));
        values += k, n -= k, s->put += k, s->cur_left -= k;
        while (s->cur_left == 0 && s->cur + 1 < s->n) s->cur_left = s->numel[++s->cur];
    }
    return CU_OK;
}

/* The data area's sha256 into the header's placeholder. */
static int stream_put_checksum(st_stream_t *s) {
    unsigned char d[32];
    unsigned dl = 0;
    char hex[65];
    if (!EVP_DigestFinal_ex(s->md, d, &dl) || dl != 32) return 0;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return fseek(s->f, s->sum_at, SEEK_SET) == 0 && fwrite(hex, 1, 64, s->f) == 64;
}

int st_stream_end(st_stream_t *s, cu_error_t *err) {
    int rc = CU_OK;
    if (s->put != s->want)
        rc = cu_error_set(err, CU_EINVAL, "%s: %llu of %llu values written", s->path,
                          (unsigned long long)s->put, (unsigned long long)s->want);
    if (rc == CU_OK) {
        int ok = !s->md || stream_put_checksum(s);
        ok = ok && fflush(s->f) == 0 && fsync(fileno(s->f)) == 0;
        if (fclose(s->f) != 0) ok = 0;
        s->f = NULL;
        if (!ok)
            rc = cu_error_set(err, CU_EIO, "cannot write %s: %s", s->tmp, strerror(errno));
        else if (rename(s->tmp, s->path) != 0)
            rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", s->tmp, s->path,
                              strerror(errno));
    }
    if (rc) {
        st_stream_abort(s);
        return rc;
    }
    stream_free(s);
    return CU_OK;
}

void st_stream_abort(st_stream_t *s) {
    if (!s) return;
    if (s->f) fclose(s->f);
    if (s->tmp[0]) unlink(s->tmp);
    stream_free(s);
}

int st_write(const char *path, const st_tensor_t *tensors, int n, st_dtype_t dtype,
             const char *const *meta, int n_meta, cu_error_t *err) {
    if (dtype != ST_F32 && dtype != ST_BF16)
        return cu_error_set(err, CU_EINVAL, "%s: can only write F32 or BF16", path);
    size_t hlen;
    char *header = build_header(tensors, n, dtype, NULL, meta, n_meta, &hlen, err);
    if (!header) return cu_error_prefix(err, "%s", path);
    char tmp[4096];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
    FILE *f = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !f) rc = cu_error_set(err, CU_EIO, "cannot create %s: %s", tmp, strerror(errno));
    if (f) {
        uint8_t lenb[8];
        for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        int ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
        for (int i = 0; ok && i < n; i++) ok = write_data(f, &tensors[i], dtype);
        ok = fflush(f) == 0 && ok && fsync(fileno(f)) == 0;
        if (fclose(f) != 0) ok = 0;
        if (!ok)
            rc = cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            rc =
                cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (rc) unlink(tmp);
    }
    free(header);
    return rc;
}
