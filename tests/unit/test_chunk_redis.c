/* Redis chunk store against a real redis-server started here on 127.0.0.1
 * at a free port (--save '' --appendonly no), killed at the end: round trip
 * between two stores (two "processes"), missing key, a corrupt value
 * refused, Redis down at start and lost mid-run failing softly, then the
 * store reconnecting by itself. Without redis-server the server part prints
 * SKIP; the down-at-start part runs anyway. */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv/chunk.h"
#include "kv/chunk_store.h"
#include "test.h"

static uint8_t FP[32], ENC[32];
static const ts_chunk_shape SHAPE = {2, 1, 8};
static int n_logs;

static void on_log(void *ctx, const char *msg) {
    (void)ctx;
    if (getenv("TS_TEST_VERBOSE")) fprintf(stderr, "log: %s\n", msg);
    n_logs++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port nobody listens on right now (the kernel's pick for port 0). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static bool have_redis_server(void) {
    const char *path = getenv("PATH");
    char buf[1024];
    while (path && *path) {
        const char *c = strchr(path, ':');
        size_t n = c ? (size_t)(c - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/redis-server", (int)n, path);
        if (access(buf, X_OK) == 0) return true;
        path = c ? c + 1 : NULL;
    }
    return false;
}

/* Starts redis-server on port; returns its pid once it answers PING, or -1. */
static pid_t start_redis(int port) {
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        FILE *null = freopen("/dev/null", "w", stdout);
        (void)null;
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return -1;
    struct timeval tv = {0, 200000};
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        bool ok = false;
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            ok = r && r->type == REDIS_REPLY_STATUS;
            if (r) freeReplyObject(r);
        }
        if (c) redisFree(c);
        if (ok) return pid;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return -1; /* exited */
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void stop_redis(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static ts_chunk *make_chunk(ts_chunk_reg *reg, int base, int n, ts_chunk_id *id) {
    int32_t t[32];
    float k[2 * 32 * 8], v[2 * 32 * 8];
    for (int i = 0; i < n; i++) t[i] = base + i;
    for (int i = 0; i < 2 * n * 8; i++) k[i] = (float)(base * 3 + i), v[i] = (float)(base - i) / 8;
    ts_chunk *h = NULL;
    if (ts_chunk_reg_register(reg, t, (size_t)n, TS_CHUNK_DOCUMENT, ENC, FP, id, NULL, &h, NULL) != TS_OK)
        return NULL;
    if (ts_chunk_attach_kv(reg, h, SHAPE, k, v, NULL) != TS_OK) {
        ts_chunk_release(reg, h);
        return NULL;
    }
    return h;
}

static bool same_kv(ts_chunk_reg *ra, ts_chunk *a, ts_chunk_reg *rb, ts_chunk *b) {
    ts_chunk_info x, y;
    ts_chunk_get_info(ra, a, &x);
    ts_chunk_get_info(rb, b, &y);
    size_t half = (size_t)ts_chunk_kv_bytes(x.shape, x.n_tokens);
    return x.n_tokens == y.n_tokens && y.has_kv && memcmp(x.id.b, y.id.b, 32) == 0 &&
           memcmp(x.tokens, y.tokens, (size_t)x.n_tokens * 4) == 0 &&
           memcmp(x.k, y.k, half) == 0 && memcmp(x.v, y.v, half) == 0;
}

/* Nothing listens on the port: open succeeds, calls fail fast and softly. */
static void test_down_at_start(void) {
    int port = free_port();
    ts_chunk_store *st = NULL;
    ts_err e;
    int logs0 = n_logs;
    double t0 = now_s();
    CHECK(ts_chunk_store_redis_open("127.0.0.1", port, 100, on_log, NULL, &st, &e) == TS_OK && st);
    CHECK(n_logs == logs0 + 1);
    ts_chunk_reg *reg = NULL;
    ts_chunk_reg_create(0, &reg, NULL);
    ts_chunk_id id;
    ts_chunk *h = make_chunk(reg, 10, 6, &id);
    for (int i = 0; i < 20; i++) {
        CHECK(ts_chunk_store_save(st, reg, h, &e) == TS_ERR_IO);
        ts_chunk *got = NULL;
        ts_chunk_expect exp = {FP, SHAPE, NULL};
        CHECK(ts_chunk_store_load(st, reg, &id, &exp, &got, &e) == TS_ERR_IO && !got);
    }
    CHECK(strstr(e.msg, "unavailable") != NULL);
    double dt = now_s() - t0;
    CHECKF(dt < 1.0, "40 calls to a down store took %.3f s", dt);
    ts_chunk_store_stats ss = ts_chunk_store_get_stats(st);
    CHECK(!ss.available && ss.unavailable == 40 && ss.put_errors == 20 && ss.get_errors == 20);
    CHECK(n_logs == logs0 + 1); /* logged once, not per call */
    /* specs */
    char spec[64];
    snprintf(spec, sizeof spec, "redis://127.0.0.1:%d", port);
    ts_chunk_store *sp = NULL;
    CHECK(ts_chunk_store_open(spec, NULL, NULL, &sp, &e) == TS_OK && sp &&
          strcmp(ts_chunk_store_name(sp), "redis") == 0 && !ts_chunk_store_get_stats(sp).available);
    ts_chunk_store_close(sp);
    sp = NULL;
    CHECK(ts_chunk_store_open("redis://127.0.0.1:99999", NULL, NULL, &sp, &e) == TS_ERR_INVALID && !sp);
    CHECK(ts_chunk_store_open("redis://:80", NULL, NULL, &sp, &e) == TS_ERR_INVALID && !sp);
    CHECK(ts_chunk_store_open("redis://host:x", NULL, NULL, &sp, &e) == TS_ERR_INVALID && !sp);
    CHECK(ts_chunk_store_open("", NULL, NULL, &sp, &e) == TS_ERR_INVALID && !sp);
    CHECK(ts_chunk_store_open("dir:", NULL, NULL, &sp, &e) == TS_ERR_INVALID && !sp);
    ts_chunk_store *bad = NULL;
    CHECK(ts_chunk_store_redis_open("127.0.0.1", 0, 100, NULL, NULL, &bad, &e) == TS_ERR_INVALID && !bad);
    ts_chunk_release(reg, h);
    ts_chunk_reg_destroy(reg);
    ts_chunk_store_close(st);
}

static void test_live(int port, pid_t *server) {
    ts_chunk_store *a = NULL, *b = NULL;
    ts_err e;
    CHECK(ts_chunk_store_redis_open("127.0.0.1", port, 500, on_log, NULL, &a, &e) == TS_OK);
    CHECK(ts_chunk_store_redis_open("127.0.0.1", port, 500, on_log, NULL, &b, &e) == TS_OK);
    CHECK(ts_chunk_store_get_stats(a).available && strcmp(ts_chunk_store_name(a), "redis") == 0);
    ts_chunk_reg *ra = NULL, *rb = NULL;
    ts_chunk_reg_create(0, &ra, NULL);
    ts_chunk_reg_create(0, &rb, NULL);
    ts_chunk_id ids[3];
    ts_chunk *hs[3];
    for (int i = 0; i < 3; i++) {
        hs[i] = make_chunk(ra, 100 * (i + 1), 10 + i, &ids[i]);
        CHECK(hs[i] && ts_chunk_store_save(a, ra, hs[i], &e) == TS_OK);
    }
    ts_chunk_expect exp = {FP, SHAPE, NULL};
    for (int i = 0; i < 3; i++) { /* the other "process" reads them */
        ts_chunk *got = NULL;
        CHECK(ts_chunk_store_load(b, rb, &ids[i], &exp, &got, &e) == TS_OK && got);
        CHECK(got && same_kv(ra, hs[i], rb, got));
        ts_chunk_release(rb, got);
    }
    ts_chunk_id none;
    memset(&none, 0x33, sizeof none);
    ts_chunk *got = NULL;
    CHECK(ts_chunk_store_load(b, rb, &none, &exp, &got, &e) == TS_ERR_NOTFOUND);

    /* the key holds what the format says, and a corrupt value is refused */
    redisContext *c = redisConnect("127.0.0.1", port);
    char hex[TS_CHUNK_HEX_LEN + 1];
    ts_chunk_id_to_hex(&ids[0], hex);
    redisReply *r = redisCommand(c, "STRLEN tessera:chunk:%s", hex);
    CHECK(r && r->type == REDIS_REPLY_INTEGER &&
          (uint64_t)r->integer == TS_CHUNK_BLOB_HEADER + 40 + 2 * ts_chunk_kv_bytes(SHAPE, 10));
    if (r) freeReplyObject(r);
    r = redisCommand(c, "SETRANGE tessera:chunk:%s 200 X", hex);
    if (r) freeReplyObject(r);
    ts_chunk_reg *rc = NULL;
    ts_chunk_reg_create(0, &rc, NULL);
    CHECK(ts_chunk_store_load(b, rc, &ids[0], &exp, &got, &e) == TS_ERR_FORMAT && !got);
    CHECK(strstr(e.msg, "checksum") != NULL);
    ts_chunk_id_to_hex(&ids[1], hex);
    r = redisCommand(c, "SET tessera:chunk:%s short", hex);
    if (r) freeReplyObject(r);
    CHECK(ts_chunk_store_load(b, rc, &ids[1], &exp, &got, &e) == TS_ERR_FORMAT);
    CHECK(ts_chunk_store_get_stats(b).corrupt == 2 && ts_chunk_reg_get_stats(rc).n_chunks == 0);
    ts_chunk_expect other = exp;
    uint8_t fp2[32];
    memset(fp2, 0xee, 32);
    other.model_fp = fp2;
    CHECK(ts_chunk_store_load(b, rc, &ids[2], &other, &got, &e) == TS_ERR_INVALID);
    CHECK(ts_chunk_store_del(a, &ids[2], &e) == TS_OK);
    CHECK(ts_chunk_store_load(b, rc, &ids[2], &exp, &got, &e) == TS_ERR_NOTFOUND);
    redisFree(c);

    /* lost mid-run: calls fail softly and fast, then the store reconnects */
    stop_redis(*server);
    *server = -1;
    int logs0 = n_logs;
    double t0 = now_s();
    int soft = 0;
    for (int i = 0; i < 10; i++)
        soft += ts_chunk_store_save(a, ra, hs[0], &e) == TS_ERR_IO;
    CHECK(soft == 10);
    CHECK(now_s() - t0 < 2.0);
    CHECK(!ts_chunk_store_get_stats(a).available && n_logs == logs0 + 1);
    *server = start_redis(port);
    CHECK(*server > 0);
    sleep_ms(1100); /* the store retries at most once a second */
    CHECK(ts_chunk_store_save(a, ra, hs[0], &e) == TS_OK);
    CHECK(ts_chunk_store_get_stats(a).available);
    got = NULL;
    CHECK(ts_chunk_store_load(a, rc, &ids[0], &exp, &got, &e) == TS_OK && got &&
          same_kv(ra, hs[0], rc, got)); /* b's connection died too: a reads */
    ts_chunk_release(rc, got);
    sleep_ms(1100);
    got = NULL;
    ts_chunk_reg *rd = NULL;
    ts_chunk_reg_create(0, &rd, NULL);
    ts_status sb = ts_chunk_store_load(b, rd, &ids[0], &exp, &got, &e);
    if (sb != TS_OK) sb = ts_chunk_store_load(b, rd, &ids[0], &exp, &got, &e); /* first call may find the dead socket */
    CHECKF(sb == TS_OK, "store b after the restart: %s", e.msg);
    ts_chunk_release(rd, got);
    ts_chunk_reg_destroy(rd);

    for (int i = 0; i < 3; i++) ts_chunk_release(ra, hs[i]);
    ts_chunk_reg_destroy(ra);
    ts_chunk_reg_destroy(rb);
    ts_chunk_reg_destroy(rc);
    ts_chunk_store_close(a);
    ts_chunk_store_close(b);
}

int main(void) {
    for (int i = 0; i < 32; i++) FP[i] = (uint8_t)(7 * i), ENC[i] = (uint8_t)(i + 9);
    test_down_at_start();
    if (!have_redis_server()) {
        printf("SKIP test_chunk_redis: redis-server is not installed (scripts/deps.sh --test installs it)\n");
        return ts_test_done("test_chunk_redis");
    }
    int port = free_port();
    pid_t server = start_redis(port);
    CHECKF(server > 0, "redis-server did not start on port %d", port);
    if (server > 0) test_live(port, &server);
    stop_redis(server);
    return ts_test_done("test_chunk_redis");
}
