/* POST /v1/chat/completions: messages (content as a string or as parts,
 * chunk parts included) rendered with the model's chat template. */
#include <stdlib.h>
#include <string.h>

#include "server/prompt.h"
#include "server/srv_int.h"

#define MAX_STOP 16
#define MAX_CHUNKS 256

typedef struct chat_in {
    int n_msgs;
    ts_chat_msg *msgs;
    ts_buf *content;         /* per message, flattened */
    const char *chunk_ids[MAX_CHUNKS];
    char params[MAX_CHUNKS][80]; /* where each chunk was cited */
    int n_chunks;
} chat_in;

static void chat_in_free(chat_in *in) {
    for (int i = 0; in->content && i < in->n_msgs; i++) ts_buf_free(&in->content[i]);
    free(in->content);
    free(in->msgs);
}

static bool is_chunk_id(const char *s) {
    if (strlen(s) != TS_CHUNK_ID_HEX) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

/* Reads body.messages into in; on error replies 400 and returns false. */
static bool read_messages(json_t *body, chat_in *in, struct MHD_Connection *c, ts_http_req *r,
                          enum MHD_Result *res) {
    json_t *ms = json_object_get(body, "messages");
    if (!json_is_array(ms) || !json_array_size(ms)) {
        *res = ts_reply_error(c, r, 400, "messages", "invalid_value",
                              "'messages' must be a non-empty array of messages");
        return false;
    }
    size_t n = json_array_size(ms);
    in->msgs = calloc(n, sizeof *in->msgs);
    in->content = calloc(n, sizeof *in->content);
    if (!in->msgs || !in->content) {
        *res = ts_reply_error(c, r, 503, NULL, NULL, "out of memory");
        return false;
    }
    in->n_msgs = (int)n;
    char param[64];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(ms, i);
        snprintf(param, sizeof param, "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            *res = ts_reply_error(c, r, 400, param, "invalid_value",
                                  "%s must be an object with a string 'role'", param);
            return false;
        }
        if (!strcmp(role, "developer")) role = "system";
        in->msgs[i].role = role;
        json_t *ct = json_object_get(m, "content");
        ts_buf *b = &in->content[i];
        ts_buf_reserve(b, 0);
        if (json_is_string(ct)) {
            ts_prompt_append_text(b, json_string_value(ct), json_string_length(ct));
        } else if (json_is_array(ct)) {
            size_t k;
            json_t *part;
            json_array_foreach(ct, k, part) {
                snprintf(param, sizeof param, "messages[%zu].content[%zu]", i, k);
                const char *type = json_string_value(json_object_get(part, "type"));
                json_t *text = json_object_get(part, "text");
                const char *cid = json_string_value(json_object_get(part, "chunk_id"));
                if (type && !strcmp(type, "text") && json_is_string(text)) {
                    ts_prompt_append_text(b, json_string_value(text), json_string_length(text));
                } else if (type && !strcmp(type, "chunk") && cid) {
                    if (!is_chunk_id(cid)) {
                        *res = ts_reply_error(c, r, 400, param, "invalid_value",
                                              "%s.chunk_id must be a chunk id (64 lowercase hex "
                                              "characters), got '%.80s'", param, cid);
                        return false;
                    }
                    if (in->n_chunks == MAX_CHUNKS) {
                        *res = ts_reply_error(c, r, 400, param, "invalid_value",
                                              "a request may cite at most %d chunks", MAX_CHUNKS);
                        return false;
                    }
                    snprintf(in->params[in->n_chunks], sizeof in->params[0], "%s.chunk_id", param);
                    in->chunk_ids[in->n_chunks] = cid;
                    ts_prompt_append_marker(b, in->n_chunks++);
                } else {
                    *res = ts_reply_error(c, r, 400, param, "invalid_value",
                                          "%s must be {\"type\": \"text\", \"text\": ...} or "
                                          "{\"type\": \"chunk\", \"chunk_id\": ...}", param);
                    return false;
                }
            }
        } else if (ct && !json_is_null(ct)) {
            snprintf(param, sizeof param, "messages[%zu].content", i);
            *res = ts_reply_error(c, r, 400, param, "invalid_value",
                                  "%s must be a string or an array of content parts", param);
            return false;
        }
        in->msgs[i].content = b->data ? b->data : "";
    }
    return true;
}

/* True when the rendered prompt leaves a <think> block open. */
static bool opens_think(const char *s) {
    const char *open = NULL;
    for (const char *q = s; (q = strstr(q, "<think>")); q++) open = q;
    return open && !strstr(open, "</think>");
}

/* enable_thinking from chat_template_kwargs (or top level): -1 absent. */
static int thinking_flag(json_t *body) {
    json_t *k = json_object_get(json_object_get(body, "chat_template_kwargs"), "enable_thinking");
    if (!k) k = json_object_get(body, "enable_thinking");
    return json_is_boolean(k) ? json_is_true(k) : -1;
}

enum MHD_Result ts_api_chat(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    enum MHD_Result res = MHD_NO;
    json_t *body = ts_parse_body(c, r, &res);
    if (!body) return res;
    chat_in in = {0};
    ts_buf prompt = {0};
    ts_prompt_part *parts = NULL;
    ts_gen *g = NULL;
    const char *stop[MAX_STOP];
    ts_request q = ts_request_default();
    ts_err err = {{0}};
    ts_status st;
    size_t salt_len;
    const void *salt = ts_srv_salt(s, r, &salt_len);
    if (!s->rt->chat) {
        res = ts_reply_error(c, r, 400, NULL, "no_chat_template",
                             "this model has no chat template: use /v1/completions");
        goto done;
    }
    if (!(g = ts_gen_new(s, TS_GEN_CHAT, c))) {
        res = ts_reply_error(c, r, 503, NULL, NULL, "out of memory");
        goto done;
    }
    if (!read_messages(body, &in, c, r, &res)) goto done;
    if (!ts_oai_params(s, body, &q, stop, MAX_STOP, g, c, r, &res)) goto done;
    st = ts_chat_render(s->rt->chat, in.msgs, (size_t)in.n_msgs, true, thinking_flag(body),
                                  &prompt, &err);
    if (st) {
        res = ts_reply_error(c, r, 400, "messages", "invalid_value", "the chat template failed: %s",
                             err.msg);
        goto done;
    }
    ts_think_init(&g->think, opens_think(prompt.data ? prompt.data : ""));
    for (int i = 0; i < in.n_chunks; i++) {
        ts_chunk_desc d;
        st = ts_engine_chunk_get(s->eng, in.chunk_ids[i], salt, salt_len, &d, &err);
        if (st == TS_ERR_NOTFOUND) {
            res = ts_reply_error(c, r, 404, in.params[i], "chunk_not_found",
                                 "chunk %s does not exist (register it with POST /v1/chunks)",
                                 in.chunk_ids[i]);
            goto done;
        }
        if (st) {
            res = ts_reply_status(c, r, st, in.params[i], err.msg);
            goto done;
        }
    }
    q.cache_salt = salt;
    q.cache_salt_len = salt_len;
    if (in.n_chunks) {
        if ((st = ts_prompt_split(prompt.data, in.chunk_ids, in.n_chunks, &parts, &q.n_parts, &err))) {
            res = ts_reply_status(c, r, st, "messages", err.msg);
            goto done;
        }
        q.parts = parts;
    } else {
        q.text = prompt.data ? prompt.data : "";
    }
    if ((st = ts_gen_submit(g, &q, &err))) {
        res = ts_reply_status(c, r, st, "messages", err.msg);
        goto done;
    }
    res = ts_oai_respond(c, r, &g);
done:
    ts_gen_unref(g);
    free(parts);
    ts_buf_free(&prompt);
    chat_in_free(&in);
    json_decref(body);
    return res;
}
