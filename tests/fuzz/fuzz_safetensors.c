/* libFuzzer target: arbitrary bytes as a safetensors image. Whatever
 * ts_st_parse accepts must be safe to read in full and findable by name;
 * whatever it refuses must come with a message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ts_st *st = NULL;
    ts_err err;
    err.msg[0] = '\0';
    if (ts_st_parse(data, size, "fuzz.safetensors", &st, &err) != TS_OK) {
        if (st || !strstr(err.msg, "fuzz.safetensors")) __builtin_trap();
        return 0;
    }
    uint64_t total = 0;
    volatile unsigned sink = 0;
    for (size_t i = 0; i < ts_st_count(st); i++) {
        const ts_tensor *t = ts_st_at(st, i);
        if (ts_st_find(st, t->name) != t) __builtin_trap();
        const unsigned char *p = t->data;
        const unsigned char *end = data + size;
        if (t->nbytes && (p < data || p + t->nbytes > end)) __builtin_trap();
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1]; /* ASan checks both ends */
        total += t->nbytes;
    }
    if (total != ts_st_bytes(st)) __builtin_trap();
    (void)sink;
    ts_st_close(st);
    return 0;
}
