/* Chat templates: loading the model's template and special tokens,
 * rendering messages through the Jinja interpreter, and splitting <think>
 * reasoning from generated text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok/chat.h"
#include "base/err.h"

struct ts_chat {
    ts_jinja *tpl;
    char *bos, *eos;    /* NULL when the model has none */
};

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

ts_status ts_chat_from_source(const char *source, const char *bos, const char *eos,
                              ts_chat **out, ts_err *err) {
    if (!out || !source) return ts_fail(err, TS_ERR_INVALID, "ts_chat_from_source: NULL argument");
    *out = NULL;
    ts_chat *c = calloc(1, sizeof *c);
    if (!c) return ts_fail(err, TS_ERR_NOMEM, "chat template: out of memory");
    ts_status st = ts_jinja_parse(source, strlen(source), &c->tpl, err);
    if (st != TS_OK) {
        free(c);
        return st;
    }
    c->bos = dup_str(bos);
    c->eos = dup_str(eos);
    if ((bos && !c->bos) || (eos && !c->eos)) {
        ts_chat_free(c);
        return ts_fail(err, TS_ERR_NOMEM, "chat template: out of memory");
    }
    *out = c;
    return TS_OK;
}

void ts_chat_free(ts_chat *chat) {
    if (!chat) return;
    ts_jinja_free(chat->tpl);
    free(chat->bos);
    free(chat->eos);
    free(chat);
}

/* Reads a whole text file (at most 64 MiB). *text is malloc'd. */
static ts_status read_text(const char *path, char **text, size_t *len, ts_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(err, TS_ERR_IO, "%s: cannot open the file", path);
    ts_buf b = {0};
    char tmp[65536];
    size_t n;
    ts_status st = TS_OK;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.len + n > ((size_t)64 << 20)) {
            st = ts_fail(err, TS_ERR_FORMAT, "%s: larger than 64 MiB", path);
            break;
        }
        if (ts_buf_append(&b, tmp, n) != TS_OK) {
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
    }
    if (st == TS_OK && ferror(f)) st = ts_fail(err, TS_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st != TS_OK) {
        ts_buf_free(&b);
        return st;
    }
    if (!b.data && ts_buf_reserve(&b, 1) != TS_OK) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    *text = b.data;
    *len = b.len;
    return TS_OK;
}

/* bos_token / eos_token: a string, {"content": "..."}, or null/absent. */
static ts_status special_token(const json_t *cfg, const char *key, const char *path,
                               const char **out, ts_err *err) {
    *out = NULL;
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return TS_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: \"%s\" must be a string or an object with a string \"content\"",
                       path, key);
    *out = json_string_value(v);
    return TS_OK;
}

ts_status ts_chat_load(const char *model_dir, ts_chat **out, ts_err *err) {
    if (!model_dir || !out) return ts_fail(err, TS_ERR_INVALID, "ts_chat_load: NULL argument");
    *out = NULL;
    size_t dl = strlen(model_dir);
    char *cfg_path = malloc(dl + 32), *jinja_path = malloc(dl + 32);
    if (!cfg_path || !jinja_path) {
        free(cfg_path);
        free(jinja_path);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", model_dir);
    }
    snprintf(cfg_path, dl + 32, "%s/tokenizer_config.json", model_dir);
    snprintf(jinja_path, dl + 32, "%s/chat_template.jinja", model_dir);

    ts_status st = TS_OK;
    json_t *cfg = NULL;
    char *jinja_src = NULL, *cfg_text = NULL;
    size_t jinja_len = 0, cfg_len = 0;
    const char *src = NULL, *src_name = NULL, *bos = NULL, *eos = NULL;

    FILE *probe = fopen(jinja_path, "rb");
    if (probe) {
        fclose(probe);
        st = read_text(jinja_path, &jinja_src, &jinja_len, err);
        if (st != TS_OK) goto done;
        if (strlen(jinja_src) != jinja_len) {
            st = ts_fail(err, TS_ERR_FORMAT, "%s: contains a NUL byte", jinja_path);
            goto done;
        }
        src = jinja_src;
        src_name = jinja_path;
    }
    probe = fopen(cfg_path, "rb");
    if (probe) {
        fclose(probe);
        st = read_text(cfg_path, &cfg_text, &cfg_len, err);
        if (st != TS_OK) goto done;
        json_error_t je;
        cfg = json_loadb(cfg_text, cfg_len, JSON_DECODE_INT_AS_REAL, &je);   /* model_max_length can exceed int64 */
        if (!cfg || !json_is_object(cfg)) {
            st = cfg ? ts_fail(err, TS_ERR_FORMAT, "%s: not a JSON object", cfg_path)
                     : ts_fail(err, TS_ERR_FORMAT, "%s: invalid JSON at line %d: %s", cfg_path, je.line, je.text);
            goto done;
        }
        if ((st = special_token(cfg, "bos_token", cfg_path, &bos, err)) != TS_OK) goto done;
        if ((st = special_token(cfg, "eos_token", cfg_path, &eos, err)) != TS_OK) goto done;
        json_t *ct = json_object_get(cfg, "chat_template");
        if (!src && ct) {
            if (json_is_array(ct)) {
                size_t i;
                json_t *e;
                json_array_foreach(ct, i, e) {
                    json_t *nm = json_object_get(e, "name"), *tp = json_object_get(e, "template");
                    if (json_is_string(nm) && json_is_string(tp) && !strcmp(json_string_value(nm), "default"))
                        ct = tp;
                }
                if (json_is_array(ct)) {
                    st = ts_fail(err, TS_ERR_FORMAT, "%s: \"chat_template\" is a list without a \"default\" entry",
                                 cfg_path);
                    goto done;
                }
            }
            if (!json_is_string(ct)) {
                st = ts_fail(err, TS_ERR_FORMAT, "%s: \"chat_template\" must be a string or a list of {name, template}",
                             cfg_path);
                goto done;
            }
            src = json_string_value(ct);
            src_name = cfg_path;
        }
    }
    if (!src) {
        st = ts_fail(err, TS_ERR_NOTFOUND, "%s: no chat template (no \"chat_template\" in %s and no %s)",
                     model_dir, cfg_path, jinja_path);
        goto done;
    }
    ts_err perr = {{0}};
    st = ts_chat_from_source(src, bos, eos, out, &perr);
    if (st != TS_OK) ts_fail(err, st, "%s: chat template: %s", src_name, perr.msg);

done:
    json_decref(cfg);
    free(cfg_text);
    free(jinja_src);
    free(cfg_path);
    free(jinja_path);
    return st;
}

ts_status ts_chat_render_json(const ts_chat *chat, const json_t *vars, ts_buf *out, ts_err *err) {
    if (!chat || !out) return ts_fail(err, TS_ERR_INVALID, "ts_chat_render_json: NULL argument");
    if (vars && !json_is_object(vars))
        return ts_fail(err, TS_ERR_INVALID, "chat template: variables must be a JSON object");
    json_t *v = vars ? json_copy((json_t *)vars) : json_object();   /* shallow: values shared */
    if (!v) return ts_fail(err, TS_ERR_NOMEM, "chat template: out of memory");
    int bad = 0;
    if (chat->bos && !json_object_get(v, "bos_token")) bad |= json_object_set_new(v, "bos_token", json_string(chat->bos));
    if (chat->eos && !json_object_get(v, "eos_token")) bad |= json_object_set_new(v, "eos_token", json_string(chat->eos));
    ts_status st = bad ? ts_fail(err, TS_ERR_INVALID, "chat template: bos/eos token is not valid UTF-8")
                       : ts_jinja_render(chat->tpl, v, NULL, out, err);
    json_decref(v);
    return st;
}

ts_status ts_chat_render(const ts_chat *chat, const ts_chat_msg *msgs, size_t n_msgs,
                         bool add_generation_prompt, int enable_thinking, ts_buf *out,
                         ts_err *err) {
    if (!chat || !out || (!msgs && n_msgs)) return ts_fail(err, TS_ERR_INVALID, "ts_chat_render: NULL argument");
    json_t *vars = json_object(), *arr = json_array();
    int bad = !vars || !arr;
    if (!bad) bad |= json_object_set_new(vars, "messages", arr);
    else json_decref(arr);
    for (size_t i = 0; i < n_msgs && !bad; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            json_decref(vars);
            return ts_fail(err, TS_ERR_INVALID, "chat message %zu has no role or no content", i);
        }
        json_t *m = json_object();
        bad |= !m;
        if (bad) break;
        bad |= json_array_append_new(arr, m);
        json_t *r = json_string(msgs[i].role), *c = json_string(msgs[i].content);
        if (!r || !c) {
            json_decref(r);
            json_decref(c);
            json_decref(vars);
            return ts_fail(err, TS_ERR_INVALID, "chat message %zu is not valid UTF-8", i);
        }
        bad |= json_object_set_new(m, "role", r);
        bad |= json_object_set_new(m, "content", c);
    }
    if (!bad) bad |= json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    if (!bad && enable_thinking >= 0)
        bad |= json_object_set_new(vars, "enable_thinking", json_boolean(enable_thinking != 0));
    if (bad) {
        json_decref(vars);
        return ts_fail(err, TS_ERR_NOMEM, "chat template: out of memory");
    }
    ts_status st = ts_chat_render_json(chat, vars, out, err);
    json_decref(vars);
    return st;
}

static void trim_view(const char **p, size_t *n) {
    while (*n && strchr(" \t\r\n\f\v", (*p)[0])) { (*p)++; (*n)--; }
    while (*n && strchr(" \t\r\n\f\v", (*p)[*n - 1])) (*n)--;
}

static const char *find_sub(const char *h, size_t n, const char *needle) {
    size_t k = strlen(needle);
    return k <= n ? memmem(h, n, needle, k) : NULL;
}

void ts_chat_split_thinking(const char *text, size_t len, const char **r, size_t *r_len,
                            const char **a, size_t *a_len) {
    if (!text) { text = ""; len = 0; }
    const char *open = find_sub(text, len, "<think>");
    const char *close = find_sub(text, len, "</think>");
    if (close && open && open > close) open = NULL;   /* "<think>" after the end tag is answer text */
    if (close) {
        const char *rb = open ? open + 7 : text;
        *r = rb;
        *r_len = (size_t)(close - rb);
        *a = close + 8;
        *a_len = len - (size_t)(*a - text);
    } else if (open) {           /* still thinking: no answer yet */
        *r = open + 7;
        *r_len = len - (size_t)(*r - text);
        *a = text + len;
        *a_len = 0;
    } else {
        *r = text;
        *r_len = 0;
        *a = text;
        *a_len = len;
    }
    trim_view(r, r_len);
    trim_view(a, a_len);
}
