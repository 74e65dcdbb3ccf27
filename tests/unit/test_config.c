/* config.json parsing: the real configs under ../shared against their JSON
 * read independently here, transformers 4 vs 5 RoPE layouts, RoPE
 * frequencies against a plain reference, and one broken config per rule. */
#include <dirent.h>
#include <jansson.h>
#include <string.h>

#include "io/hf_config.h"
#include "test.h"

static json_t *load_json_file(const char *path) {
    json_error_t je;
    return json_load_file(path, 0, &je);
}

static long long jint(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }
static double jnum(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

/* Parses a jansson object as config.json text (gen may be NULL). */
static ts_status parse_obj(json_t *cfg, json_t *gen, ts_model_config *c, ts_err *err) {
    char *text = json_dumps(cfg, JSON_COMPACT);
    char *gtext = gen ? json_dumps(gen, JSON_COMPACT) : NULL;
    ts_status rc = ts_config_parse(text, strlen(text), gtext, gtext ? strlen(gtext) : 0,
                                   "tmp/config.json", c, err);
    free(text);
    free(gtext);
    return rc;
}

/* The reference: transformers' llama3 rule, spelled out as its masks. */
static void ref_freqs(double theta, int d, int type, double factor, double low, double high,
                      double orig, double *out) {
    const double pi = 3.14159265358979323846;
    for (int j = 0; j < d / 2; j++) {
        double base = 1.0 / pow(theta, (double)(2 * j) / (double)d);
        if (type == TS_ROPE_LINEAR) {
            out[j] = base / factor;
            continue;
        }
        if (type != TS_ROPE_LLAMA3) {
            out[j] = base;
            continue;
        }
        double wavelen = 2 * pi / base;
        double scaled = wavelen > orig / low ? base / factor : base;
        double smooth = (orig / wavelen - low) / (high - low);
        double smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
        bool medium = !(wavelen < orig / high) && !(wavelen > orig / low);
        out[j] = medium ? smoothed : scaled;
    }
}

static void check_freqs(const ts_model_config *c, const char *what) {
    float got[1024];
    double want[1024];
    CHECK(c->head_dim <= 2048);
    ts_config_rope_freqs(c, got);
    ref_freqs(c->rope_theta, c->head_dim, c->rope_type, c->rope_factor, c->rope_low_freq,
              c->rope_high_freq, c->rope_orig_max_pos, want);
    int bad = 0;
    for (int j = 0; j < c->head_dim / 2; j++)
        bad += fabs(got[j] - want[j]) > 1e-7 * fabs(want[j]);
    CHECKF(bad == 0, "%s: %d of %d rope frequencies differ from the reference", what, bad,
           c->head_dim / 2);
}

static void check_golden(const char *rel) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", ts_test_shared(), rel);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = load_json_file(path);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = load_json_file(path);
    CHECKF(j && g, "%s: configs unreadable", rel);
    if (!j || !g) return;
    ts_model_config c;
    ts_err err = {{0}};
    ts_status rc = ts_config_load(dir, &c, &err);
    CHECKF(rc == TS_OK, "%s: %s", rel, err.msg);
    if (rc != TS_OK) return;

    const char *arch = json_string_value(json_array_get(json_object_get(j, "architectures"), 0));
    CHECK(strcmp(c.arch_name, arch) == 0);
    CHECK(c.arch == (strcmp(arch, "LlamaForCausalLM") == 0 ? TS_ARCH_LLAMA : TS_ARCH_QWEN3));
    CHECK(c.qk_norm == (c.arch == TS_ARCH_QWEN3) && !c.qkv_bias && !c.o_bias);
    CHECK(c.n_layers == jint(j, "num_hidden_layers") && c.hidden == jint(j, "hidden_size"));
    CHECK(c.n_heads == jint(j, "num_attention_heads") &&
          c.n_kv_heads == jint(j, "num_key_value_heads") && c.head_dim == jint(j, "head_dim"));
    CHECK(c.ffn == jint(j, "intermediate_size") && c.vocab == jint(j, "vocab_size") &&
          c.max_pos == jint(j, "max_position_embeddings"));
    CHECK(c.rms_eps == (float)jnum(j, "rms_norm_eps"));
    CHECK(c.tie_embeddings == json_is_true(json_object_get(j, "tie_word_embeddings")));
    CHECK(c.bos_id == jint(j, "bos_token_id"));
    json_t *pad = json_object_get(j, "pad_token_id");
    CHECK(c.pad_id == (json_is_null(pad) ? -1 : json_integer_value(pad)));
    /* Both files name the same single eos here. */
    CHECK(jint(j, "eos_token_id") == jint(g, "eos_token_id"));
    CHECK(c.n_eos == 1 && c.eos_ids[0] == jint(j, "eos_token_id"));
    CHECK(c.gen_temperature < 0 && c.gen_top_p < 0 && c.gen_top_k < 0);

    json_t *rp = json_object_get(j, "rope_parameters");
    CHECK(c.rope_theta == jnum(rp, "rope_theta"));
    const char *type = json_string_value(json_object_get(rp, "rope_type"));
    if (strcmp(type, "llama3") == 0) {
        CHECK(c.rope_type == TS_ROPE_LLAMA3 && c.rope_factor == jnum(rp, "factor") &&
              c.rope_low_freq == jnum(rp, "low_freq_factor") &&
              c.rope_high_freq == jnum(rp, "high_freq_factor") &&
              c.rope_orig_max_pos == jint(rp, "original_max_position_embeddings"));
    } else {
        CHECK(strcmp(type, "default") == 0 && c.rope_type == TS_ROPE_DEFAULT);
    }
    check_freqs(&c, rel);
    json_decref(j);
    json_decref(g);
}

/* Transformers 4 layout (top-level rope_theta, rope_scaling with
 * "rope_type" or the older "type") must give what the v5 layout gives. */
static void test_v4_layout(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/golden/llama3-tiny-random/config.json", ts_test_shared());
    json_t *v5 = load_json_file(path);
    CHECK(v5 != NULL);
    if (!v5) return;
    ts_model_config a, b;
    ts_err err = {{0}};
    CHECKF(parse_obj(v5, NULL, &a, &err) == TS_OK, "v5: %s", err.msg);

    for (int variant = 0; variant < 2; variant++) {
        json_t *v4 = json_deep_copy(v5);
        json_t *rs = json_deep_copy(json_object_get(v5, "rope_parameters"));
        json_object_set(v4, "rope_theta", json_object_get(rs, "rope_theta"));
        json_object_del(rs, "rope_theta");
        if (variant == 1) {
            json_object_set(rs, "type", json_object_get(rs, "rope_type"));
            json_object_del(rs, "rope_type");
        }
        json_object_del(v4, "rope_parameters");
        json_object_set_new(v4, "rope_scaling", rs);
        CHECKF(parse_obj(v4, NULL, &b, &err) == TS_OK, "v4: %s", err.msg);
        CHECK(b.rope_type == TS_ROPE_LLAMA3 && b.rope_theta == a.rope_theta &&
              b.rope_factor == a.rope_factor && b.rope_orig_max_pos == a.rope_orig_max_pos);
        float fa[512], fb[512];
        ts_config_rope_freqs(&a, fa);
        ts_config_rope_freqs(&b, fb);
        CHECK(memcmp(fa, fb, sizeof(float) * (size_t)(a.head_dim / 2)) == 0);
        json_decref(v4);
    }

    /* rope_scaling null with a top-level theta: plain RoPE. */
    json_t *v4 = json_deep_copy(v5);
    json_object_del(v4, "rope_parameters");
    json_object_set_new(v4, "rope_theta", json_real(1e6));
    json_object_set_new(v4, "rope_scaling", json_null());
    CHECKF(parse_obj(v4, NULL, &b, &err) == TS_OK, "v4 null: %s", err.msg);
    CHECK(b.rope_type == TS_ROPE_DEFAULT && b.rope_theta == 1e6);
    check_freqs(&b, "v4 default");

    /* Realistic Llama 3 sizes and linear scaling, against the reference. */
    json_object_set_new(v4, "head_dim", json_integer(128));
    json_object_set_new(v4, "rope_scaling",
                        json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", 8.0,
                                  "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                  "original_max_position_embeddings", 8192));
    CHECKF(parse_obj(v4, NULL, &b, &err) == TS_OK, "llama3 128: %s", err.msg);
    check_freqs(&b, "llama3 head_dim 128");
    json_object_set_new(v4, "rope_scaling", json_pack("{s:s, s:f}", "type", "linear", "factor", 4.0));
    CHECKF(parse_obj(v4, NULL, &b, &err) == TS_OK, "linear: %s", err.msg);
    CHECK(b.rope_type == TS_ROPE_LINEAR && b.rope_factor == 4.0);
    check_freqs(&b, "linear");
    json_decref(v4);
    json_decref(v5);
}

/* One change to a valid config, and the status and message it must give. */
static void expect_bad(json_t *base, const char *key, json_t *value, ts_status want,
                       const char *needle) {
    json_t *j = json_deep_copy(base);
    if (value) json_object_set_new(j, key, value);
    else json_object_del(j, key);
    ts_model_config c;
    ts_err err = {{0}};
    ts_status rc = parse_obj(j, NULL, &c, &err);
    CHECKF(rc == want, "%s: got %s (%s), want %s", key, ts_status_str(rc), err.msg,
           ts_status_str(want));
    CHECKF(strstr(err.msg, "tmp/config.json") && strstr(err.msg, needle),
           "%s: message '%s' lacks '%s'", key, err.msg, needle);
    json_decref(j);
}

static void test_bad(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/golden/qwen3-tiny-random/config.json", ts_test_shared());
    json_t *b = load_json_file(path);
    CHECK(b != NULL);
    if (!b) return;
    expect_bad(b, "architectures", json_pack("[s]", "MistralForCausalLM"), TS_ERR_UNSUPPORTED,
               "Qwen3ForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM");
    expect_bad(b, "architectures", json_string("Qwen3ForCausalLM"), TS_ERR_FORMAT, "architectures");
    expect_bad(b, "architectures", NULL, TS_ERR_FORMAT, "architectures");
    expect_bad(b, "hidden_size", json_string("48"), TS_ERR_FORMAT, "hidden_size");
    expect_bad(b, "hidden_size", json_real(48.0), TS_ERR_FORMAT, "hidden_size");
    expect_bad(b, "hidden_size", json_integer(-48), TS_ERR_FORMAT, "hidden_size");
    expect_bad(b, "hidden_size", json_integer(1 << 20), TS_ERR_FORMAT, "hidden_size");
    expect_bad(b, "num_hidden_layers", json_integer(1000), TS_ERR_FORMAT, "num_hidden_layers");
    expect_bad(b, "num_hidden_layers", json_integer(0), TS_ERR_FORMAT, "num_hidden_layers");
    expect_bad(b, "vocab_size", NULL, TS_ERR_FORMAT, "missing field \"vocab_size\"");
    expect_bad(b, "intermediate_size", NULL, TS_ERR_FORMAT, "intermediate_size");
    expect_bad(b, "num_attention_heads", NULL, TS_ERR_FORMAT, "num_attention_heads");
    expect_bad(b, "rms_norm_eps", json_string("1e-6"), TS_ERR_FORMAT, "rms_norm_eps");
    expect_bad(b, "num_key_value_heads", json_integer(3), TS_ERR_FORMAT, "not a multiple");
    expect_bad(b, "head_dim", json_integer(31), TS_ERR_FORMAT, "odd");
    expect_bad(b, "tie_word_embeddings", json_integer(1), TS_ERR_FORMAT, "tie_word_embeddings");
    expect_bad(b, "rope_parameters", json_integer(5), TS_ERR_FORMAT, "rope_parameters");
    expect_bad(b, "rope_parameters", json_pack("{s:s, s:f}", "rope_type", "yarn", "factor", 4.0),
               TS_ERR_UNSUPPORTED, "'yarn'");
    expect_bad(b, "rope_parameters", json_pack("{s:s}", "rope_type", "dynamic"),
               TS_ERR_UNSUPPORTED, "default, llama3, linear");
    expect_bad(b, "rope_parameters", json_pack("{s:s, s:f}", "rope_type", "llama3", "factor", 8.0),
               TS_ERR_FORMAT, "low_freq_factor");
    expect_bad(b, "rope_parameters", json_pack("{s:s, s:s}", "rope_type", "linear", "factor", "2"),
               TS_ERR_FORMAT, "rope_parameters.factor");
    expect_bad(b, "rope_parameters", json_pack("{s:i}", "rope_type", 3), TS_ERR_FORMAT,
               "rope_type");
    expect_bad(b, "use_sliding_window", json_true(), TS_ERR_UNSUPPORTED, "sliding-window");
    expect_bad(b, "use_sliding_window", json_string("no"), TS_ERR_FORMAT, "use_sliding_window");
    expect_bad(b, "layer_types", json_pack("[s]", "sliding_attention"), TS_ERR_UNSUPPORTED,
               "sliding-window");
    expect_bad(b, "hidden_act", json_string("gelu"), TS_ERR_UNSUPPORTED, "gelu");
    expect_bad(b, "mlp_bias", json_true(), TS_ERR_UNSUPPORTED, "mlp_bias");
    expect_bad(b, "eos_token_id", json_pack("[i, s]", 1, "x"), TS_ERR_FORMAT, "eos_token_id");
    expect_bad(b, "bos_token_id", json_string("<s>"), TS_ERR_FORMAT, "bos_token_id");

    /* Broken text, a non-object, and a generation config of the wrong type. */
    ts_model_config c;
    ts_err err = {{0}};
    CHECK(ts_config_parse("{\"a\":", 5, NULL, 0, "x/config.json", &c, &err) == TS_ERR_FORMAT &&
          strstr(err.msg, "x/config.json: not valid JSON"));
    CHECK(ts_config_parse("[1]", 3, NULL, 0, "x/config.json", &c, &err) == TS_ERR_FORMAT &&
          strstr(err.msg, "not a JSON object"));
    json_t *gen = json_pack("{s:s}", "temperature", "hot");
    CHECK(parse_obj(b, gen, &c, &err) == TS_ERR_FORMAT &&
          strstr(err.msg, "tmp/generation_config.json") && strstr(err.msg, "temperature"));
    json_decref(gen);
    ts_status rc = ts_config_load("/nonexistent-dir", &c, &err);
    CHECK(rc == TS_ERR_IO && strstr(err.msg, "/nonexistent-dir/config.json"));
    json_decref(b);
}

/* Generation config merge, defaults, and the per-architecture flags. */
static void test_fields(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/golden/qwen3-tiny-random/config.json", ts_test_shared());
    json_t *b = load_json_file(path);
    CHECK(b != NULL);
    if (!b) return;
    ts_model_config c;
    ts_err err = {{0}};
    long long eos = jint(b, "eos_token_id");
    json_t *gen = json_pack("{s:[I,I,I], s:f, s:f, s:i}", "eos_token_id", (json_int_t)(eos + 7),
                            (json_int_t)eos, (json_int_t)(eos + 7), "temperature", 0.6, "top_p",
                            0.95, "top_k", 20);
    CHECKF(parse_obj(b, gen, &c, &err) == TS_OK, "gen: %s", err.msg);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == eos && c.eos_ids[1] == eos + 7);
    CHECK(c.gen_temperature == (float)json_real_value(json_object_get(gen, "temperature")) &&
          c.gen_top_p == (float)json_real_value(json_object_get(gen, "top_p")) &&
          c.gen_top_k == jint(gen, "top_k"));
    json_decref(gen);

    json_t *j = json_deep_copy(b);
    json_object_set_new(j, "architectures", json_pack("[s]", "Qwen2ForCausalLM"));
    json_object_del(j, "head_dim");
    json_object_del(j, "num_key_value_heads");
    json_object_set_new(j, "eos_token_id", json_pack("[i,i]", 5, 6));
    json_object_set_new(j, "sliding_window", json_integer(4096)); /* unused: flag is false */
    CHECKF(parse_obj(j, NULL, &c, &err) == TS_OK, "qwen2: %s", err.msg);
    CHECK(c.arch == TS_ARCH_QWEN2 && c.qkv_bias && !c.o_bias && !c.qk_norm);
    CHECK(c.head_dim == jint(b, "hidden_size") / jint(b, "num_attention_heads"));
    CHECK(c.n_kv_heads == c.n_heads && c.n_eos == 2 && c.eos_ids[1] == 6);

    json_object_set_new(j, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(j, "attention_bias", json_true());
    CHECKF(parse_obj(j, NULL, &c, &err) == TS_OK, "llama bias: %s", err.msg);
    CHECK(c.arch == TS_ARCH_LLAMA && c.qkv_bias && c.o_bias && !c.qk_norm);
    json_object_set_new(j, "hidden_size", json_integer(50)); /* 50 / 4 heads: no head_dim */
    CHECK(parse_obj(j, NULL, &c, &err) == TS_ERR_FORMAT && strstr(err.msg, "head_dim"));
    json_decref(j);
    json_decref(b);
}

/* The fuzz seeds: config text, optionally a NUL and a generation config. */
static int accept_config(const unsigned char *data, size_t n, const char *name) {
    const char *buf = (const char *)data;
    const char *nul = memchr(buf, 0, n);
    size_t len = nul ? (size_t)(nul - buf) : n;
    ts_model_config c;
    ts_err err;
    if (ts_config_parse(buf, len, nul ? nul + 1 : NULL, nul ? n - len - 1 : 0, name, &c, &err))
        return 0;
    check_freqs(&c, name);
    return 1;
}

static void test_corpus(void) { ts_test_replay_corpus("tests/fuzz/corpus/config", accept_config); }

int main(void) {
    check_golden("golden/qwen3-tiny-random");
    check_golden("golden/llama3-tiny-random");
    check_golden("models/facts-qwen3-14m");
    test_v4_layout();
    test_bad();
    test_fields();
    test_corpus();
    return ts_test_done("test_config");
}
