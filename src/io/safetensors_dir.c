/* Opening safetensors checkpoints from disk: one file, or the shards listed
 * in model.safetensors.index.json. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/err.h"
#include "io/safetensors_int.h"

/* An index is a few hundred KB even for the largest models. */
#define ST_MAX_INDEX ((size_t)64 << 20)

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Maps the shard's file and validates its header. */
static ts_status load_shard(ts_st *st, st_shard *sh, ts_err *err) {
    ts_status rc = ts_map_open(sh->path, &sh->map, err);
    if (rc != TS_OK) return rc;
    return st_parse_image(st, sh->map.data, sh->map.size, sh->path, err);
}

ts_status ts_st_open_file(const char *path, ts_st **out, ts_err *err) {
    *out = NULL;
    ts_st *st = st_new();
    if (!st) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    const char *slash = strrchr(path, '/');
    st_shard *sh = st_add_shard(st, path, slash ? (size_t)(slash - path) + 1 : 0);
    ts_status rc = sh ? load_shard(st, sh, err) : ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    if (rc == TS_OK) rc = st_finish(st, err);
    if (rc != TS_OK) {
        ts_st_close(st);
        return rc;
    }
    *out = st;
    return TS_OK;
}

/* A shard must be a plain file name next to the index: no directories, no
 * parent references, nothing hidden behind an absolute path. */
static bool shard_name_ok(const char *s) {
    return s[0] != '\0' && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static st_shard *find_shard(ts_st *st, const char *base) {
    for (size_t i = 0; i < st->n_shards; i++)
        if (strcmp(st->shards[i].base, base) == 0) return &st->shards[i];
    return NULL;
}

/* Registers every distinct shard of the weight map (paths dir/name). */
static ts_status collect_shards(ts_st *st, const char *dir, json_t *wm, const char *index,
                                ts_err *err) {
    const char *tensor;
    json_t *v;
    ts_buf path = {0};
    ts_status rc = TS_OK;
    json_object_foreach(wm, tensor, v) {
        if (!json_is_string(v)) {
            rc = ts_fail(err, TS_ERR_FORMAT, "%s: weight_map entry for tensor '%s' is not a string",
                         index, tensor);
            break;
        }
        const char *name = json_string_value(v);
        if (!shard_name_ok(name)) {
            rc = ts_fail(err, TS_ERR_FORMAT,
                         "%s: shard '%s' of tensor '%s' is not a plain file name in the same folder",
                         index, name, tensor);
            break;
        }
        if (find_shard(st, name)) continue;
        ts_buf_clear(&path);
        if (ts_buf_printf(&path, "%s/%s", dir, name) != TS_OK ||
            !st_add_shard(st, path.data, strlen(dir) + 1)) {
            rc = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", index);
            break;
        }
    }
    ts_buf_free(&path);
    return rc;
}

static void report(ts_progress_fn fn, void *ctx, uint64_t done, uint64_t total) {
    if (fn) fn(ctx, done, total);
}

static ts_status open_index(const char *dir, const char *index, ts_st *st, ts_progress_fn progress,
                            void *cb_ctx, ts_err *err) {
    char *text = NULL;
    size_t len = 0;
    ts_status rc = ts_read_file(index, ST_MAX_INDEX, &text, &len, err);
    if (rc != TS_OK) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return ts_fail(err, TS_ERR_FORMAT, "%s: not valid JSON (line %d, column %d: %s)", index,
                       je.line, je.column, je.text);
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return ts_fail(err, TS_ERR_FORMAT, "%s: no non-empty \"weight_map\" object", index);
    }
    rc = collect_shards(st, dir, wm, index, err);

    /* Map everything first so that progress knows the total. */
    uint64_t total = 0, done = 0;
    for (size_t i = 0; rc == TS_OK && i < st->n_shards; i++) {
        st_shard *sh = &st->shards[i];
        ts_err e2;
        if (ts_map_open(sh->path, &sh->map, &e2) != TS_OK)
            rc = ts_fail(err, TS_ERR_IO, "%s names shard '%s', which cannot be opened (%s)", index,
                         sh->base, e2.msg);
        total += sh->map.size;
    }
    if (rc == TS_OK) report(progress, cb_ctx, 0, total);
    for (size_t i = 0; rc == TS_OK && i < st->n_shards; i++) {
        st_shard *sh = &st->shards[i];
        rc = st_parse_image(st, sh->map.data, sh->map.size, sh->path, err);
        done += sh->map.size;
        if (rc == TS_OK) report(progress, cb_ctx, done, total);
    }
    if (rc == TS_OK) rc = st_finish(st, err);

    /* Every tensor the index promises must be in the shard it names. */
    const char *tensor;
    json_t *v;
    if (rc == TS_OK) json_object_foreach(wm, tensor, v) {
        const st_shard *sh = find_shard(st, json_string_value(v));
        const ts_tensor *t = ts_st_find(st, tensor);
        if (!t) {
            rc = ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is not in shard '%s'", index, tensor,
                         sh->base);
            break;
        }
        if (t->file != sh->path) {
            rc = ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is mapped to '%s' but found in %s",
                         index, tensor, sh->base, t->file);
            break;
        }
    }
    json_decref(root);
    return rc;
}

ts_status ts_st_open_dir(const char *dir, ts_st **out, ts_progress_fn progress, void *cb_ctx,
                         ts_err *err) {
    *out = NULL;
    ts_buf index = {0}, single = {0};
    if (ts_buf_printf(&index, "%s/model.safetensors.index.json", dir) != TS_OK ||
        ts_buf_printf(&single, "%s/model.safetensors", dir) != TS_OK) {
        ts_buf_free(&index);
        ts_buf_free(&single);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", dir);
    }
    ts_st *st = st_new();
    ts_status rc;
    if (!st) {
        rc = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", dir);
    } else if (is_file(index.data)) {
        rc = open_index(dir, index.data, st, progress, cb_ctx, err);
    } else if (is_file(single.data)) {
        st_shard *sh = st_add_shard(st, single.data, strlen(dir) + 1);
        rc = sh ? ts_map_open(sh->path, &sh->map, err)
                : ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", dir);
        if (rc == TS_OK) {
            report(progress, cb_ctx, 0, sh->map.size);
            rc = st_parse_image(st, sh->map.data, sh->map.size, sh->path, err);
        }
        if (rc == TS_OK) rc = st_finish(st, err);
        if (rc == TS_OK) report(progress, cb_ctx, sh->map.size, sh->map.size);
    } else {
        rc = ts_fail(err, TS_ERR_NOTFOUND,
                     "%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
    }
    ts_buf_free(&index);
    ts_buf_free(&single);
    if (rc != TS_OK) {
        ts_st_close(st);
        return rc;
    }
    *out = st;
    return TS_OK;
}
