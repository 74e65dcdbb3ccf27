/* config.json / generation_config.json -> ts_model_config. Every field is
 * type-checked and bounded; anything tessera cannot run faithfully is
 * refused as unsupported rather than half-handled. */
#include "io/hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/err.h"
#include "io/mapfile.h"

#define CFG_MAX_FILE ((size_t)16 << 20)
#define SIZE_LIMIT ((int64_t)1 << 20)

/* Where a field is read from, for messages: file and an optional parent
 * object ("rope_parameters."). */
typedef struct where {
    const char *file;
    const char *parent;
} where;

/* Integer field; absent or null leaves *present false. */
static ts_status opt_int(json_t *obj, const char *key, where w, int64_t lo, int64_t hi,
                         int64_t *out, bool *present, ts_err *err) {
    json_t *v = json_object_get(obj, key);
    *present = false;
    if (!v || json_is_null(v)) return TS_OK;
    if (!json_is_integer(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%s%s\" must be an integer", w.file, w.parent,
                       key);
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%s%s\" is %lld, outside [%lld, %lld]",
                       w.file, w.parent, key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    *present = true;
    return TS_OK;
}

static ts_status req_int(json_t *obj, const char *key, where w, int64_t lo, int64_t hi, int *out,
                         ts_err *err) {
    int64_t x = 0;
    bool present;
    ts_status rc = opt_int(obj, key, w, lo, hi, &x, &present, err);
    if (rc != TS_OK) return rc;
    if (!present)
        return ts_fail(err, TS_ERR_FORMAT, "%s: missing field \"%s%s\"", w.file, w.parent, key);
    *out = (int)x;
    return TS_OK;
}

/* Number field (integer or real), finite, within [lo, hi]. */
static ts_status opt_num(json_t *obj, const char *key, where w, double lo, double hi, double *out,
                         bool *present, ts_err *err) {
    json_t *v = json_object_get(obj, key);
    *present = false;
    if (!v || json_is_null(v)) return TS_OK;
    if (!json_is_number(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%s%s\" must be a number", w.file, w.parent,
                       key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%s%s\" is %g, outside [%g, %g]", w.file,
                       w.parent, key, x, lo, hi);
    *out = x;
    *present = true;
    return TS_OK;
}

static ts_status req_num(json_t *obj, const char *key, where w, double lo, double hi, double *out,
                         ts_err *err) {
    bool present;
    ts_status rc = opt_num(obj, key, w, lo, hi, out, &present, err);
    if (rc == TS_OK && !present)
        return ts_fail(err, TS_ERR_FORMAT, "%s: missing field \"%s%s\"", w.file, w.parent, key);
    return rc;
}

static ts_status opt_bool(json_t *obj, const char *key, where w, bool *out, ts_err *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return TS_OK;
    if (!json_is_boolean(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%s%s\" must be true or false", w.file,
                       w.parent, key);
    *out = json_is_true(v);
    return TS_OK;
}

/* Adds the id(s) of an int-or-list field to ids[*n], skipping duplicates. */
static ts_status add_ids(json_t *obj, const char *key, where w, int32_t *ids, int *n, ts_err *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return TS_OK;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 ||
            json_integer_value(e) >= ((json_int_t)1 << 30))
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: field \"%s\" must be a token id or a list of token ids", w.file, key);
        int32_t id = (int32_t)json_integer_value(e);
        bool seen = false;
        for (int j = 0; j < *n; j++) seen |= ids[j] == id;
        if (seen) continue;
        if (*n == TS_MAX_EOS)
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: field \"%s\" lists more than %d token ids",
                           w.file, key, TS_MAX_EOS);
        ids[(*n)++] = id;
    }
    return TS_OK;
}

static ts_status parse_arch(json_t *root, where w, ts_model_config *cfg, ts_err *err) {
    json_t *a = json_object_get(root, "architectures");
    if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0)))
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: field \"architectures\" must be a non-empty list of strings", w.file);
    const char *name = json_string_value(json_array_get(a, 0));
    static const struct {
        const char *name;
        ts_arch arch;
    } known[] = {{"Qwen3ForCausalLM", TS_ARCH_QWEN3},
                 {"LlamaForCausalLM", TS_ARCH_LLAMA},
                 {"Qwen2ForCausalLM", TS_ARCH_QWEN2}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(name, known[i].name) != 0) continue;
        cfg->arch = known[i].arch;
        snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", name);
        return TS_OK;
    }
    return ts_fail(err, TS_ERR_UNSUPPORTED,
                   "%s: architecture '%s' is not supported (supported: Qwen3ForCausalLM, "
                   "LlamaForCausalLM, Qwen2ForCausalLM)",
                   w.file, name);
}

/* RoPE settings: transformers 5 keeps them in "rope_parameters";
 * transformers 4 has top-level "rope_theta" and "rope_scaling" (or null). */
static ts_status parse_rope(json_t *root, where w, ts_model_config *cfg, ts_err *err) {
    json_t *src = json_object_get(root, "rope_parameters");
    where ws = {w.file, "rope_parameters."};
    bool v5 = src && !json_is_null(src);
    if (!v5) {
        src = json_object_get(root, "rope_scaling");
        ws.parent = "rope_scaling.";
    }
    if (src && json_is_null(src)) src = NULL;
    if (src && !json_is_object(src))
        return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%.*s\" must be an object or null", w.file,
                       (int)strlen(ws.parent) - 1, ws.parent);

    bool present = false;
    ts_status rc = TS_OK;
    cfg->rope_theta = 10000.0; /* transformers' default when nothing says otherwise */
    if (v5) rc = opt_num(src, "rope_theta", ws, 1e-3, 1e12, &cfg->rope_theta, &present, err);
    if (rc == TS_OK && !present)
        rc = opt_num(root, "rope_theta", w, 1e-3, 1e12, &cfg->rope_theta, &present, err);
    if (rc != TS_OK) return rc;

    const char *type = "default";
    if (src) {
        json_t *t = json_object_get(src, "rope_type");
        if (!t || json_is_null(t)) t = json_object_get(src, "type");
        if (t && !json_is_null(t)) {
            if (!json_is_string(t))
                return ts_fail(err, TS_ERR_FORMAT, "%s: field \"%srope_type\" must be a string",
                               w.file, ws.parent);
            type = json_string_value(t);
        }
    }
    cfg->rope_factor = 1.0;
    cfg->rope_low_freq = cfg->rope_high_freq = 0.0;
    cfg->rope_orig_max_pos = 0;
    if (strcmp(type, "default") == 0) {
        cfg->rope_type = TS_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        cfg->rope_type = TS_ROPE_LINEAR;
        rc = req_num(src, "factor", ws, 1e-6, 1e6, &cfg->rope_factor, err);
    } else if (strcmp(type, "llama3") == 0) {
        cfg->rope_type = TS_ROPE_LLAMA3;
        rc = req_num(src, "factor", ws, 1e-6, 1e6, &cfg->rope_factor, err);
        if (rc == TS_OK)
            rc = req_num(src, "low_freq_factor", ws, 1e-6, 1e6, &cfg->rope_low_freq, err);
        if (rc == TS_OK)
            rc = req_num(src, "high_freq_factor", ws, 1e-6, 1e6, &cfg->rope_high_freq, err);
        if (rc == TS_OK)
            rc = req_int(src, "original_max_position_embeddings", ws, 1, 1 << 30,
                         &cfg->rope_orig_max_pos, err);
        if (rc == TS_OK && !(cfg->rope_high_freq > cfg->rope_low_freq))
            rc = ts_fail(err, TS_ERR_FORMAT,
                         "%s: \"%shigh_freq_factor\" (%g) must exceed \"low_freq_factor\" (%g)",
                         w.file, ws.parent, cfg->rope_high_freq, cfg->rope_low_freq);
    } else {
        rc = ts_fail(err, TS_ERR_UNSUPPORTED,
                     "%s: rope type '%s' is not supported (supported: default, llama3, linear)",
                     w.file, type);
    }
    if (rc != TS_OK) return rc;

    double partial = 1.0;
    rc = opt_num(src ? src : root, "partial_rotary_factor", src ? ws : w, 0, 1, &partial,
                 &present, err);
    if (rc == TS_OK && !present && src)
        rc = opt_num(root, "partial_rotary_factor", w, 0, 1, &partial, &present, err);
    if (rc == TS_OK && partial != 1.0)
        rc = ts_fail(err, TS_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported",
                     w.file, partial);
    return rc;
}

/* Refuses what would make tessera compute something else than the model. */
static ts_status check_unsupported(json_t *root, where w, ts_err *err) {
    bool sw = false;
    ts_status rc = opt_bool(root, "use_sliding_window", w, &sw, err);
    if (rc != TS_OK) return rc;
    if (json_is_true(json_object_get(root, "sliding_window"))) sw = true;
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt))
            return ts_fail(err, TS_ERR_FORMAT, "%s: field \"layer_types\" must be a list", w.file);
        for (size_t i = 0; i < json_array_size(lt); i++) {
            const char *s = json_string_value(json_array_get(lt, i));
            if (!s)
                return ts_fail(err, TS_ERR_FORMAT, "%s: field \"layer_types\" must list strings",
                               w.file);
            if (strcmp(s, "full_attention") != 0) sw = true;
        }
    }
    if (sw)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: sliding-window attention is not supported",
                       w.file);
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        if (!json_is_string(act))
            return ts_fail(err, TS_ERR_FORMAT, "%s: field \"hidden_act\" must be a string", w.file);
        if (strcmp(json_string_value(act), "silu") != 0)
            return ts_fail(err, TS_ERR_UNSUPPORTED,
                           "%s: hidden_act '%s' is not supported (only silu)", w.file,
                           json_string_value(act));
    }
    bool mlp_bias = false;
    rc = opt_bool(root, "mlp_bias", w, &mlp_bias, err);
    if (rc == TS_OK && mlp_bias)
        rc = ts_fail(err, TS_ERR_UNSUPPORTED, "%s: mlp_bias is not supported", w.file);
    return rc;
}

static ts_status parse_sizes(json_t *root, where w, ts_model_config *c, ts_err *err) {
    ts_status rc = req_int(root, "num_hidden_layers", w, 1, 999, &c->n_layers, err);
    if (rc == TS_OK) rc = req_int(root, "hidden_size", w, 1, SIZE_LIMIT - 1, &c->hidden, err);
    if (rc == TS_OK)
        rc = req_int(root, "num_attention_heads", w, 1, SIZE_LIMIT - 1, &c->n_heads, err);
    if (rc == TS_OK)
        rc = req_int(root, "intermediate_size", w, 1, SIZE_LIMIT - 1, &c->ffn, err);
    if (rc == TS_OK) rc = req_int(root, "vocab_size", w, 1, ((int64_t)1 << 24) - 1, &c->vocab, err);
    if (rc == TS_OK)
        rc = req_int(root, "max_position_embeddings", w, 1, (int64_t)1 << 30, &c->max_pos, err);
    double eps = 0;
    if (rc == TS_OK) rc = req_num(root, "rms_norm_eps", w, 1e-30, 0.1, &eps, err);
    if (rc != TS_OK) return rc;
    c->rms_eps = (float)eps;

    int64_t x = 0;
    bool present;
    rc = opt_int(root, "num_key_value_heads", w, 1, SIZE_LIMIT - 1, &x, &present, err);
    if (rc != TS_OK) return rc;
    c->n_kv_heads = present ? (int)x : c->n_heads;
    rc = opt_int(root, "head_dim", w, 1, SIZE_LIMIT - 1, &x, &present, err);
    if (rc != TS_OK) return rc;
    if (present) {
        c->head_dim = (int)x;
    } else if (c->hidden % c->n_heads == 0) {
        c->head_dim = c->hidden / c->n_heads;
    } else {
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: no \"head_dim\" and hidden_size %d is not a multiple of "
                       "num_attention_heads %d",
                       w.file, c->hidden, c->n_heads);
    }
    if (c->n_heads % c->n_kv_heads != 0)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       w.file, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: head_dim %d is odd; RoPE needs pairs", w.file,
                       c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim >= SIZE_LIMIT)
        return ts_fail(err, TS_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large",
                       w.file);
    return TS_OK;
}

static ts_status parse_main(json_t *root, where w, ts_model_config *c, ts_err *err) {
    if (!json_is_object(root))
        return ts_fail(err, TS_ERR_FORMAT, "%s: not a JSON object", w.file);
    ts_status rc = parse_arch(root, w, c, err);
    if (rc == TS_OK) rc = parse_sizes(root, w, c, err);
    if (rc == TS_OK) rc = check_unsupported(root, w, err);
    if (rc == TS_OK) rc = parse_rope(root, w, c, err);
    if (rc == TS_OK) rc = opt_bool(root, "tie_word_embeddings", w, &c->tie_embeddings, err);
    bool attn_bias = false;
    if (rc == TS_OK) rc = opt_bool(root, "attention_bias", w, &attn_bias, err);
    if (rc != TS_OK) return rc;
    c->qk_norm = c->arch == TS_ARCH_QWEN3;
    /* Qwen2 always biases q/k/v (never o); Llama and Qwen3 bias all four
     * projections when attention_bias is set. */
    c->qkv_bias = c->arch == TS_ARCH_QWEN2 || attn_bias;
    c->o_bias = c->arch != TS_ARCH_QWEN2 && attn_bias;

    int64_t x = 0;
    bool present;
    rc = opt_int(root, "bos_token_id", w, 0, ((int64_t)1 << 30) - 1, &x, &present, err);
    if (rc != TS_OK) return rc;
    if (present) c->bos_id = (int32_t)x;
    rc = opt_int(root, "pad_token_id", w, 0, ((int64_t)1 << 30) - 1, &x, &present, err);
    if (rc != TS_OK) return rc;
    if (present) c->pad_id = (int32_t)x;
    return add_ids(root, "eos_token_id", w, c->eos_ids, &c->n_eos, err);
}

static ts_status parse_gen(json_t *root, where w, ts_model_config *c, ts_err *err) {
    if (!json_is_object(root))
        return ts_fail(err, TS_ERR_FORMAT, "%s: not a JSON object", w.file);
    ts_status rc = add_ids(root, "eos_token_id", w, c->eos_ids, &c->n_eos, err);
    double v = 0;
    bool present;
    if (rc == TS_OK) rc = opt_num(root, "temperature", w, 0, 100, &v, &present, err);
    if (rc == TS_OK && present) c->gen_temperature = (float)v;
    if (rc == TS_OK) rc = opt_num(root, "top_p", w, 0, 1, &v, &present, err);
    if (rc == TS_OK && present) c->gen_top_p = (float)v;
    int64_t k = 0;
    if (rc == TS_OK) rc = opt_int(root, "top_k", w, 0, ((int64_t)1 << 30) - 1, &k, &present, err);
    if (rc == TS_OK && present) c->gen_top_k = (int)k;
    return rc;
}

static json_t *load_json(const char *text, size_t len, const char *file, ts_status *rc,
                         ts_err *err) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        *rc = ts_fail(err, TS_ERR_FORMAT, "%s: not valid JSON (line %d, column %d: %s)", file,
                      je.line, je.column, je.text);
    return root;
}

ts_status ts_config_parse(const char *json, size_t len, const char *gen_json, size_t gen_len,
                          const char *name, ts_model_config *cfg, ts_err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_id = cfg->pad_id = -1;
    cfg->gen_temperature = cfg->gen_top_p = -1.0f;
    cfg->gen_top_k = -1;

    ts_status rc = TS_OK;
    json_t *root = load_json(json, len, name, &rc, err);
    if (!root) return rc;
    rc = parse_main(root, (where){name, ""}, cfg, err);
    json_decref(root);
    if (rc != TS_OK || !gen_json) return rc;

    /* Messages about the generation config name it next to config.json. */
    ts_buf gname = {0};
    const char *slash = strrchr(name, '/');
    if (ts_buf_printf(&gname, "%.*sgeneration_config.json", slash ? (int)(slash - name) + 1 : 0,
                      name) != TS_OK) {
        ts_buf_free(&gname);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", name);
    }
    root = load_json(gen_json, gen_len, gname.data, &rc, err);
    if (root) rc = parse_gen(root, (where){gname.data, ""}, cfg, err);
    json_decref(root);
    ts_buf_free(&gname);
    return rc;
}

ts_status ts_config_load(const char *dir, ts_model_config *cfg, ts_err *err) {
    ts_buf path = {0}, gpath = {0};
    if (ts_buf_printf(&path, "%s/config.json", dir) != TS_OK ||
        ts_buf_printf(&gpath, "%s/generation_config.json", dir) != TS_OK) {
        ts_buf_free(&path);
        ts_buf_free(&gpath);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", dir);
    }
    char *text = NULL, *gen = NULL;
    size_t len = 0, glen = 0;
    ts_status rc = ts_read_file(path.data, CFG_MAX_FILE, &text, &len, err);
    struct stat sb;
    if (rc == TS_OK && stat(gpath.data, &sb) == 0)
        rc = ts_read_file(gpath.data, CFG_MAX_FILE, &gen, &glen, err);
    if (rc == TS_OK) rc = ts_config_parse(text, len, gen, glen, path.data, cfg, err);
    free(text);
    free(gen);
    ts_buf_free(&path);
    ts_buf_free(&gpath);
    return rc;
}

void ts_config_rope_freqs(const ts_model_config *cfg, float *inv_freq) {
    const int half = cfg->head_dim / 2;
    const double pi = 3.14159265358979323846;
    for (int j = 0; j < half; j++) {
        double f = 1.0 / pow(cfg->rope_theta, (2.0 * j) / cfg->head_dim);
        if (cfg->rope_type == TS_ROPE_LINEAR) {
            f /= cfg->rope_factor;
        } else if (cfg->rope_type == TS_ROPE_LLAMA3) {
            double orig = cfg->rope_orig_max_pos;
            double low_wl = orig / cfg->rope_low_freq;   /* longer waves: fully scaled */
            double high_wl = orig / cfg->rope_high_freq; /* shorter waves: untouched */
            double wl = 2.0 * pi / f;
            if (wl > low_wl) {
                f /= cfg->rope_factor;
            } else if (wl >= high_wl) {
                double s = (orig / wl - cfg->rope_low_freq) /
                           (cfg->rope_high_freq - cfg->rope_low_freq);
                f = (1.0 - s) * f / cfg->rope_factor + s * f;
            }
        }
        inv_freq[j] = (float)f;
    }
}
