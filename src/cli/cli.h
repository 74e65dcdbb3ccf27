/* Shared pieces of the command-line program: argument parsing and opening
 * a runtime with the common options. Only src/cli prints for people or exits. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include "engine/generate.h"
#include "engine/runtime.h"
#include "engine/engine.h"

#define CLI_MAX_STOP 16

typedef struct cli_args {
    const char *model;
    const char *prompt, *prompt_file, *system, *text, *ids, *out, *cases;
    bool chat, no_think, show_thinking, exact, no_special;
    int n_predict, threads, limit, reps;
    int bench_prompt, bench_gen, bench_depth;
    int requests, prefix_len, suffix_len;
    int in_min, in_max, out_min, out_max; /* bench-batch length ranges */
    const char *mode;       /* eval-qa composition mode, NULL = whole-prompt prefill */
    float repair_frac;
    bool chunks_cached;
    const char *chunk_store; /* persistent chunk store: DIR or redis://HOST[:PORT] */
    ts_sample_params sample;
    const char *stop[CLI_MAX_STOP];
    int n_stop;
    const char *kv_mem, *isa, *cascade;
    const char *device;     /* --device cpu|cuda|cuda:N (NULL: cpu) */
    const char *kv_dtype;   /* --kv-dtype f32|f16|bf16 (NULL: f32) */
    int block_size;
} cli_args;

/* Parses argv[first..] into a; prints a message and returns false on error. */
bool cli_parse(int argc, char **argv, int first, cli_args *a);
/* Opens the model named by a (progress on a terminal); prints and returns NULL on error. */
ts_runtime *cli_open(const cli_args *a);
/* Engine options from the flags every engine command shares: --threads,
 * --exact, --device, --kv-dtype; the rest at their defaults. */
ts_engine_opts cli_engine_opts(const cli_args *a);
/* Renders a one-turn chat prompt (system may be NULL) into out. */
ts_status cli_chat_prompt(ts_runtime *rt, const char *system, const char *user, int enable_thinking,
                          ts_buf *out, ts_err *err);
/* Tokenizes text (special tokens in it recognised); prints on error. */
int32_t *cli_tokenize(ts_runtime *rt, const char *text, bool add_special, int *n);

/* Whether a and b are equal once leading and trailing whitespace is
 * removed (how eval answers are compared with the expected ones). */
bool cli_same_trimmed(const char *a, const char *b);

int cmd_generate(cli_args *a);
int cmd_generate_batch(cli_args *a);
int cmd_chat(cli_args *a);
int cmd_tokenize(cli_args *a);
int cmd_logits(cli_args *a);
int cmd_eval_qa(cli_args *a);
struct json_t;
int cmd_eval_compose(cli_args *a, struct json_t *cases, size_t n_cases, ts_runtime *rt);
int cmd_bench(cli_args *a);
int cmd_bench_shared(cli_args *a);
int cmd_bench_batch(cli_args *a);
int cmd_bench_chunks(cli_args *a);
/* serve parses its own options (argv[2..]). */
int cmd_serve(int argc, char **argv);

#endif
