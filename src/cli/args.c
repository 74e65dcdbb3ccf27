#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "cli.h"

static bool parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "error: %s expects an integer in [%d, %d], got '%s'\n", flag, lo, hi, v);
        return false;
    }
    *out = (int)x;
    return true;
}

static bool parse_float(const char *flag, const char *v, float *out) {
    char *end;
    float x = strtof(v, &end);
    if (!*v || *end) {
        fprintf(stderr, "error: %s expects a number, got '%s'\n", flag, v);
        return false;
    }
    *out = x;
    return true;
}

bool cli_parse(int argc, char **argv, int first, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->n_predict = 256;
    a->reps = 3;
    a->bench_prompt = 512;
    a->bench_gen = 64;
    a->block_size = 16;
    a->requests = 32;
    a->prefix_len = 2048;
    a->suffix_len = 32;
    a->in_min = a->out_min = 100;
    a->in_max = a->out_max = 1024;
    a->repair_frac = 0.03f;
    a->sample = ts_sample_params_default();
    for (int i = first; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
#define STR(name, field) else if (!strcmp(f, name)) { if (!v) goto missing; a->field = v; i++; }
#define INT(name, field, lo, hi) else if (!strcmp(f, name)) { if (!v) goto missing; ok = parse_int(f, v, lo, hi, &a->field); i++; }
#define FLT(name, field) else if (!strcmp(f, name)) { if (!v) goto missing; ok = parse_float(f, v, &a->field); i++; }
#define FLAG(name, field) else if (!strcmp(f, name)) { a->field = true; }
        if (0) {}
        STR("-m", model) STR("--model", model) STR("-p", prompt) STR("--prompt-text", prompt)
        STR("-f", prompt_file) STR("--system", system) STR("--text", text) STR("--ids", ids)
        STR("--out", out) STR("--cases", cases) STR("--mode", mode) STR("--chunk-store", chunk_store) FLT("--repair-frac", repair_frac)
        FLAG("--chunks-cached", chunks_cached) STR("--kv-mem", kv_mem) STR("--isa", isa) STR("--cascade", cascade)
        STR("--device", device) STR("--kv-dtype", kv_dtype)
        INT("-n", n_predict, 1, 1 << 20) INT("--max-tokens", n_predict, 1, 1 << 20)
        INT("--threads", threads, 1, 256) INT("-t", threads, 1, 256)
        INT("--limit", limit, 0, 1 << 30) INT("--reps", reps, 1, 100)
        INT("--prompt", bench_prompt, 1, 1 << 20) INT("--gen", bench_gen, 1, 1 << 20)
        INT("--depth", bench_depth, 0, 1 << 20)
        INT("--requests", requests, 1, 4096) INT("--prefix", prefix_len, 0, 1 << 20)
        INT("--suffix", suffix_len, 1, 1 << 20) INT("--block-size", block_size, 1, 4096)
        INT("--in-min", in_min, 1, 1 << 20) INT("--in-max", in_max, 1, 1 << 20)
        INT("--out-min", out_min, 1, 1 << 20) INT("--out-max", out_max, 1, 1 << 20)
        INT("--top-k", sample.top_k, 0, 1 << 30)
        FLT("--temp", sample.temperature) FLT("--temperature", sample.temperature)
        FLT("--top-p", sample.top_p) FLT("--min-p", sample.min_p)
        FLT("--repeat-penalty", sample.repetition_penalty)
        FLAG("--chat", chat) FLAG("--no-think", no_think) FLAG("--show-thinking", show_thinking)
        FLAG("--exact", exact) FLAG("--no-special", no_special)
        else if (!strcmp(f, "--seed")) {
            if (!v) goto missing;
            char *end;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end) { fprintf(stderr, "error: --seed expects an integer\n"); return false; }
            a->sample.seed = s;
            i++;
        } else if (!strcmp(f, "--stop")) {
            if (!v) goto missing;
            if (a->n_stop == CLI_MAX_STOP) { fprintf(stderr, "error: at most %d --stop\n", CLI_MAX_STOP); return false; }
            a->stop[a->n_stop++] = v;
            i++;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see tessera --help)\n", f);
            return false;
        }
        if (!ok) return false;
        continue;
    missing:
        fprintf(stderr, "error: %s needs a value\n", f);
        return false;
    }
#undef STR
#undef INT
#undef FLT
#undef FLAG
    ts_err err;
    if (ts_sample_params_validate(&a->sample, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return false;
    }
    if (a->cascade && strcmp(a->cascade, "auto") && strcmp(a->cascade, "on") && strcmp(a->cascade, "off")) {
        fprintf(stderr, "error: --cascade expects auto, on or off\n");
        return false;
    }
    if (!a->model) {
        fprintf(stderr, "error: -m MODEL_DIR is required\n");
        return false;
    }
    return true;
}

ts_engine_opts cli_engine_opts(const cli_args *a) {
    ts_engine_opts o = ts_engine_opts_default();
    o.n_threads = a->threads;
    o.exact = a->exact;
    o.device = a->device;
    o.kv_dtype = a->kv_dtype;
    return o;
}

ts_runtime *cli_open(const cli_args *a) {
    ts_runtime_opts o = ts_runtime_opts_default();
    o.n_threads = a->threads;
    o.block_size = a->block_size;
    o.fast_prefill = !a->exact;
    o.device = a->device;
    o.kv_dtype = a->kv_dtype;
    if (a->kv_mem) {
        o.kv_bytes = ts_parse_size(a->kv_mem);
        if (!o.kv_bytes) {
            fprintf(stderr, "error: --kv-mem expects a size such as 512M or 4G, got '%s'\n", a->kv_mem);
            return NULL;
        }
    }
    if (a->isa) {
        if (!strcmp(a->isa, "scalar")) o.isa = TS_ISA_SCALAR;
        else if (!strcmp(a->isa, "avx2")) o.isa = TS_ISA_AVX2;
        else if (!strcmp(a->isa, "avx512")) o.isa = TS_ISA_AVX512;
        else if (strcmp(a->isa, "auto")) {
            fprintf(stderr, "error: --isa expects auto, scalar, avx2 or avx512\n");
            return NULL;
        }
    }
    ts_progress prog;
    ts_progress_start(&prog, a->model);
    o.progress = ts_progress_cb;
    o.progress_ctx = &prog;
    ts_runtime *rt = NULL;
    ts_err err;
    ts_status s = ts_runtime_open(a->model, &o, &rt, &err);
    ts_progress_finish(&prog);
    if (s) {
        fprintf(stderr, "error: %s\n", err.msg);
        return NULL;
    }
    return rt;
}

ts_status cli_chat_prompt(ts_runtime *rt, const char *system, const char *user, int enable_thinking,
                          ts_buf *out, ts_err *err) {
    if (!rt->chat) {
        return ts_buf_printf(out, "%s%s%s", system ? system : "", system ? "\n\n" : "", user);
    }
    ts_chat_msg msgs[2];
    int n = 0;
    if (system) msgs[n++] = (ts_chat_msg){"system", system};
    msgs[n++] = (ts_chat_msg){"user", user};
    return ts_chat_render(rt->chat, msgs, (size_t)n, true, enable_thinking, out, err);
}

int32_t *cli_tokenize(ts_runtime *rt, const char *text, bool add_special, int *n) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ts_err err;
    if (ts_tok_encode(rt->tok, text, strlen(text), add_special, &ids, &n_ids, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return NULL;
    }
    *n = (int)n_ids;
    return ids;
}
