/* The pipeline sections of tokenizer.json: normalizer (NFC or none),
 * pre_tokenizer (Split regexes and ByteLevel), post_processor (ByteLevel,
 * TemplateProcessing) and decoder (ByteLevel). */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_config.h"

/* The pattern ByteLevel applies itself when use_regex is true (GPT-2's). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const json_t *obj) {
    return json_string_value(json_object_get(obj, "type"));
}

static ts_status load_normalizer(ts_tokenizer *t, const json_t *n, const char *name,
                                 ts_err *err) {
    if (!n || json_is_null(n)) return TS_OK;
    const char *type = type_of(n);
    if (!json_is_object(n) || !type)
        return ts_fail(err, TS_ERR_FORMAT, "%s: normalizer has no \"type\"", name);
    if (strcmp(type, "NFC") == 0) {
        t->nfc = true;
        return TS_OK;
    }
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list))
            return ts_fail(err, TS_ERR_FORMAT, "%s: normalizer Sequence has no \"normalizers\" "
                           "array", name);
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            ts_status st = load_normalizer(t, v, name, err);
            if (st) return st;
        }
        return TS_OK;
    }
    return ts_fail(err, TS_ERR_UNSUPPORTED,
                   "%s: normalizer \"%s\" is not supported (only NFC or none)", name, type);
}

static ts_status compile(ts_tok_step *s, const char *pat, size_t len, bool literal,
                         const char *name, ts_err *err) {
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    s->re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &code, &off, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: pre_tokenizer pattern \"%.*s\" does not compile at offset %zu: %s",
                       name, (int)(len > 200 ? 200 : len), pat, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return TS_OK;
}

static ts_status add_step(ts_tokenizer *t, const json_t *p, const char *name, ts_err *err) {
    const char *type = type_of(p);
    if (!json_is_object(p) || !type)
        return ts_fail(err, TS_ERR_FORMAT, "%s: a pre_tokenizer has no \"type\"", name);
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return ts_fail(err, TS_ERR_FORMAT, "%s: pre_tokenizer Sequence has no "
                           "\"pretokenizers\" array", name);
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            ts_status st = add_step(t, v, name, err);
            if (st) return st;
        }
        return TS_OK;
    }
    if (t->n_steps > 0 && t->steps[t->n_steps - 1].kind == TS_PRE_BYTELEVEL)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: a pre_tokenizer after ByteLevel is not supported", name);
    ts_tok_step *steps = realloc(t->steps, (t->n_steps + 1) * sizeof *steps);
    if (!steps) return TS_ERR_NOMEM;
    t->steps = steps;
    ts_tok_step *s = &steps[t->n_steps];
    memset(s, 0, sizeof *s);
    ts_status st;
    if (strcmp(type, "Split") == 0) {
        s->kind = TS_PRE_SPLIT;
        const json_t *pat = json_object_get(p, "pattern");
        const json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
        const json_t *beh = json_object_get(p, "behavior");
        bool invert = false;
        if ((st = ts_tok_json_bool(p, "invert", false, &invert, name, "Split", err))) return st;
        if (!json_is_string(re) && !json_is_string(str))
            return ts_fail(err, TS_ERR_FORMAT, "%s: Split pre_tokenizer has no pattern.Regex or "
                           "pattern.String", name);
        if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0 || invert)
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: Split pre_tokenizer with behavior "
                           "\"%s\"%s is not supported (only Isolated, not inverted)", name,
                           json_is_string(beh) ? json_string_value(beh) : "?",
                           invert ? " and invert" : "");
        const json_t *pj = re ? re : str;
        if ((st = compile(s, json_string_value(pj), json_string_length(pj), !re, name, err)))
            return st;
    } else if (strcmp(type, "ByteLevel") == 0) {
        s->kind = TS_PRE_BYTELEVEL;
        bool use_regex = true;
        if ((st = ts_tok_json_bool(p, "add_prefix_space", true, &s->add_prefix_space, name,
                                   "ByteLevel", err)) ||
            (st = ts_tok_json_bool(p, "use_regex", true, &use_regex, name, "ByteLevel", err)))
            return st;
        if (use_regex && (st = compile(s, gpt2_pattern, sizeof gpt2_pattern - 1, false, name, err)))
            return st;
    } else {
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: pre_tokenizer \"%s\" is not supported (only Split and ByteLevel)",
                       name, type);
    }
    t->n_steps++;
    return TS_OK;
}

static ts_status push_ids(int32_t **ids, size_t *n, const json_t *list, const ts_tokenizer *t,
                          const char *name, ts_err *err) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= t->n_ids)
            return ts_fail(err, TS_ERR_FORMAT, "%s: TemplateProcessing names an id that is not "
                           "an integer in 0..%d", name, t->n_ids - 1);
        int32_t *p = realloc(*ids, (*n + 1) * sizeof *p);
        if (!p) return TS_ERR_NOMEM;
        *ids = p;
        p[(*n)++] = (int32_t)id;
    }
    return TS_OK;
}

static ts_status load_template(ts_tokenizer *t, const json_t *p, const char *name,
                               ts_err *err) {
    const json_t *single = json_object_get(p, "single");
    const json_t *specials = json_object_get(p, "special_tokens");
    if (!json_is_array(single))
        return ts_fail(err, TS_ERR_FORMAT, "%s: TemplateProcessing has no \"single\" array", name);
    bool after = false;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item) {
        const json_t *sp = json_object_get(item, "SpecialToken");
        if (json_object_get(item, "Sequence")) {
            after = true;
            continue;
        }
        const json_t *key = json_object_get(sp, "id");
        const json_t *ids = json_object_get(json_object_get(specials, json_string_value(key)), "ids");
        if (!json_is_string(key) || !json_is_array(ids))
            return ts_fail(err, TS_ERR_FORMAT, "%s: TemplateProcessing single[%zu] is not a "
                           "Sequence or a SpecialToken listed in special_tokens", name, i);
        ts_status st = after ? push_ids(&t->suffix_ids, &t->n_suffix, ids, t, name, err)
                             : push_ids(&t->prefix_ids, &t->n_prefix, ids, t, name, err);
        if (st) return st;
    }
    return TS_OK;
}

static ts_status load_post(ts_tokenizer *t, const json_t *p, const char *name, ts_err *err) {
    if (!p || json_is_null(p)) return TS_OK;
    const char *type = type_of(p);
    if (!json_is_object(p) || !type)
        return ts_fail(err, TS_ERR_FORMAT, "%s: post_processor has no \"type\"", name);
    if (strcmp(type, "ByteLevel") == 0) return TS_OK; /* only moves offsets */
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(t, p, name, err);
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(p, "processors");
        if (!json_is_array(list))
            return ts_fail(err, TS_ERR_FORMAT, "%s: post_processor Sequence has no "
                           "\"processors\" array", name);
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            ts_status st = load_post(t, v, name, err);
            if (st) return st;
        }
        return TS_OK;
    }
    return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: post_processor \"%s\" is not supported", name,
                   type);
}

static ts_status check_decoder(const json_t *d, const char *name, ts_err *err) {
    const char *type = json_is_object(d) ? type_of(d) : NULL;
    if (type && strcmp(type, "ByteLevel") == 0) return TS_OK;
    if (type && strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list) || json_array_size(list) == 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: decoder Sequence has no \"decoders\"", name);
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            ts_status st = check_decoder(v, name, err);
            if (st) return st;
        }
        return TS_OK;
    }
    return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: decoder \"%s\" is not supported (only ByteLevel)",
                   name, type ? type : "none");
}

ts_status ts_tok_load_config(ts_tokenizer *t, const json_t *root, const char *name, ts_err *err) {
    ts_status st = load_normalizer(t, json_object_get(root, "normalizer"), name, err);
    if (st) return st;
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre) && (st = add_step(t, pre, name, err))) return st;
    if (t->n_steps == 0 || t->steps[t->n_steps - 1].kind != TS_PRE_BYTELEVEL)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: the pre_tokenizer does not end with ByteLevel, so this is not a "
                       "byte-level BPE tokenizer", name);
    if ((st = load_post(t, json_object_get(root, "post_processor"), name, err))) return st;
    return check_decoder(json_object_get(root, "decoder"), name, err);
}
