/* Model binding: a checkpoint whose tensors disagree with config.json is
 * refused with a sentence naming the tensor; a consistent one binds, tied
 * and untied, with the small vectors widened exactly. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "base/half.h"
#include "model/model.h"
#include "test.h"

enum { H = 8, NH = 2, NKV = 1, HD = 4, FFN = 16, VOCAB = 32 };

typedef struct spec {
    const char *name;
    const char *dtype;
    int64_t d0, d1; /* d1 = 0: vector */
} spec;

static const char CONFIG[] =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4,"
    " \"intermediate_size\": 16, \"vocab_size\": 32, \"max_position_embeddings\": 64,"
    " \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000, \"tie_word_embeddings\": %s}";

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* Writes dir/model.safetensors holding specs, every element of tensor i
 * equal to bf16 (i + 1) / 8. */
static void write_st(const char *dir, const spec *s, int n) {
    json_t *hdr = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t es = strcmp(s[i].dtype, "F32") == 0 || strcmp(s[i].dtype, "I32") == 0 ? 4 : 2;
        size_t cnt = (size_t)s[i].d0 * (size_t)(s[i].d1 ? s[i].d1 : 1);
        json_t *shape = s[i].d1 ? json_pack("[II]", s[i].d0, s[i].d1) : json_pack("[I]", s[i].d0);
        json_object_set_new(hdr, s[i].name,
                            json_pack("{s:s, s:o, s:[II]}", "dtype", s[i].dtype, "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + cnt * es)));
        off += cnt * es;
    }
    char *js = json_dumps(hdr, JSON_COMPACT);
    size_t hl = strlen(js);
    unsigned char *buf = calloc(1, 8 + hl + off);
    uint64_t len = hl;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, js, hl);
    size_t pos = 8 + hl;
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)s[i].d0 * (size_t)(s[i].d1 ? s[i].d1 : 1);
        uint16_t v = ts_f32_to_bf16((float)(i + 1) / 8.0f);
        for (size_t k = 0; k < cnt; k++) {
            if (strcmp(s[i].dtype, "BF16") == 0) memcpy(buf + pos + 2 * k, &v, 2);
        }
        pos += cnt * (strcmp(s[i].dtype, "F32") == 0 || strcmp(s[i].dtype, "I32") == 0 ? 4 : 2);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, buf, pos);
    free(buf);
    free(js);
    json_decref(hdr);
}

static int full_spec(spec *s, bool lm_head) {
    int n = 0;
    s[n++] = (spec){"model.embed_tokens.weight", "BF16", VOCAB, H};
    s[n++] = (spec){"model.norm.weight", "BF16", H, 0};
    s[n++] = (spec){"model.layers.0.input_layernorm.weight", "BF16", H, 0};
    s[n++] = (spec){"model.layers.0.post_attention_layernorm.weight", "BF16", H, 0};
    s[n++] = (spec){"model.layers.0.self_attn.q_norm.weight", "BF16", HD, 0};
    s[n++] = (spec){"model.layers.0.self_attn.k_norm.weight", "BF16", HD, 0};
    s[n++] = (spec){"model.layers.0.self_attn.q_proj.weight", "BF16", NH * HD, H};
    s[n++] = (spec){"model.layers.0.self_attn.k_proj.weight", "BF16", NKV * HD, H};
    s[n++] = (spec){"model.layers.0.self_attn.v_proj.weight", "BF16", NKV * HD, H};
    s[n++] = (spec){"model.layers.0.self_attn.o_proj.weight", "BF16", H, NH * HD};
    s[n++] = (spec){"model.layers.0.mlp.gate_proj.weight", "BF16", FFN, H};
    s[n++] = (spec){"model.layers.0.mlp.up_proj.weight", "BF16", FFN, H};
    s[n++] = (spec){"model.layers.0.mlp.down_proj.weight", "BF16", H, FFN};
    if (lm_head) s[n++] = (spec){"lm_head.weight", "BF16", VOCAB, H};
    return n;
}

static void setup(const char *dir, const char *tied, spec *s, int n) {
    char path[512], cfg[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(cfg, sizeof cfg, CONFIG, tied);
    write_file(path, cfg, strlen(cfg));
    write_st(dir, s, n);
}

static void expect_fail(const char *dir, const char *what, ts_status want, const char *needle) {
    ts_model *m = NULL;
    ts_err err = {{0}};
    ts_status st = ts_model_load(dir, &m, NULL, NULL, &err);
    CHECKF(st == want && m == NULL, "%s: status %d, want %d (%s)", what, st, want, err.msg);
    CHECKF(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    ts_model_free(m);
}

int main(void) {
    char dir[] = "/tmp/ts_model_load_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    spec s[20];

    /* consistent, tied: binds; norm gain of tensor 1 is 2/8 exactly */
    int n = full_spec(s, false);
    setup(dir, "true", s, n);
    ts_model *m = NULL;
    ts_err err = {{0}};
    CHECKF(ts_model_load(dir, &m, NULL, NULL, &err) == TS_OK, "tied load: %s", err.msg);
    if (m) {
        CHECK(m->lm_head.data == m->embed.data);
        CHECK(m->final_norm[0] == 0.25f && m->final_norm[H - 1] == 0.25f);
        CHECK(m->layers[0].q_norm != NULL && m->layers[0].bq == NULL);
        CHECK(m->layers[0].wq.rows == NH * HD && m->layers[0].wq.cols == H);
    }
    ts_model_free(m);

    /* untied with lm_head: the head is its own tensor */
    n = full_spec(s, true);
    setup(dir, "false", s, n);
    m = NULL;
    CHECKF(ts_model_load(dir, &m, NULL, NULL, &err) == TS_OK, "untied load: %s", err.msg);
    if (m) CHECK(m->lm_head.data != m->embed.data);
    ts_model_free(m);

    /* untied without lm_head: missing tensor named */
    n = full_spec(s, false);
    setup(dir, "false", s, n);
    expect_fail(dir, "missing lm_head", TS_ERR_FORMAT, "lm_head.weight");

    /* wrong shape */
    n = full_spec(s, false);
    s[6].d0 = NH * HD + 1;
    setup(dir, "true", s, n);
    expect_fail(dir, "wrong shape", TS_ERR_FORMAT, "q_proj.weight");

    /* integer weights */
    n = full_spec(s, false);
    s[10].dtype = "I32";
    setup(dir, "true", s, n);
    expect_fail(dir, "integer weight", TS_ERR_UNSUPPORTED, "gate_proj.weight");

    /* missing layer tensor */
    n = full_spec(s, false) - 1;
    setup(dir, "true", s, n);
    expect_fail(dir, "missing down_proj", TS_ERR_FORMAT, "down_proj.weight");

    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    return ts_test_done("test_model_load");
}
