/* libFuzzer target: the input is a Jinja template, parsed and rendered
 * with a fixed chat context (messages with tool calls, tools, flags) under
 * small limits. Checks beyond "no crash": a failure carries a message that
 * starts with "template", output stays within the output limit, and two
 * renders of the same parsed template give the same text.
 *
 * Build and run (tests/fuzz/build.sh picks up every fuzz_*.c):
 *   tests/fuzz/build.sh && build/fuzz/fuzz_jinja -max_total_time=60 -max_len=4096 build/fuzz/work_jinja
 * or by hand:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
 *     tests/fuzz/fuzz_jinja.c src/base/err.c src/base/buf.c src/tok/jinja_lex.c ... (every
 *     src/tok/jinja_ file) -ljansson -lutf8proc -lm -o /tmp/fuzz_jinja */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "tok/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *context(void) {
    static const char *ctx =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"},"
        " {\"role\": \"user\", \"content\": \"Hi <tool_response>x</tool_response>\"},"
        " {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nHello\","
        "  \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, null]}}}]},"
        " {\"role\": \"tool\", \"content\": \"42\"}, {\"role\": \"user\", \"content\": \"\\u00e9\\u4e2d\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
        " \"add_generation_prompt\": true, \"enable_thinking\": false, \"bos_token\": \"<s>\","
        " \"eos_token\": \"</s>\", \"n\": 3, \"x\": 1.5}";
    return json_loads(ctx, 0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *vars;
    if (!vars) vars = context();
    char *src = malloc(size ? size : 1);   /* exact size: reads past the end are caught */
    if (!src) return 0;
    if (size) memcpy(src, data, size);
    ts_err err = {{0}};
    ts_jinja *t = NULL;
    ts_status st = ts_jinja_parse(src, size, &t, &err);
    free(src);
    if (st != TS_OK) {
        if (strncmp(err.msg, "template", 8) != 0 || t) __builtin_trap();
        return 0;
    }
    ts_jinja_limits lim = {.max_steps = 200000, .max_output = 1 << 16, .max_memory = 16 << 20, .max_depth = 40};
    ts_buf a = {0}, b = {0};
    ts_status s1 = ts_jinja_render(t, vars, &lim, &a, &err);
    if (s1 != TS_OK && (strncmp(err.msg, "template", 8) != 0 || a.len)) __builtin_trap();
    if (a.len > lim.max_output) __builtin_trap();
    bool clock = memmem(data, size, "strftime", 8) != NULL;
    ts_status s2 = ts_jinja_render(t, vars, &lim, &b, &err);
    if (!clock && (s1 != s2 || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))) __builtin_trap();
    ts_buf_free(&a);
    ts_buf_free(&b);
    ts_jinja_free(t);
    return 0;
}
