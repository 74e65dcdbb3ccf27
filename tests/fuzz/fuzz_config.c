/* libFuzzer target: config.json text, optionally followed by a NUL byte and
 * generation_config.json text. Both parts are copied into buffers of their
 * exact size without a terminator, so any read past the length is caught. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    size_t glen = nul ? size - len - 1 : 0;
    char *cfg = malloc(len ? len : 1), *gen = nul ? malloc(glen ? glen : 1) : NULL;
    if (!cfg || (nul && !gen)) __builtin_trap();
    memcpy(cfg, data, len);
    if (nul && glen) memcpy(gen, nul + 1, glen);

    ts_model_config c;
    ts_err err;
    err.msg[0] = '\0';
    ts_status rc = ts_config_parse(cfg, len, gen, glen, "fuzz/config.json", &c, &err);
    if (rc != TS_OK) {
        if (!strstr(err.msg, "config.json")) __builtin_trap();
    } else {
        if (c.head_dim <= 0 || c.head_dim % 2 || c.n_heads % c.n_kv_heads || c.n_eos > TS_MAX_EOS)
            __builtin_trap();
        float *f = malloc(sizeof(float) * (size_t)(c.head_dim / 2));
        if (!f) __builtin_trap();
        ts_config_rope_freqs(&c, f);
        for (int j = 0; j < c.head_dim / 2; j++)
            if (!isfinite(f[j]) || f[j] <= 0) __builtin_trap();
        free(f);
    }
    free(cfg);
    free(gen);
    return 0;
}
