/* The chunk API: POST/GET /v1/chunks, GET/DELETE /v1/chunks/{id}. Every
 * call passes the caller's tenant salt, so keys never see each other's
 * chunks. */
#include <stdlib.h>
#include <string.h>

#include "server/srv_int.h"

static json_t *desc_json(const ts_chunk_desc *d) {
    return json_pack("{s:s,s:s,s:i,s:s,s:b,s:I,s:I,s:I}", "id", d->id, "object", "chunk", "tokens",
                     (int)d->n_tokens, "type", d->type ? d->type : "document", "has_kv", d->has_kv,
                     "bytes", (json_int_t)d->bytes, "hits", (json_int_t)d->hits, "last_used_at",
                     (json_int_t)(d->last_use_ms / 1000));
}

static enum MHD_Result create(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    enum MHD_Result res = MHD_NO;
    json_t *body = ts_parse_body(c, r, &res);
    if (!body) return res;
    json_t *text = json_object_get(body, "text");
    if (!text || json_is_null(text)) text = json_object_get(body, "content");
    json_t *ids_j = json_object_get(body, "ids");
    json_t *type = json_object_get(body, "type");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (type && !json_is_null(type) && !json_is_string(type)) {
        res = ts_reply_error(c, r, 400, "type", "invalid_value",
                             "'type' must be one of \"system\", \"document\", \"code\", \"rag\", \"query\"");
        goto done;
    }
    if (json_is_array(ids_j) && (!text || json_is_null(text))) {
        n_ids = json_array_size(ids_j);
        ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
        if (!ids) {
            res = ts_reply_error(c, r, 503, NULL, NULL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n_ids; i++) {
            json_t *x = json_array_get(ids_j, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                res = ts_reply_error(c, r, 400, "ids", "invalid_value",
                                     "'ids' must be an array of token ids (non-negative integers)");
                goto done;
            }
            ids[i] = (int32_t)json_integer_value(x);
        }
    } else if (!json_is_string(text)) {
        res = ts_reply_error(c, r, 400, "text", "invalid_value",
                             "a chunk needs 'text' (or 'content'): a string");
        goto done;
    }
    size_t salt_len;
    const void *salt = ts_srv_salt(s, r, &salt_len);
    ts_chunk_desc d;
    memset(&d, 0, sizeof d);
    ts_err err = {{0}};
    ts_status st = ts_engine_chunk_register(s->eng, ids ? NULL : json_string_value(text), ids, n_ids,
                                            json_string_value(type), salt, salt_len, &d, &err);
    if (st) res = ts_reply_status(c, r, st, ids ? "ids" : "text", err.msg);
    else res = ts_reply_json(c, r, 200, desc_json(&d));
done:
    free(ids);
    json_decref(body);
    return res;
}

static enum MHD_Result list(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    size_t salt_len, n = 0;
    const void *salt = ts_srv_salt(s, r, &salt_len);
    ts_chunk_desc *ds = NULL;
    ts_err err = {{0}};
    ts_status st = ts_engine_chunk_list(s->eng, salt, salt_len, &ds, &n, &err);
    if (st) {
        free(ds);
        return ts_reply_status(c, r, st, NULL, err.msg);
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, desc_json(&ds[i]));
    free(ds);
    return ts_reply_json(c, r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

enum MHD_Result ts_api_chunks(ts_server *s, struct MHD_Connection *c, ts_http_req *r,
                              const char *method, const char *id) {
    bool get = !strcmp(method, "GET"), del = !strcmp(method, "DELETE");
    if (!id) {
        if (!strcmp(method, "POST")) return create(s, c, r);
        if (get) return list(s, c, r);
        return ts_reply_error(c, r, 405, NULL, "method_not_allowed",
                              "%s /v1/chunks is not allowed (use GET or POST)", method);
    }
    if (!get && !del)
        return ts_reply_error(c, r, 405, NULL, "method_not_allowed",
                              "%s /v1/chunks/{id} is not allowed (use GET or DELETE)", method);
    size_t salt_len;
    const void *salt = ts_srv_salt(s, r, &salt_len);
    ts_err err = {{0}};
    ts_status st;
    if (get) {
        ts_chunk_desc d;
        memset(&d, 0, sizeof d);
        st = ts_engine_chunk_get(s->eng, id, salt, salt_len, &d, &err);
        if (!st) return ts_reply_json(c, r, 200, desc_json(&d));
    } else {
        st = ts_engine_chunk_remove(s->eng, id, salt, salt_len, &err);
        if (!st)
            return ts_reply_json(c, r, 200, json_pack("{s:s,s:s,s:b}", "id", id, "object",
                                                      "chunk.deleted", "deleted", 1));
    }
    if (st == TS_ERR_NOTFOUND || st == TS_ERR_INVALID)
        return ts_reply_error(c, r, 404, "id", "chunk_not_found", "chunk '%.80s' does not exist", id);
    return ts_reply_status(c, r, st, "id", err.msg);
}
