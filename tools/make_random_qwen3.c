/* make_random_qwen3: writes a Hugging Face Qwen3ForCausalLM checkpoint with
 * random bf16 weights, shaped like Qwen3-0.6B by default, for benchmarks.
 *
 *   make_random_qwen3 OUT_DIR [--layers 28] [--hidden 1024] [--heads 16]
 *       [--kv-heads 8] [--head-dim 128] [--ffn 3072] [--vocab 151936]
 *       [--seed 1] [--tokenizer ../shared/tokenizers/qwen3 | --no-tokenizer]
 *   make_random_qwen3 --check DIR
 *
 * OUT_DIR gets config.json (transformers 4 layout: top-level rope_theta and
 * rope_scaling), generation_config.json, model.safetensors and, unless
 * --no-tokenizer, copies of tokenizer.json and tokenizer_config.json.
 * The safetensors file is streamed: the header (offsets precomputed, padded
 * with spaces to a multiple of 8 bytes) is written first, then each tensor
 * in a small buffer, so memory stays flat whatever the model size.
 * Weights are N(0, 0.02); RMSNorm weights are 1 + N(0, 0.02).
 *
 * --check DIR loads DIR through tessera's own config.json and safetensors
 * loaders and verifies that every Qwen3 tensor is there with the shape the
 * config implies, in bf16, with plausible values; exit status 0 if so. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/half.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

typedef struct shape_cfg {
    long layers, hidden, heads, kv_heads, head_dim, ffn, vocab;
    uint64_t seed;
} shape_cfg;

typedef struct tensor_spec {
    char name[96];
    int n_dims;
    int64_t shape[2];
    int is_norm; /* RMSNorm weight: centred on 1 */
    uint64_t begin, end;
} tensor_spec;

/* ---- random numbers: splitmix64 stream, Box-Muller normals ---- */

typedef struct rng {
    uint64_t x;
    int has_spare;
    double spare;
} rng;

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_normal(rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u in (0, 1] so that log(u) is finite */
    double u = ((double)(rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double v = (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double m = sqrt(-2.0 * log(u)), a = 6.283185307179586 * v;
    r->spare = m * sin(a);
    r->has_spare = 1;
    return m * cos(a);
}

/* ---- helpers ---- */

/* Prints "make_random_qwen3: <message>" and exits 1 (a program, not library
 * code, so exiting is the right thing here). */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "make_random_qwen3: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int host_is_little_endian(void) {
    uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: make_random_qwen3 OUT_DIR [--layers N] [--hidden N] [--heads N]\n"
            "         [--kv-heads N] [--head-dim N] [--ffn N] [--vocab N] [--seed N]\n"
            "         [--tokenizer DIR | --no-tokenizer]\n"
            "       make_random_qwen3 --check DIR\n"
            "Writes a random-weight Qwen3ForCausalLM checkpoint (bf16), shaped like\n"
            "Qwen3-0.6B by default (28 layers, hidden 1024, 16/8 heads, head_dim 128,\n"
            "ffn 3072, vocab 151936); tokenizer files default to ../shared/tokenizers/qwen3.\n");
}

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        die("%s needs an integer in %ld..%ld, not '%s'", opt, lo, hi, s);
    }
    return v;
}

static void write_json(const char *dir, const char *file, json_t *j) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0)
        die("cannot write %s", path);
    json_decref(j);
}

static void copy_file(const char *src_dir, const char *dst_dir, const char *file) {
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", src_dir, file);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, file);
    FILE *in = fopen(src, "rb");
    if (!in) die("cannot read %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) die("cannot create %s: %s", dst, strerror(errno));
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) die("cannot write %s: %s", dst, strerror(errno));
    if (ferror(in)) die("cannot read %s: %s", src, strerror(errno));
    fclose(in);
    if (fclose(out) != 0) die("cannot write %s: %s", dst, strerror(errno));
}

/* ---- the checkpoint ---- */

static json_t *config_json(const shape_cfg *c) {
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", "Qwen3ForCausalLM"));
    json_object_set_new(j, "attention_bias", json_false());
    json_object_set_new(j, "attention_dropout", json_real(0.0));
    json_object_set_new(j, "bos_token_id", json_integer(151643));
    json_object_set_new(j, "eos_token_id", json_integer(151645));
    json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden));
    json_object_set_new(j, "initializer_range", json_real(0.02));
    json_object_set_new(j, "intermediate_size", json_integer(c->ffn));
    json_object_set_new(j, "max_position_embeddings", json_integer(40960));
    json_object_set_new(j, "max_window_layers", json_integer(c->layers));
    json_object_set_new(j, "model_type", json_string("qwen3"));
    json_object_set_new(j, "num_attention_heads", json_integer(c->heads));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->layers));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->kv_heads));
    json_object_set_new(j, "rms_norm_eps", json_real(1e-6));
    json_object_set_new(j, "rope_scaling", json_null());
    json_object_set_new(j, "rope_theta", json_integer(1000000));
    json_object_set_new(j, "sliding_window", json_null());
    json_object_set_new(j, "tie_word_embeddings", json_true());
    json_object_set_new(j, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(j, "transformers_version", json_string("4.51.0"));
    json_object_set_new(j, "use_cache", json_true());
    json_object_set_new(j, "use_sliding_window", json_false());
    json_object_set_new(j, "vocab_size", json_integer(c->vocab));
    return j;
}

/* Qwen3-0.6B's generation defaults. */
static json_t *generation_json(void) {
    json_t *j = json_object();
    json_object_set_new(j, "bos_token_id", json_integer(151643));
    json_object_set_new(j, "do_sample", json_true());
    json_object_set_new(j, "eos_token_id", json_pack("[ii]", 151645, 151643));
    json_object_set_new(j, "pad_token_id", json_integer(151643));
    json_object_set_new(j, "temperature", json_real(0.6));
    json_object_set_new(j, "top_k", json_integer(20));
    json_object_set_new(j, "top_p", json_real(0.95));
    json_object_set_new(j, "transformers_version", json_string("4.51.0"));
    return j;
}

static void add_tensor(tensor_spec *t, size_t *n, const char *name, int64_t d0, int64_t d1,
                       int is_norm) {
    tensor_spec *s = &t[(*n)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dims = d1 ? 2 : 1;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->is_norm = is_norm;
}

/* Fills t (room for 3 + 11 * layers) in file order; returns the count and
 * sets each tensor's data offsets. */
static size_t tensor_list(const shape_cfg *c, tensor_spec *t) {
    size_t n = 0;
    char nm[96];
    int64_t h = c->hidden, q = c->heads * c->head_dim, kv = c->kv_heads * c->head_dim;
    add_tensor(t, &n, "model.embed_tokens.weight", c->vocab, h, 0); /* [vocab, hidden] */
    for (long i = 0; i < c->layers; i++) {
#define L(suffix, d0, d1, norm)                                             \
    do {                                                                    \
        snprintf(nm, sizeof nm, "model.layers.%ld.%s", i, suffix);          \
        add_tensor(t, &n, nm, d0, d1, norm);                                \
    } while (0)
        L("input_layernorm.weight", h, 0, 1);                /* [hidden] */
        L("self_attn.q_proj.weight", q, h, 0);               /* [heads*hd, hidden] */
        L("self_attn.k_proj.weight", kv, h, 0);              /* [kv*hd, hidden] */
        L("self_attn.v_proj.weight", kv, h, 0);              /* [kv*hd, hidden] */
        L("self_attn.o_proj.weight", h, q, 0);               /* [hidden, heads*hd] */
        L("self_attn.q_norm.weight", c->head_dim, 0, 1);     /* [hd] */
        L("self_attn.k_norm.weight", c->head_dim, 0, 1);     /* [hd] */
        L("post_attention_layernorm.weight", h, 0, 1);       /* [hidden] */
        L("mlp.gate_proj.weight", c->ffn, h, 0);             /* [ffn, hidden] */
        L("mlp.up_proj.weight", c->ffn, h, 0);               /* [ffn, hidden] */
        L("mlp.down_proj.weight", h, c->ffn, 0);             /* [hidden, ffn] */
#undef L
    }
    add_tensor(t, &n, "model.norm.weight", h, 0, 1); /* [hidden] */
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t elems = (uint64_t)t[i].shape[0] * (uint64_t)(t[i].n_dims == 2 ? t[i].shape[1] : 1);
        t[i].begin = off;
        off += elems * 2; /* bf16 */
        t[i].end = off;
    }
    return n;
}

/* Returns the header text (without the length prefix), padded with spaces
 * so that 8 + its length is a multiple of 8; sets *len. */
static char *st_header(const tensor_spec *t, size_t n, size_t *len) {
    json_t *j = json_object();
    json_object_set_new(j, "__metadata__", json_pack("{s:s}", "format", "pt"));
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].n_dims; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("BF16"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)t[i].begin, (json_int_t)t[i].end));
        json_object_set_new(j, t[i].name, e);
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return NULL;
    size_t l = strlen(s), padded = (l + 7) / 8 * 8; /* 8 + padded is then aligned */
    char *out = malloc(padded + 1);
    if (!out) {
        free(s);
        return NULL;
    }
    memcpy(out, s, l);
    memset(out + l, ' ', padded - l);
    out[padded] = '\0';
    free(s);
    *len = padded;
    return out;
}

static uint64_t write_safetensors(const char *dir, const shape_cfg *c) {
    size_t cap = 3 + 11 * (size_t)c->layers;
    tensor_spec *t = calloc(cap, sizeof *t);
    if (!t) die("out of memory");
    size_t n = tensor_list(c, t), hlen = 0;
    char *hdr = st_header(t, n, &hlen);
    if (!hdr) die("out of memory building the header");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen)
        die("cannot write %s: %s", path, strerror(errno));
    free(hdr);

    enum { CHUNK = 1 << 19 }; /* elements per write (1 MiB) */
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) die("out of memory");
    rng r = {c->seed, 0, 0.0};
    for (size_t i = 0; i < n; i++) {
        uint64_t left = (t[i].end - t[i].begin) / 2;
        while (left > 0) {
            size_t k = left < CHUNK ? (size_t)left : CHUNK;
            for (size_t e = 0; e < k; e++) {
                double v = 0.02 * rng_normal(&r);
                buf[e] = ts_f32_to_bf16((float)(t[i].is_norm ? 1.0 + v : v));
            }
            /* bf16 is stored little-endian; convert on big-endian hosts */
            if (!host_is_little_endian())
                for (size_t e = 0; e < k; e++) buf[e] = (uint16_t)((buf[e] >> 8) | (buf[e] << 8));
            if (fwrite(buf, 2, k, f) != k) die("cannot write %s: %s", path, strerror(errno));
            left -= k;
        }
    }
    free(buf);
    if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
    uint64_t total = 8 + hlen + t[n - 1].end;
    free(t);
    return total;
}

/* Mean and standard deviation of a bf16 tensor's first (at most 1M)
 * values. */
static void bf16_stats(const ts_tensor *t, double *mean, double *sd) {
    size_t n = t->nbytes / 2, k = n < (1u << 20) ? n : (1u << 20);
    const unsigned char *p = t->data;
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < k; i++) {
        double v = ts_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        s += v;
        s2 += v * v;
    }
    *mean = k ? s / (double)k : 0.0;
    *sd = k ? sqrt(s2 / (double)k - *mean * *mean) : 0.0;
}

static int check_dir(const char *dir) {
    ts_err err = {{0}};
    ts_model_config cfg;
    if (ts_config_load(dir, &cfg, &err) != TS_OK) {
        fprintf(stderr, "check: %s\n", err.msg);
        return 1;
    }
    int bad = 0;
#define EXPECT(cond, ...)                                   \
    do {                                                    \
        if (!(cond)) {                                      \
            fprintf(stderr, "check: " __VA_ARGS__);         \
            fputc('\n', stderr);                            \
            bad++;                                          \
        }                                                   \
    } while (0)
    EXPECT(cfg.arch == TS_ARCH_QWEN3, "architecture is not Qwen3");
    EXPECT(cfg.tie_embeddings && cfg.qk_norm, "expected tied embeddings and qk-norm");
    EXPECT(cfg.rope_theta == 1e6 && cfg.rope_type == TS_ROPE_DEFAULT, "rope is not default/1e6");
    EXPECT(cfg.max_pos == 40960 && cfg.bos_id == 151643, "max positions or bos differ");
    EXPECT(cfg.rms_eps > 0.99e-6f && cfg.rms_eps < 1.01e-6f, "rms_norm_eps is %g", (double)cfg.rms_eps);
    int has_eos = 0;
    for (int i = 0; i < cfg.n_eos; i++) has_eos |= cfg.eos_ids[i] == 151645;
    EXPECT(has_eos, "eos 151645 missing");
    ts_st *st = NULL;
    if (ts_st_open_dir(dir, &st, NULL, NULL, &err) != TS_OK) {
        fprintf(stderr, "check: %s\n", err.msg);
        return 1;
    }
    shape_cfg c = {cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                   cfg.ffn, cfg.vocab, 0};
    tensor_spec *t = calloc(3 + 11 * (size_t)c.layers, sizeof *t);
    if (!t) die("out of memory");
    size_t n = tensor_list(&c, t);
    EXPECT(ts_st_count(st) == n, "%zu tensors, expected %zu", ts_st_count(st), n);
    for (size_t i = 0; i < n; i++) {
        const ts_tensor *x = ts_st_find(st, t[i].name);
        if (!x) {
            EXPECT(0, "tensor %s is missing", t[i].name);
            continue;
        }
        int same = x->dtype == TS_DT_BF16 && x->n_dims == t[i].n_dims;
        for (int d = 0; same && d < t[i].n_dims; d++) same = x->shape[d] == t[i].shape[d];
        EXPECT(same, "tensor %s: dtype or shape differs", t[i].name);
        double mean, sd;
        bf16_stats(x, &mean, &sd);
        if (t[i].is_norm)
            EXPECT(fabs(mean - 1.0) < 0.05 && sd < 0.05, "%s: mean %g sd %g, expected ~1",
                   t[i].name, mean, sd);
        else if (x->nbytes / 2 >= 4096)
            EXPECT(fabs(mean) < 0.005 && fabs(sd - 0.02) < 0.002,
                   "%s: mean %g sd %g, expected ~N(0, 0.02)", t[i].name, mean, sd);
    }
#undef EXPECT
    printf("check %s: %zu tensors, %" PRIu64 " bytes, %d problems\n", dir, ts_st_count(st),
           ts_st_bytes(st), bad);
    free(t);
    ts_st_close(st);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    shape_cfg c = {28, 1024, 16, 8, 128, 3072, 151936, 1};
    const char *out = NULL, *tok = "../shared/tokenizers/qwen3";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(a, "--check")) {
            if (i + 1 >= argc) die("--check needs a directory");
            return check_dir(argv[i + 1]);
        }
        if (!strcmp(a, "--no-tokenizer")) {
            tok = NULL;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) die("%s needs a value", a);
            const char *v = argv[++i];
            const long big = 1L << 20;
            if (!strcmp(a, "--layers")) c.layers = parse_long(a, v, 1, 4096);
            else if (!strcmp(a, "--hidden")) c.hidden = parse_long(a, v, 1, big);
            else if (!strcmp(a, "--heads")) c.heads = parse_long(a, v, 1, 4096);
            else if (!strcmp(a, "--kv-heads")) c.kv_heads = parse_long(a, v, 1, 4096);
            else if (!strcmp(a, "--head-dim")) c.head_dim = parse_long(a, v, 2, 4096);
            else if (!strcmp(a, "--ffn")) c.ffn = parse_long(a, v, 1, big);
            else if (!strcmp(a, "--vocab")) c.vocab = parse_long(a, v, 1, 1L << 24);
            else if (!strcmp(a, "--seed")) c.seed = (uint64_t)parse_long(a, v, 0, 0x7fffffffL);
            else if (!strcmp(a, "--tokenizer")) tok = v;
            else {
                usage();
                die("unknown option %s", a);
            }
            continue;
        }
        if (out) {
            usage();
            die("unexpected argument %s (OUT_DIR is already %s)", a, out);
        }
        out = a;
    }
    if (!out) {
        usage();
        die("missing OUT_DIR");
    }
    if (c.heads % c.kv_heads) die("--heads must be a multiple of --kv-heads");
    if (c.head_dim % 2) die("--head-dim must be even (RoPE rotates pairs)");
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        die("cannot create directory %s: %s", out, strerror(errno));
    struct stat sb;
    if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) die("%s is not a directory", out);
    /* check the tokenizer first, so a bad path fails before the long write */
    if (tok) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", tok);
        if (stat(p, &sb) != 0) die("no tokenizer.json in %s (use --tokenizer DIR or --no-tokenizer)", tok);
    }

    write_json(out, "config.json", config_json(&c));
    write_json(out, "generation_config.json", generation_json());
    uint64_t bytes = write_safetensors(out, &c);
    if (tok) {
        copy_file(tok, out, "tokenizer.json");
        copy_file(tok, out, "tokenizer_config.json");
    }
    printf("%s: model.safetensors %" PRIu64 " bytes (%.2f GB), %ld layers, hidden %ld, vocab %ld\n",
           out, bytes, (double)bytes / 1e9, c.layers, c.hidden, c.vocab);
    return 0;
}
