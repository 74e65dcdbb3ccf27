/* Server pure functions: chunk markers in rendered prompts (server/prompt.h)
 * and metrics histograms / rendering (server/metrics.h). */
#include <string.h>

#include "server/metrics.h"
#include "server/prompt.h"
#include "test.h"

static const char *const IDS[4] = {
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
};

static void test_basic(void) {
    ts_buf b = {0};
    ts_prompt_append_text(&b, "<s>sys \x1ehello", 13);
    CHECK(b.len == 12 && !memchr(b.data, TS_PROMPT_MARK, b.len));
    ts_prompt_append_marker(&b, 1);
    ts_prompt_append_text(&b, " and ", 5);
    ts_prompt_append_marker(&b, 0);
    ts_prompt_append_text(&b, "?", 1);
    ts_prompt_part *p = NULL;
    int n = 0;
    ts_err err;
    CHECK(ts_prompt_split(b.data, IDS, 2, &p, &n, &err) == TS_OK);
    CHECKF(n == 5, "n = %d", n);
    if (n == 5) {
        CHECK(p[0].text && !strcmp(p[0].text, "<s>sys hello"));
        CHECK(p[1].chunk == IDS[1] && !p[1].text);
        CHECK(p[2].text && !strcmp(p[2].text, " and "));
        CHECK(p[3].chunk == IDS[0]);
        CHECK(p[4].text && !strcmp(p[4].text, "?"));
    }
    free(p);
    ts_buf_free(&b);
}

static void test_errors(void) {
    ts_prompt_part *p = NULL;
    int n = 0;
    ts_err err;
    ts_buf b = {0};
    ts_prompt_append_marker(&b, 0);
    CHECK(ts_prompt_split(b.data, IDS, 2, &p, &n, &err) == TS_ERR_INVALID && !p); /* chunk 1 dropped */
    CHECK(strstr(err.msg, IDS[1]) != NULL);
    ts_buf_clear(&b);
    ts_prompt_append_marker(&b, 0);
    ts_prompt_append_marker(&b, 0);
    CHECK(ts_prompt_split(b.data, IDS, 1, &p, &n, &err) == TS_ERR_INVALID); /* repeated */
    ts_buf_clear(&b);
    ts_prompt_append_marker(&b, 3);
    CHECK(ts_prompt_split(b.data, IDS, 2, &p, &n, &err) == TS_ERR_INVALID); /* out of range */
    char damaged[] = "x\x1ets-chunk:\x1e y";
    CHECK(ts_prompt_split(damaged, IDS, 1, &p, &n, &err) == TS_ERR_INVALID);
    char lone[] = "x\x1e";
    CHECK(ts_prompt_split(lone, IDS, 0, &p, &n, &err) == TS_ERR_INVALID);
    char plain[] = "no chunks";
    CHECK(ts_prompt_split(plain, IDS, 0, &p, &n, &err) == TS_OK && n == 1 && !strcmp(p[0].text, "no chunks"));
    free(p);
    ts_buf_free(&b);
}

/* Random sequences of text pieces and chunks: splitting gives back the
 * chunks in order, with the text between them concatenated. */
static void test_random(void) {
    uint64_t x = 88172645463325252ull;
    int rounds = getenv("TS_TEST_LIGHT") ? 50 : 400;
    int bad = 0;
    for (int round = 0; round < rounds; round++) {
        ts_buf b = {0}, want = {0};
        int order[4] = {0, 1, 2, 3};
        int n_chunks = (int)(x % 5);
        for (int i = n_chunks - 1; i > 0; i--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int j = (int)(x % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        /* want: "T:<text>|C:<id>|..." built by the plain rule */
        ts_buf cur = {0};
        for (int k = 0; k <= n_chunks; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int pieces = (int)(x % 3);
            for (int q = 0; q < pieces; q++) {
                char t[8] = {'a' + (char)(x >> (q * 8) & 7), '\x1e', ' ', 0};
                ts_prompt_append_text(&b, t, 3);
                ts_buf_append(&cur, t[0] == '\x1e' ? "" : t, 1);
                ts_buf_puts(&cur, " ");
            }
            if (cur.len) ts_buf_printf(&want, "T:%s|", cur.data);
            ts_buf_clear(&cur);
            if (k < n_chunks) {
                ts_prompt_append_marker(&b, order[k]);
                ts_buf_printf(&want, "C:%s|", IDS[order[k]]);
            }
        }
        ts_prompt_part *p = NULL;
        int n = 0;
        ts_err err;
        ts_buf got = {0};
        char empty[1] = {0};
        if (ts_prompt_split(b.data ? b.data : empty, IDS, n_chunks, &p, &n, &err)) {
            if (!bad) fprintf(stderr, "split failed: %s\n", err.msg);
            bad++;
        }
        for (int i = 0; i < n; i++)
            ts_buf_printf(&got, p[i].chunk ? "C:%s|" : "T:%s|", p[i].chunk ? p[i].chunk : p[i].text);
        if (strcmp(got.data ? got.data : "", want.data ? want.data : "")) {
            if (!bad) fprintf(stderr, "got  %s\nwant %s\n", got.data, want.data);
            bad++;
        }
        free(p);
        ts_buf_free(&b);
        ts_buf_free(&want);
        ts_buf_free(&cur);
        ts_buf_free(&got);
    }
    CHECKF(bad == 0, "%d of %d random prompts split wrongly", bad, rounds);
}

static void test_metrics(void) {
    ts_metrics m;
    ts_metrics_init(&m);
    double xs[200];
    uint64_t x = 12345;
    for (int i = 0; i < 200; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        xs[i] = (double)(x % 100000) / 20000.0; /* 0 .. 5 s */
        ts_metrics_ttft(&m, xs[i]);
    }
    /* each cumulative bucket counts the values <= its bound */
    int bad = 0;
    uint64_t cum = 0;
    for (int b = 0; b < m.ttft.n_bounds; b++) {
        cum += m.ttft.counts[b];
        uint64_t ref = 0;
        for (int i = 0; i < 200; i++) ref += xs[i] <= m.ttft.bounds[b];
        bad += cum != ref;
    }
    CHECKF(bad == 0, "%d histogram buckets differ from a direct count", bad);
    CHECK(m.ttft.count == 200);
    ts_metrics_status(&m, 200);
    ts_metrics_status(&m, 200);
    ts_metrics_status(&m, 429);
    ts_metrics_finish(&m, "length");
    ts_engine_stats st = {.generated_tokens = 0, .kv_blocks_used = 7, .prefix_hits = 3, .prefix_misses = 1};
    ts_metrics_engine(&m, &st, 1000);
    st.generated_tokens = 500;
    ts_metrics_engine(&m, &st, 3000);
    double rate = ts_metrics_rate(&m);
    CHECKF(rate > 249.9 && rate < 250.1, "rate %g (500 tokens in 2 s)", rate);
    ts_buf out = {0};
    ts_metrics_render(&m, &out);
    const char *want[] = {"tessera_requests_total{status=\"200\"} 2", "tessera_requests_total{status=\"429\"} 1",
                          "tessera_generations_total{finish_reason=\"length\"} 1",
                          "tessera_time_to_first_token_seconds_count 200",
                          "tessera_time_to_first_token_seconds_bucket{le=\"+Inf\"} 200",
                          "tessera_inter_token_latency_seconds_count 0", "tessera_kv_blocks{state=\"used\"} 7",
                          "tessera_prefix_cache_hit_rate 0.75", "tessera_tokens_per_second 250",
                          "tessera_kv_bytes_shared", "tessera_chunk_hit_rate"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        CHECKF(out.data && strstr(out.data, want[i]), "metrics text lacks '%s'", want[i]);
    ts_buf_free(&out);
    ts_metrics_free(&m);
}

int main(void) {
    test_basic();
    test_errors();
    test_random();
    test_metrics();
    return ts_test_done("test_server_prompt");
}
