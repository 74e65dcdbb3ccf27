/* Safetensors reader: parses and validates headers, exposes tensors as views
 * into read-only mappings. The index file and the sharded layout live in
 * safetensors_dir.c; this file holds the per-image parser and the lookup. */
#include "io/safetensors_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* A header longer than this is refused: real ones are a few hundred KB. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

static const struct {
    const char *name;
    ts_dtype dt;
    size_t size;
} k_dtypes[] = {
    {"F32", TS_DT_F32, 4}, {"F16", TS_DT_F16, 2}, {"BF16", TS_DT_BF16, 2},
    {"I32", TS_DT_I32, 4}, {"I64", TS_DT_I64, 8},
};
#define N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

size_t ts_dtype_size(ts_dtype dt) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].dt == dt) return k_dtypes[i].size;
    return 0;
}

const char *ts_dtype_name(ts_dtype dt) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].dt == dt) return k_dtypes[i].name;
    return "?";
}

ts_st *st_new(void) { return calloc(1, sizeof(ts_st)); }

void ts_st_close(ts_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->t[i].name);
    free(st->t);
    for (size_t i = 0; i < st->n_shards; i++) {
        ts_map_close(&st->shards[i].map);
        free(st->shards[i].path);
    }
    free(st->shards);
    free(st);
}

st_shard *st_add_shard(ts_st *st, const char *path, size_t base_off) {
    if (st->n_shards == st->cap_shards) {
        size_t cap = st->cap_shards ? st->cap_shards * 2 : 4;
        st_shard *p = realloc(st->shards, cap * sizeof *p);
        if (!p) return NULL;
        st->shards = p;
        st->cap_shards = cap;
    }
    char *copy = strdup(path);
    if (!copy) return NULL;
    st_shard *sh = &st->shards[st->n_shards++];
    memset(sh, 0, sizeof *sh);
    sh->path = copy;
    sh->base = copy + base_off;
    return sh;
}

static ts_status push_tensor(ts_st *st, const ts_tensor *t) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        ts_tensor *p = realloc(st->t, cap * sizeof *p);
        if (!p) return TS_ERR_NOMEM;
        st->t = p;
        st->cap = cap;
    }
    st->t[st->n++] = *t;
    return TS_OK;
}

/* Byte range of one tensor inside a data area, for the overlap check. */
typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads a non-negative JSON integer; false if v is not one. */
static bool get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

/* Validates one header entry and appends the tensor it describes. */
static ts_status parse_entry(ts_st *st, const char *key, json_t *val, const unsigned char *area,
                             uint64_t area_size, const char *file, span *sp, ts_err *err) {
    if (!json_is_object(val))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is not described by a JSON object",
                       file, key);
    json_t *jdt = json_object_get(val, "dtype");
    json_t *jshape = json_object_get(val, "shape");
    json_t *joff = json_object_get(val, "data_offsets");
    if (!json_is_string(jdt))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' has no \"dtype\" string", file, key);
    if (!json_is_array(jshape))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' has no \"shape\" array", file, key);
    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s' has no \"data_offsets\" array of two integers", file, key);

    ts_tensor t;
    memset(&t, 0, sizeof t);
    const char *dts = json_string_value(jdt);
    size_t esize = 0;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dts, k_dtypes[i].name) == 0) {
            t.dtype = k_dtypes[i].dt;
            esize = k_dtypes[i].size;
        }
    if (!esize)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: tensor '%s' has dtype '%s'; supported are F32, F16, BF16, I32, I64",
                       file, key, dts);

    size_t nd = json_array_size(jshape);
    if (nd > TS_MAX_DIMS)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions, more than %d",
                       file, key, nd, TS_MAX_DIMS);
    t.n_dims = (int)nd;
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!get_u64(json_array_get(jshape, i), &d))
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", file, key,
                           i);
        t.shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(count, d, &count))
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': element count overflows", file,
                           key);
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(count, (uint64_t)esize, &nbytes))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': byte count overflows", file, key);

    uint64_t begin, end;
    if (!get_u64(json_array_get(joff, 0), &begin) || !get_u64(json_array_get(joff, 1), &end))
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets are not non-negative integers", file, key);
    if (begin > end)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' begins at byte %llu after its end %llu",
                       file, key, (unsigned long long)begin, (unsigned long long)end);
    if (end > area_size)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s' ends at byte %llu but the data area has %llu bytes", file,
                       key, (unsigned long long)end, (unsigned long long)area_size);
    if (end - begin != nbytes)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s' has %llu bytes of data but its shape and dtype need %llu",
                       file, key, (unsigned long long)(end - begin), (unsigned long long)nbytes);

    t.data = area + begin;
    t.nbytes = (size_t)nbytes;
    t.file = file;
    char *name = strdup(key);
    if (!name) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", file);
    t.name = name;
    if (push_tensor(st, &t) != TS_OK) {
        free(name);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", file);
    }
    sp->begin = begin;
    sp->end = end;
    sp->name = name;
    return TS_OK;
}

ts_status st_parse_image(ts_st *st, const unsigned char *data, size_t size, const char *file,
                         ts_err *err) {
    if (size < 8)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: file has %zu bytes, too short for a safetensors header", file, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
    if (n > (uint64_t)size - 8)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes)", file,
                       (unsigned long long)n, size);
    if (n > ST_MAX_HEADER)
        return ts_fail(err, TS_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                       file, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);

    json_error_t je;
    json_t *root = json_loadb((const char *)data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ts_fail(err, TS_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d: %s)",
                       file, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ts_fail(err, TS_ERR_FORMAT, "%s: header is not a JSON object", file);
    }

    const unsigned char *area = data + 8 + n;
    uint64_t area_size = (uint64_t)size - 8 - n;
    size_t n_entries = json_object_size(root);
    span *spans = calloc(n_entries ? n_entries : 1, sizeof *spans);
    if (!spans) {
        json_decref(root);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", file);
    }
    ts_status rc = TS_OK;
    size_t ns = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = ts_fail(err, TS_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", file);
                break;
            }
            continue;
        }
        rc = parse_entry(st, key, val, area, area_size, file, &spans[ns], err);
        if (rc != TS_OK) break;
        ns++;
    }
    if (rc == TS_OK) {
        /* Sorted by start, a tensor overlaps another exactly when it starts
         * before the furthest end seen so far; empty tensors occupy nothing. */
        qsort(spans, ns, sizeof *spans, cmp_span);
        uint64_t far = 0;
        const char *far_name = NULL;
        for (size_t i = 0; i < ns; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (far_name && spans[i].begin < far) {
                rc = ts_fail(err, TS_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data area",
                             file, far_name, spans[i].name);
                break;
            }
            far = spans[i].end;
            far_name = spans[i].name;
        }
    }
    free(spans);
    json_decref(root);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const ts_tensor *)a)->name, ((const ts_tensor *)b)->name);
}

ts_status st_finish(ts_st *st, ts_err *err) {
    if (st->n) qsort(st->t, st->n, sizeof *st->t, cmp_tensor_name);
    st->bytes = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (i > 0 && strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' also appears in %s", st->t[i].file,
                           st->t[i].name, st->t[i - 1].file);
        st->bytes += st->t[i].nbytes;
    }
    return TS_OK;
}

ts_status ts_st_parse(const unsigned char *data, size_t size, const char *name, ts_st **out,
                      ts_err *err) {
    *out = NULL;
    ts_st *st = st_new();
    if (!st) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", name);
    st_shard *sh = st_add_shard(st, name, 0);
    ts_status rc = sh ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", name);
    if (rc == TS_OK) rc = st_parse_image(st, data, size, sh->path, err);
    if (rc == TS_OK) rc = st_finish(st, err);
    if (rc != TS_OK) {
        ts_st_close(st);
        return rc;
    }
    *out = st;
    return TS_OK;
}

const ts_tensor *ts_st_find(const ts_st *st, const char *name) {
    if (!st || !name || !st->n) return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->t[mid].name);
        if (c == 0) return &st->t[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t ts_st_count(const ts_st *st) { return st ? st->n : 0; }

const ts_tensor *ts_st_at(const ts_st *st, size_t i) {
    return st && i < st->n ? &st->t[i] : NULL;
}

uint64_t ts_st_bytes(const ts_st *st) { return st ? st->bytes : 0; }
