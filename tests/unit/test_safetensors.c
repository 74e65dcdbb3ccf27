/* Safetensors loading: the three real checkpoints under ../shared (checked
 * against their headers and config.json, read independently here with
 * jansson), then one corrupt file per rule the loader must enforce, then a
 * replay of the fuzz seed corpus. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/progress.h"
#include "io/safetensors.h"
#include "test.h"

/* ---- independent readers ---- */

static json_t *load_json_file(const char *path) {
    json_error_t je;
    return json_load_file(path, 0, &je);
}

/* The header of a safetensors file, read with stdio; *hdr_len gets N. */
static json_t *read_header(const char *path, uint64_t *hdr_len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char b[8];
    json_t *root = NULL;
    if (fread(b, 1, 8, f) == 8) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
        char *text = malloc(n + 1);
        if (text && fread(text, 1, n, f) == n) {
            json_error_t je;
            root = json_loadb(text, n, 0, &je);
            *hdr_len = n;
        }
        free(text);
    }
    fclose(f);
    return root;
}

static long long cfg_int(json_t *cfg, const char *key) {
    return json_integer_value(json_object_get(cfg, key));
}

/* ---- progress callback recorder ---- */

typedef struct prog_rec {
    int calls;
    uint64_t last_done, last_total;
    int non_monotonic;
} prog_rec;

static void record(void *ctx, uint64_t done, uint64_t total) {
    prog_rec *r = ctx;
    if (r->calls && done < r->last_done) r->non_monotonic++;
    r->calls++;
    r->last_done = done;
    r->last_total = total;
}

/* Checks one real checkpoint: tensor count, shapes, dtypes, the bytes of a
 * tensor against the file read with stdio, and the progress calls. */
static void check_checkpoint(const char *rel, const char *const *shards, int n_shards) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", ts_test_shared(), rel);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = load_json_file(path);
    CHECKF(cfg != NULL, "%s unreadable", path);
    if (!cfg) return;

    /* Expected tensors: the union of the shard headers. */
    size_t want_count = 0;
    uint64_t want_bytes = 0;
    for (int s = 0; s < n_shards; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, shards[s]);
        uint64_t n;
        json_t *h = read_header(path, &n);
        CHECKF(h != NULL, "%s header unreadable", path);
        if (!h) continue;
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v) {
            if (strcmp(k, "__metadata__") == 0) continue;
            want_count++;
            json_t *off = json_object_get(v, "data_offsets");
            want_bytes += json_integer_value(json_array_get(off, 1)) -
                          json_integer_value(json_array_get(off, 0));
        }
        json_decref(h);
    }

    prog_rec rec = {0};
    ts_err err = {{0}};
    ts_st *st = NULL;
    ts_status rc = ts_st_open_dir(dir, &st, record, &rec, &err);
    CHECKF(rc == TS_OK, "open %s: %s", dir, err.msg);
    if (rc != TS_OK) {
        json_decref(cfg);
        return;
    }
    CHECKF(ts_st_count(st) == want_count, "%s: %zu tensors, headers list %zu", rel,
           ts_st_count(st), want_count);
    CHECKF(ts_st_bytes(st) == want_bytes, "%s: %llu bytes, headers say %llu", rel,
           (unsigned long long)ts_st_bytes(st), (unsigned long long)want_bytes);
    CHECK(rec.calls >= 2 && rec.non_monotonic == 0 && rec.last_done == rec.last_total &&
          rec.last_total > 0);

    /* The index's own total, when there is one. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_t *idx = n_shards > 1 ? load_json_file(path) : NULL;
    if (idx) {
        json_t *total = json_object_get(json_object_get(idx, "metadata"), "total_size");
        CHECKF((uint64_t)json_integer_value(total) == ts_st_bytes(st), "%s: total_size", rel);
        CHECK(json_object_size(json_object_get(idx, "weight_map")) == ts_st_count(st));
        json_decref(idx);
    }

    long long hidden = cfg_int(cfg, "hidden_size"), vocab = cfg_int(cfg, "vocab_size");
    long long heads = cfg_int(cfg, "num_attention_heads"), kv = cfg_int(cfg, "num_key_value_heads");
    long long hd = cfg_int(cfg, "head_dim"), ffn = cfg_int(cfg, "intermediate_size");
    long long layers = cfg_int(cfg, "num_hidden_layers");
    struct {
        const char *name;
        int nd;
        long long d0, d1;
    } want[] = {
        {"model.embed_tokens.weight", 2, vocab, hidden},
        {"model.norm.weight", 1, hidden, 0},
        {"model.layers.0.self_attn.q_proj.weight", 2, heads * hd, hidden},
        {"model.layers.0.self_attn.k_proj.weight", 2, kv * hd, hidden},
        {"model.layers.0.self_attn.o_proj.weight", 2, hidden, heads * hd},
        {"model.layers.0.mlp.down_proj.weight", 2, hidden, ffn},
        {"model.layers.0.mlp.gate_proj.weight", 2, ffn, hidden},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ts_tensor *t = ts_st_find(st, want[i].name);
        CHECKF(t != NULL, "%s: no %s", rel, want[i].name);
        if (!t) continue;
        CHECKF(t->n_dims == want[i].nd && t->shape[0] == want[i].d0 &&
                   (want[i].nd < 2 || t->shape[1] == want[i].d1),
               "%s: %s has shape [%lld, %lld]", rel, want[i].name, (long long)t->shape[0],
               (long long)t->shape[1]);
        CHECK(t->dtype == TS_DT_BF16 && t->nbytes == (size_t)(want[i].d0 * (want[i].nd > 1 ? want[i].d1 : 1) * 2));
    }
    char last[128];
    snprintf(last, sizeof last, "model.layers.%lld.input_layernorm.weight", layers - 1);
    CHECK(ts_st_find(st, last) != NULL);
    snprintf(last, sizeof last, "model.layers.%lld.input_layernorm.weight", layers);
    CHECK(ts_st_find(st, last) == NULL);
    bool tied = json_is_true(json_object_get(cfg, "tie_word_embeddings"));
    CHECK((ts_st_find(st, "lm_head.weight") != NULL) == !tied);
    CHECK(ts_st_find(st, "") == NULL && ts_st_find(st, "model.norm.weightx") == NULL);

    /* Every tensor is findable by its own name, and its data is the file's. */
    size_t found = 0;
    for (size_t i = 0; i < ts_st_count(st); i++)
        found += ts_st_find(st, ts_st_at(st, i)->name) == ts_st_at(st, i);
    CHECK(found == ts_st_count(st) && ts_st_at(st, ts_st_count(st)) == NULL);
    const ts_tensor *t = ts_st_find(st, "model.norm.weight");
    uint64_t n = 0;
    json_t *h = t ? read_header(t->file, &n) : NULL;
    if (h) {
        json_t *off = json_object_get(json_object_get(h, "model.norm.weight"), "data_offsets");
        long begin = 8 + (long)n + (long)json_integer_value(json_array_get(off, 0));
        FILE *f = fopen(t->file, "rb");
        unsigned char buf[4096];
        bool same = f && t->nbytes <= sizeof buf && fseek(f, begin, SEEK_SET) == 0 &&
                    fread(buf, 1, t->nbytes, f) == t->nbytes && memcmp(buf, t->data, t->nbytes) == 0;
        if (f) fclose(f);
        CHECKF(same, "%s: model.norm.weight bytes differ from the file", rel);
        json_decref(h);
    } else {
        CHECK(0 && "norm header");
    }
    ts_st_close(st);
    json_decref(cfg);
}

/* ---- corrupt files ---- */

static char g_tmp[64];

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", g_tmp, name);
}

static void write_bytes(const char *name, const void *p, size_t n) {
    char path[256];
    tmp_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* A safetensors image: the given header, then data_len bytes of data. A
 * header length of UINT64_MAX means "use the real one". */
static size_t make_st(unsigned char *out, size_t cap, const char *header, size_t data_len,
                      uint64_t claimed_len) {
    size_t hl = strlen(header);
    uint64_t n = claimed_len == UINT64_MAX ? hl : claimed_len;
    if (8 + hl + data_len > cap) return 0;
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
    memcpy(out + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) out[8 + hl + i] = (unsigned char)i;
    return 8 + hl + data_len;
}

static void write_st(const char *name, const char *header, size_t data_len) {
    unsigned char buf[8192];
    size_t n = make_st(buf, sizeof buf, header, data_len, UINT64_MAX);
    write_bytes(name, buf, n);
}

/* Opens g_tmp/name and expects status want and a message naming the file
 * and containing needle. */
static void expect_file(const char *name, ts_status want, const char *needle) {
    char path[256];
    tmp_path(path, sizeof path, name);
    ts_err err = {{0}};
    ts_st *st = NULL;
    ts_status rc = ts_st_open_file(path, &st, &err);
    CHECKF(rc == want && st == NULL, "%s: got %s (%s), want %s", name, ts_status_str(rc), err.msg,
           ts_status_str(want));
    CHECKF(strstr(err.msg, path) && (!needle || strstr(err.msg, needle)),
           "%s: message '%s' lacks the path or '%s'", name, err.msg, needle ? needle : "");
    ts_st_close(st);
}

static void expect_dir(const char *sub, ts_status want, const char *needle) {
    char path[256];
    tmp_path(path, sizeof path, sub);
    ts_err err = {{0}};
    ts_st *st = NULL;
    ts_status rc = ts_st_open_dir(path, &st, NULL, NULL, &err);
    CHECKF(rc == want && st == NULL, "%s: got %s (%s), want %s", sub, ts_status_str(rc), err.msg,
           ts_status_str(want));
    CHECKF(strstr(err.msg, path) && (!needle || strstr(err.msg, needle)),
           "%s: message '%s' lacks the path or '%s'", sub, err.msg, needle ? needle : "");
    ts_st_close(st);
}

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define T_B "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}"

static void test_corrupt(void) {
    /* A good one first, so that the helpers themselves are known to work. */
    write_st("good.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}," T_A "," T_B "}  ", 24);
    char path[256];
    tmp_path(path, sizeof path, "good.safetensors");
    ts_st *st = NULL;
    ts_err err = {{0}};
    CHECKF(ts_st_open_file(path, &st, &err) == TS_OK, "good: %s", err.msg);
    const ts_tensor *b = ts_st_find(st, "b");
    CHECK(ts_st_count(st) == 2 && b && b->nbytes == 8 && b->shape[0] == 4 && b->n_dims == 1 &&
          ((const unsigned char *)b->data)[0] == 16 && strcmp(b->file, path) == 0);
    ts_st_close(st);

    write_bytes("empty.safetensors", "", 0);
    expect_file("empty.safetensors", TS_ERR_FORMAT, "0 bytes");
    write_bytes("short.safetensors", "\x10\x00\x00", 3);
    expect_file("short.safetensors", TS_ERR_FORMAT, NULL);
    write_st("trunc.safetensors", "{" T_A "," T_B "}", 20); /* b's last 4 bytes cut off */
    expect_file("trunc.safetensors", TS_ERR_FORMAT, "'b' ends at byte 24 but the data area has 20");
    unsigned char img[256];
    size_t n = make_st(img, sizeof img, "{" T_A "}", 16, 1000);
    write_bytes("hdrlen.safetensors", img, n);
    expect_file("hdrlen.safetensors", TS_ERR_FORMAT, "header length 1000");
    n = make_st(img, sizeof img, "{}", 0, (uint64_t)1 << 63);
    write_bytes("hdrhuge.safetensors", img, n);
    expect_file("hdrhuge.safetensors", TS_ERR_FORMAT, "header length");
    write_st("past.safetensors",
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", 8);
    expect_file("past.safetensors", TS_ERR_FORMAT, "'x' ends at byte 16");
    write_st("overlap.safetensors",
             "{\"p\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12);
    expect_file("overlap.safetensors", TS_ERR_FORMAT, "overlap");
    write_st("contained.safetensors",
             "{\"p\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             16);
    expect_file("contained.safetensors", TS_ERR_FORMAT, "overlap");
    write_st("mismatch.safetensors",
             "{\"m\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,16]}}", 16);
    expect_file("mismatch.safetensors", TS_ERR_FORMAT, "'m' has 16 bytes of data but its shape");
    write_st("dtype.safetensors",
             "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    expect_file("dtype.safetensors", TS_ERR_UNSUPPORTED, "'w' has dtype 'F8_E4M3'");
    write_st("dims.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    expect_file("dims.safetensors", TS_ERR_UNSUPPORTED, "5 dimensions");
    write_st("negdim.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_file("negdim.safetensors", TS_ERR_FORMAT, "shape[0]");
    write_st("overflow.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
             0);
    expect_file("overflow.safetensors", TS_ERR_FORMAT, "overflows");
    write_st("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4);
    expect_file("noshape.safetensors", TS_ERR_FORMAT, "\"shape\"");
    write_st("strdims.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", 16);
    expect_file("strdims.safetensors", TS_ERR_FORMAT, "shape[0]");
    write_st("backwards.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8);
    expect_file("backwards.safetensors", TS_ERR_FORMAT, "begins at byte 8");
    write_st("badjson.safetensors", "{\"w\":{\"dtype\":\"F32\",", 0);
    expect_file("badjson.safetensors", TS_ERR_FORMAT, "not valid JSON");
    write_st("array.safetensors", "[1,2,3]", 0);
    expect_file("array.safetensors", TS_ERR_FORMAT, "not a JSON object");
    write_st("dup.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8);
    expect_file("dup.safetensors", TS_ERR_FORMAT, "not valid JSON");
    write_st("meta.safetensors", "{\"__metadata__\":3}", 0);
    expect_file("meta.safetensors", TS_ERR_FORMAT, "__metadata__");

    /* The in-memory entry names what it was given. */
    n = make_st(img, sizeof img, "{" T_A "}", 10, UINT64_MAX);
    st = NULL;
    CHECK(ts_st_parse(img, n, "mem-image", &st, &err) == TS_ERR_FORMAT && st == NULL &&
          strstr(err.msg, "mem-image: tensor 'a' ends at byte 16"));
    CHECK(ts_st_parse(img, n + 6, "mem-image", &st, &err) == TS_OK && ts_st_count(st) == 1);
    ts_st_close(st);
    ts_st_close(NULL);
}

static void mkdir_tmp(const char *sub) {
    char path[256];
    tmp_path(path, sizeof path, sub);
    CHECK(mkdir(path, 0700) == 0);
}

static void test_index(void) {
    const char *sh1 = "{" T_A "}", *sh2 = "{" T_B "}";
    /* b's offsets are 16..24, so shard 2 needs 24 bytes of data. */
    mkdir_tmp("ok");
    write_st("ok/s1.safetensors", sh1, 16);
    write_st("ok/s2.safetensors", sh2, 24);
    const char *good = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}";
    write_bytes("ok/model.safetensors.index.json", good, strlen(good));
    char path[256];
    tmp_path(path, sizeof path, "ok");
    ts_st *st = NULL;
    ts_err err = {{0}};
    prog_rec rec = {0};
    CHECKF(ts_st_open_dir(path, &st, record, &rec, &err) == TS_OK, "index ok: %s", err.msg);
    CHECK(ts_st_count(st) == 2 && ts_st_find(st, "a") && ts_st_find(st, "b") &&
          strstr(ts_st_find(st, "b")->file, "s2.safetensors") && ts_st_bytes(st) == 24);
    CHECK(rec.calls == 3 && rec.last_done == rec.last_total && rec.non_monotonic == 0);
    ts_st_close(st);

    struct {
        const char *sub, *index;
        ts_status want;
        const char *needle;
    } bad[] = {
        {"noshard", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"gone.safetensors\"}}",
         TS_ERR_IO, "gone.safetensors"},
        {"notensor", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}",
         TS_ERR_FORMAT, "'c' is not in shard 's2.safetensors'"},
        {"wrongshard", "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\"}}",
         TS_ERR_FORMAT, "'a' is mapped to 's2.safetensors'"},
        {"dotdot", "{\"weight_map\":{\"a\":\"../ok/s1.safetensors\"}}", TS_ERR_FORMAT,
         "not a plain file name"},
        {"slash", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", TS_ERR_FORMAT,
         "not a plain file name"},
        {"nomap", "{\"metadata\":{}}", TS_ERR_FORMAT, "weight_map"},
        {"badidx", "{\"weight_map\":", TS_ERR_FORMAT, "not valid JSON"},
        {"intshard", "{\"weight_map\":{\"a\":1}}", TS_ERR_FORMAT, "not a string"},
        {"dupe", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}",
         TS_ERR_FORMAT, "also appears in"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mkdir_tmp(bad[i].sub);
        char name[128];
        snprintf(name, sizeof name, "%s/s1.safetensors", bad[i].sub);
        write_st(name, sh1, 16);
        snprintf(name, sizeof name, "%s/s2.safetensors", bad[i].sub);
        if (strcmp(bad[i].sub, "dupe") == 0) /* s2 holds b and a second 'a' */
            write_st(name,
                     "{" T_B ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     24);
        else
            write_st(name, sh2, 24);
        snprintf(name, sizeof name, "%s/model.safetensors.index.json", bad[i].sub);
        write_bytes(name, bad[i].index, strlen(bad[i].index));
        expect_dir(bad[i].sub, bad[i].want, bad[i].needle);
    }
    mkdir_tmp("none");
    expect_dir("none", TS_ERR_NOTFOUND, "model.safetensors");
    mkdir_tmp("single");
    write_st("single/model.safetensors", sh1, 16);
    tmp_path(path, sizeof path, "single");
    CHECK(ts_st_open_dir(path, &st, NULL, NULL, &err) == TS_OK && ts_st_count(st) == 1);
    ts_st_close(st);
}

/* Every seed of the fuzz corpus goes through the parser; accepted images
 * have every tensor byte read, so the sanitizer build sees any bad view. */
static int accept_st(const unsigned char *buf, size_t n, const char *name) {
    ts_st *st = NULL;
    ts_err err;
    if (ts_st_parse(buf, n, name, &st, &err)) return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < ts_st_count(st); i++) {
        const ts_tensor *t = ts_st_at(st, i);
        for (size_t j = 0; j < t->nbytes; j++) sum += ((const unsigned char *)t->data)[j];
    }
    (void)sum;
    ts_st_close(st);
    return 1;
}

static void test_corpus(void) { ts_test_replay_corpus("tests/fuzz/corpus/safetensors", accept_st); }

static void test_progress(void) {
    char line[128];
    ts_progress_format(line, sizeof line, "m", (uint64_t)512 << 20, (uint64_t)1288490189, 0.8);
    CHECKF(strcmp(line, "loading m: 512 MB / 1.2 GB checked, 0.8 s") == 0, "got '%s'", line);
    ts_progress_bytes(line, sizeof line, 812);
    CHECK(strcmp(line, "812 B") == 0);
    ts_progress p;
    ts_progress_start(&p, "quiet");
    p.tty = false; /* as when stderr is not a terminal: nothing is drawn */
    ts_progress_cb(&p, 5, 10);
    ts_progress_finish(&p);
    CHECK(p.done == 5 && p.total == 10 && !p.drawn);
}

int main(void) {
    const char *qwen[] = {"model.safetensors"};
    const char *llama[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    const char *facts[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"};
    check_checkpoint("golden/qwen3-tiny-random", qwen, 1);
    check_checkpoint("golden/llama3-tiny-random", llama, 2);
    check_checkpoint("models/facts-qwen3-14m", facts, 3);

    snprintf(g_tmp, sizeof g_tmp, "/tmp/ts_st_XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL);
    test_corrupt();
    test_index();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0);
    test_corpus();
    test_progress();
    return ts_test_done("test_safetensors");
}
