/* POST /v1/completions: a prompt given as a string or as token ids. */
#include <stdlib.h>
#include <string.h>

#include "server/srv_int.h"

#define MAX_STOP 16

/* Reads body.prompt into *ids (malloc'd); on error replies 400. A string is
 * tokenized with the model's special tokens (BOS where the model has one). */
static bool read_prompt(ts_server *s, json_t *body, int32_t **ids, size_t *n,
                        struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res) {
    json_t *p = json_object_get(body, "prompt");
    /* a batch of one prompt is that prompt */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        ts_err err = {{0}};
        ts_status st = ts_tok_encode(s->rt->tok, json_string_value(p), json_string_length(p), true,
                                     ids, n, &err);
        if (st) {
            *res = ts_reply_status(c, r, st, "prompt", err.msg);
            return false;
        }
        return true;
    }
    if (json_is_array(p) && json_array_size(p)) {
        size_t k = json_array_size(p);
        *ids = malloc(k * sizeof **ids);
        if (!*ids) {
            *res = ts_reply_error(c, r, 503, NULL, NULL, "out of memory");
            return false;
        }
        for (size_t i = 0; i < k; i++) {
            json_t *x = json_array_get(p, i);
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
            if (!json_is_integer(x) || v < 0 || v > INT32_MAX) {
                *res = ts_reply_error(c, r, 400, "prompt", "invalid_value",
                                      json_is_array(json_array_get(p, 0)) || json_is_string(x)
                                          ? "'prompt' may hold only one prompt (batches are not supported)"
                                          : "'prompt' must be a string or an array of token ids "
                                            "(non-negative integers)");
                return false;
            }
            (*ids)[i] = (int32_t)v;
        }
        *n = k;
        return true;
    }
    *res = ts_reply_error(c, r, 400, "prompt", "invalid_value",
                          "'prompt' must be a non-empty string or array of token ids");
    return false;
}

enum MHD_Result ts_api_completions(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    enum MHD_Result res = MHD_NO;
    json_t *body = ts_parse_body(c, r, &res);
    if (!body) return res;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    const char *stop[MAX_STOP];
    ts_request q = ts_request_default();
    ts_err err = {{0}};
    ts_status st;
    ts_gen *g = ts_gen_new(s, TS_GEN_COMPLETION, c);
    if (!g) {
        res = ts_reply_error(c, r, 503, NULL, NULL, "out of memory");
        goto done;
    }
    if (!read_prompt(s, body, &ids, &n_ids, c, r, &res)) goto done;
    if (!ts_oai_params(s, body, &q, stop, MAX_STOP, g, c, r, &res)) goto done;
    q.ids = ids;
    q.n_ids = n_ids;
    q.cache_salt = ts_srv_salt(s, r, &q.cache_salt_len);
    if ((st = ts_gen_submit(g, &q, &err))) {
        res = ts_reply_status(c, r, st, "prompt", err.msg);
        goto done;
    }
    res = ts_oai_respond(c, r, &g);
done:
    ts_gen_unref(g);
    free(ids);
    json_decref(body);
    return res;
}
