/* tessera command-line entry point: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
    "usage: tessera COMMAND -m MODEL_DIR [options]\n"
    "\n"
    "commands:\n"
    "  generate  -p TEXT [--chat] [--system S] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
    "            [--min-p P] [--repeat-penalty R] [--seed S] [--stop STR]... [--no-think]\n"
    "            [--show-thinking]          complete a prompt; text on stdout, stats on stderr\n"
    "  chat      [--system S]               interactive multi-turn chat\n"
    "  tokenize  --text TEXT [--no-special] token ids as a JSON array\n"
    "  logits    --ids 1,2,3 --out FILE     last position's logits, raw little-endian f32\n"
    "  eval-qa   --cases FILE [--limit N]   question answering from documents, JSON summary\n"
    "  bench     [--prompt 512] [--gen 64] [--depth D] [--reps 3]   tokens/s as JSON\n"
    "  bench-shared [--requests 32] [--prefix 2048] [--suffix 32] [--gen 32]\n"
    "            requests sharing a prefix: cache and cascade on vs off, as JSON\n"
    "  bench-batch [--requests 256] [--in-min 100] [--in-max 1024] [--out-min 100]\n"
    "            [--out-max 1024] [--temp 0.6] [--seed S] [--out WORKLOAD.json]\n"
    "            nano-vllm's throughput workload (random ids, ignore EOS), as JSON\n"
    "  bench-chunks --cases FILE [--limit N] [--repair-frac F]   documents as cited chunks\n"
    "            vs plain text through the engine: TTFT and answers, as JSON\n"
    "  serve     [--host H] [--port 8000] [--api-key KEY]...   OpenAI-compatible HTTP\n"
    "            server with chunks, metrics and a chat page (tessera serve --help)\n"
    "\n"
    "common options: --threads N, --kv-mem SIZE (e.g. 2G), --block-size 16,\n"
    "  --exact (f32 activations everywhere; default uses bf16 dot products for prefill),\n"
    "  --isa auto|scalar|avx2|avx512, --cascade auto|on|off (generate -f: shared-prefix attention),\n"
    "  --kv-dtype f32|f16|bf16 (KV cache elements; f16 and bf16 halve its memory and reads)\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc, argv);
    static const struct {
        const char *name;
        int (*fn)(cli_args *);
    } cmds[] = {{"generate", cmd_generate}, {"chat", cmd_chat},       {"tokenize", cmd_tokenize},
                {"logits", cmd_logits},     {"eval-qa", cmd_eval_qa}, {"bench", cmd_bench},
                {"bench-shared", cmd_bench_shared}, {"bench-chunks", cmd_bench_chunks},
                {"bench-batch", cmd_bench_batch}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name)) continue;
        cli_args a;
        if (!cli_parse(argc, argv, 2, &a)) return 2;
        return cmds[i].fn(&a);
    }
    fprintf(stderr, "error: unknown command '%s'\n%s", argv[1], USAGE);
    return 2;
}
