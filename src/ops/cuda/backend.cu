/* The CUDA backend object: device selection, stream, cuBLAS handle, the
 * sticky error, scratch, memory helpers and the op table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_internal.cuh"

static void set_err(ts_err *err, ts_status st, const char *msg) {
    (void)st;
    if (!err) return;
    snprintf(err->msg, sizeof err->msg, "%.500s", msg);
}

void ts_cuda_record(ts_cuda *c, const char *file, int line, const char *what,
                    const char *reason) {
    if (!c || c->err[0]) return;
    const char *base = strrchr(file, '/');
    snprintf(c->err, sizeof c->err, "%.60s:%d: %.300s: %.120s", base ? base + 1 : file, line,
             what, reason);
}

const char *ts_cublas_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "cuBLAS mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS not supported";
    default: return "cuBLAS error";
    }
}

/* ---- the op table's device-memory entries (ctx is the ts_cuda) ---- */
static void *op_dev_alloc(void *ctx, size_t bytes) {
    ts_cuda *c = (ts_cuda *)ctx;
    void *p = ts_cuda_alloc(c, bytes);
    if (p) ts_cuda_memset(c, p, 0, bytes);
    return p;
}
static void op_dev_free(void *ctx, void *p) { ts_cuda_free((ts_cuda *)ctx, p); }
static ts_status op_upload(void *ctx, void *dev, const void *host, size_t bytes, ts_err *err) {
    return ts_cuda_upload((ts_cuda *)ctx, dev, host, bytes, err);
}
static ts_status op_download(void *ctx, void *host, const void *dev, size_t bytes, ts_err *err) {
    return ts_cuda_download((ts_cuda *)ctx, host, dev, bytes, err);
}
static void op_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    ts_cuda_copy((ts_cuda *)ctx, dst, src, bytes);
}
static ts_status op_sync(void *ctx, ts_err *err) { return ts_cuda_sync((ts_cuda *)ctx, err); }
static void *op_host_alloc(void *ctx, size_t bytes) {
    ts_cuda *c = (ts_cuda *)ctx;
    void *p = NULL;
    if (!bytes || !ts_cuda_live(c)) return NULL;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) { /* optional: the caller falls back */
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}
static void op_host_free(void *ctx, void *p) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!p) return;
    TS_CU(c, cudaStreamSynchronize(c->stream));
    TS_CU(c, cudaFreeHost(p));
}
static void op_merge_rows(void *ctx, float *o_a, float *lse_a, const float *o_b,
                          const float *lse_b, const int32_t *rows, int n_rows, int n_heads,
                          int head_dim) {
    ts_cuda_attn_merge_rows((ts_cuda *)ctx, o_a, lse_a, o_b, lse_b, rows, n_rows, n_heads,
                            head_dim);
}

/* ---- graphs of queued work ---- */
static bool op_capture_begin(void *ctx) {
    ts_cuda *c = (ts_cuda *)ctx;
    c->capture_short = false;
    c->capturing = ts_cuda_live(c) &&
                   TS_CU(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    return c->capturing;
}
static void *op_capture_end(void *ctx) {
    ts_cuda *c = (ts_cuda *)ctx;
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    c->capturing = false;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g); /* always end, even after an error */
    bool ok = ts_cuda_live(c) && ts_cuda_ok_rt(c, e, __FILE__, __LINE__, "cudaStreamEndCapture");
    ok = ok && !c->capture_short; /* incomplete: the caller runs the ops uncaptured */
    if (ok) ok = TS_CU(c, cudaGraphInstantiate(&x, g, 0));
    if (g) cudaGraphDestroy(g);
    return ok ? (void *)x : NULL;
}
static void op_replay(void *ctx, void *graph) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (ts_cuda_live(c)) TS_CU(c, cudaGraphLaunch((cudaGraphExec_t)graph, c->stream));
}
static void op_graph_free(void *ctx, void *graph) {
    (void)ctx;
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
static uint64_t op_graph_epoch(void *ctx) { return ((ts_cuda *)ctx)->epoch; }

/* ---- ts_cuda_host_ops: rope and kv_write on host arrays ---- */
static void host_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                      const float *inv_freq) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    size_t xb = (size_t)n * n_heads * head_dim * sizeof(float);
    float *xd = (float *)ts_cuda_stage(c, &c->hs[0], x, xb);
    const int32_t *pd = (const int32_t *)ts_cuda_stage(c, &c->hs[1], pos, (size_t)n * 4);
    const float *fd = (const float *)ts_cuda_stage(c, &c->hs[2], inv_freq,
                                                   (size_t)(head_dim / 2) * sizeof(float));
    if (!xd || !pd || !fd) return;
    ts_cuda_rope(c, xd, pd, n, n_heads, head_dim, fd);
    if (ts_cuda_live(c))
        TS_CU(c, cudaMemcpyAsync(x, xd, xb, cudaMemcpyDeviceToHost, c->stream));
    if (ts_cuda_live(c)) TS_CU(c, cudaStreamSynchronize(c->stream));
}

static void host_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype,
                          const float *k, const float *v, const int32_t *slot, int n,
                          int n_kv_heads, int head_dim, int block_size) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    size_t rb = (size_t)n * n_kv_heads * head_dim * sizeof(float);
    const float *kd = (const float *)ts_cuda_stage(c, &c->hs[0], k, rb);
    const float *vd = (const float *)ts_cuda_stage(c, &c->hs[1], v, rb);
    const int32_t *sd = (const int32_t *)ts_cuda_stage(c, &c->hs[2], slot, (size_t)n * 4);
    if (!kd || !vd || !sd) return;
    ts_cuda_kv_write(c, k_pool, v_pool, kv_dtype, kd, vd, sd, n, n_kv_heads, head_dim,
                     block_size);
    /* the caller may reuse its arrays at once: the staging ring holds copies,
     * but wait anyway so that errors surface at this call */
    if (ts_cuda_live(c)) TS_CU(c, cudaStreamSynchronize(c->stream));
}

const ts_ops *ts_cuda_host_ops(ts_cuda *c) { return &c->host_ops; }

ts_cuda *ts_cuda_create(int device, ts_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    char msg[400];
    if (e != cudaSuccess) {
        snprintf(msg, sizeof msg, "cuda: no usable CUDA device (%s)", cudaGetErrorString(e));
        set_err(err, TS_ERR_UNSUPPORTED, msg);
        return NULL;
    }
    if (device < 0 || device >= n) {
        snprintf(msg, sizeof msg, "cuda: device %d requested, %d present", device, n);
        set_err(err, TS_ERR_INVALID, msg);
        return NULL;
    }
    ts_cuda *c = (ts_cuda *)calloc(1, sizeof *c);
    if (!c) {
        set_err(err, TS_ERR_NOMEM, "cuda: out of host memory for the backend");
        return NULL;
    }
    c->device = device;
    cudaDeviceProp p;
    if (TS_CU(c, cudaSetDevice(device)) && TS_CU(c, cudaGetDeviceProperties(&p, device))) {
        c->n_sm = p.multiProcessorCount;
        snprintf(c->name, sizeof c->name, "%.200s (sm_%d%d, %d SMs)", p.name, p.major, p.minor,
                 p.multiProcessorCount);
        if (p.major < 9) TS_BAD(c, "device below sm_90 (this build targets sm_90)");
    }
    if (ts_cuda_live(c)) TS_CU(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    if (ts_cuda_live(c) && TS_BLAS(c, cublasCreate(&c->blas)))
        TS_BLAS(c, cublasSetStream(c->blas, c->stream));
    const char *gr = getenv("TS_CUDA_GRAPH_ROWS");
    const int rows = gr ? atoi(gr) : 64;
    c->graph_rows = rows > 64 ? 64 : rows > 8 ? rows : 8;
    if (c->graph_rows > 8 && ts_cuda_live(c)) { /* cuBLAS inside graphs: its own workspace */
        const size_t ws = 32u << 20;
        if (TS_CU(c, cudaMalloc(&c->blas_ws, ws))) TS_BLAS(c, cublasSetWorkspace(c->blas, c->blas_ws, ws));
    }
    if (ts_cuda_live(c)) ts_cuda_attn_init(c);
    if (ts_cuda_live(c)) ts_cuda_sample_init(c);
    if (ts_cuda_live(c)) ts_cuda_shm_init(c);
    if (ts_cuda_live(c)) ts_cuda_decode_layers_init(c);
    if (ts_cuda_live(c)) ts_cuda_tmv_init(c);
    if (!ts_cuda_live(c)) {
        snprintf(msg, sizeof msg, "cuda: backend setup failed: %.360s", c->err);
        set_err(err, TS_ERR_IO, msg);
        ts_cuda_destroy(c);
        return NULL;
    }
    ts_ops *o = &c->ops;
    o->name = "cuda";
    o->kv_half = true;
    o->ctx = c;
    o->matmul = ts_cuda_matmul;
    o->embed = ts_cuda_embed;
    o->rmsnorm = ts_cuda_rmsnorm;
    o->add_rmsnorm = ts_cuda_add_rmsnorm;
    o->rope = ts_cuda_rope;
    o->swiglu = ts_cuda_swiglu;
    o->kv_write = ts_cuda_kv_write;
    o->attention = ts_cuda_attention;
    o->matmul_multi = ts_cuda_matmul_multi;
    o->matmul_swiglu = ts_cuda_matmul_swiglu;
    o->qk_rope_kv = ts_cuda_qk_rope_kv;
    o->matmul_ex = ts_cuda_matmul_ex;
    o->sample = ts_cuda_sample;
    o->attention_decode = ts_cuda_attention_decode;
    /* TS_CUDA_LAYERS=0: left NULL, the forward allocates nothing for it */
    o->decode_layers = c->dec_layers ? ts_cuda_decode_layers : NULL;
    o->attention_shared = ts_cuda_attention_shared;
    o->attention_cascade = ts_cuda_attention_cascade;
    o->dev_alloc = op_dev_alloc;
    o->dev_free = op_dev_free;
    o->upload = op_upload;
    o->download = op_download;
    o->copy = op_copy;
    o->sync = op_sync;
    o->host_alloc = op_host_alloc;
    o->host_free = op_host_free;
    o->attn_merge_rows = op_merge_rows;
    o->capture_begin = op_capture_begin;
    o->capture_end = op_capture_end;
    o->replay = op_replay;
    o->graph_free = op_graph_free;
    o->graph_rows = c->graph_rows;
    o->graph_epoch = op_graph_epoch;
    const char *pdl = getenv("TS_CUDA_PDL");
    c->pdl = !(pdl && !strcmp(pdl, "0"));
    const char *rw = getenv("TS_WMV_RW");
    c->wmv_rw1 = rw && !strcmp(rw, "2") ? 2 : 1;
    const char *mma = getenv("TS_CASCADE_MMA");
    c->cascade_mma = !(mma && !strcmp(mma, "0"));
    const char *parts = getenv("TS_CASCADE_PARTS");
    c->shm16_parts = parts && !strcmp(parts, "1") ? 1 : 2;
    c->meta.cache = true; /* attention items: read-only on the device */
    c->host_ops = *o;
    c->host_ops.rope = host_rope;
    c->host_ops.kv_write = host_kv_write;
    c->host_ops.qk_rope_kv = NULL;
    c->host_ops.attention_decode = NULL;
    c->host_ops.attention_cascade = NULL;
    c->host_ops.decode_layers = NULL;
    c->host_ops.matmul_ex = NULL;
    c->host_ops.sample = NULL; /* host arrays: rope and kv_write above */
    return c;
}

#ifdef DL_PROF
void ts_cuda_dl_prof_dump(void); /* decode_layers.cu, profiling builds only */
#endif
#ifdef SHW_PROF
void ts_cuda_shw_prof_dump(void); /* attn_shared_wgmma.cu, profiling builds only */
#endif
void ts_cuda_destroy(ts_cuda *c) {
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
#ifdef DL_PROF
    ts_cuda_dl_prof_dump();
#endif
#ifdef SHW_PROF
    ts_cuda_shw_prof_dump();
#endif
    cudaFree(c->act.p);
    cudaFree(c->part.p);
    cudaFree(c->meta.p);
    cudaFree(c->mlp.p);
    cudaFree(c->xn.p);
    cudaFree(c->acc.p);
    free(c->meta.last);
    for (int i = 0; i < 3; i++) cudaFree(c->hs[i].p);
    for (int i = 0; i < TS_CUDA_RING; i++) {
        if (c->ring[i]) cudaFreeHost(c->ring[i]);
        if (c->ring_ev[i]) cudaEventDestroy(c->ring_ev[i]);
    }
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_ws) cudaFree(c->blas_ws);
    if (c->tmv_cnt) cudaFree(c->tmv_cnt);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

const ts_ops *ts_cuda_ops(ts_cuda *c) { return &c->ops; }

const char *ts_cuda_last_error(const ts_cuda *c) { return c && c->err[0] ? c->err : NULL; }

const char *ts_cuda_device_name(const ts_cuda *c) { return c->name; }

ts_status ts_cuda_sync(ts_cuda *c, ts_err *err) {
    if (ts_cuda_live(c)) TS_CU(c, cudaStreamSynchronize(c->stream));
    if (ts_cuda_live(c)) return TS_OK;
    char msg[600];
    snprintf(msg, sizeof msg, "cuda: %.500s", c->err);
    set_err(err, TS_ERR_IO, msg);
    return TS_ERR_IO;
}

void *ts_cuda_scratch_get(ts_cuda *c, ts_cuda_scratch *s, size_t bytes) {
    if (!ts_cuda_live(c)) return NULL;
    if (bytes <= s->cap && s->p) return s->p;
    if (c->capturing) { /* no allocation in a capture: capture_end drops it */
        c->capture_short = true;
        return NULL;
    }
    c->epoch++; /* graphs recorded with the old buffer are stale */
    size_t cap = s->cap ? s->cap : 1 << 20;
    while (cap < bytes) cap *= 2;
    /* the old buffer may still be read by queued work */
    if (!TS_CU(c, cudaStreamSynchronize(c->stream))) return NULL;
    cudaFree(s->p);
    s->p = NULL;
    s->last_len = 0;
    s->cap = 0;
    if (!TS_CU(c, cudaMalloc(&s->p, cap))) return NULL;
    s->cap = cap;
    return s->p;
}

void *ts_cuda_stage(ts_cuda *c, ts_cuda_scratch *s, const void *host, size_t bytes) {
    /* stream order keeps the device buffer safe: this copy runs after the
     * kernels already queued that read the previous contents */
    if (s->cache && s->p && bytes == s->last_len && bytes <= s->cap &&
        !memcmp(s->last, host, bytes))
        return s->p;
    s->last_len = 0; /* unknown until this copy is queued */
    void *dev = ts_cuda_scratch_get(c, s, bytes);
    if (!dev) return NULL;
    int i = c->ring_next;
    c->ring_next = (i + 1) % TS_CUDA_RING;
    if (!c->ring_ev[i] && !TS_CU(c, cudaEventCreateWithFlags(&c->ring_ev[i], cudaEventDisableTiming)))
        return NULL;
    /* the slot's previous copy must have left the host buffer */
    if (!TS_CU(c, cudaEventSynchronize(c->ring_ev[i]))) return NULL;
    if (bytes > c->ring_cap[i]) {
        if (c->ring[i]) cudaFreeHost(c->ring[i]);
        c->ring[i] = NULL;
        c->ring_cap[i] = 0;
        size_t cap = bytes < 65536 ? 65536 : bytes * 2;
        if (!TS_CU(c, cudaMallocHost(&c->ring[i], cap))) return NULL;
        c->ring_cap[i] = cap;
    }
    memcpy(c->ring[i], host, bytes);
    if (!TS_CU(c, cudaMemcpyAsync(dev, c->ring[i], bytes, cudaMemcpyHostToDevice, c->stream)))
        return NULL;
    if (!TS_CU(c, cudaEventRecord(c->ring_ev[i], c->stream))) return NULL;
    if (s->cache) {
        if (bytes > s->last_cap) {
            void *n = realloc(s->last, bytes);
            if (!n) return dev; /* no cache this time */
            s->last = n;
            s->last_cap = bytes;
        }
        memcpy(s->last, host, bytes);
        s->last_len = bytes;
    }
    return dev;
}

void *ts_cuda_alloc(ts_cuda *c, size_t bytes) {
    if (bytes == 0 || !ts_cuda_live(c)) return NULL;
    void *p = NULL;
    if (!TS_CU(c, cudaMalloc(&p, bytes))) return NULL;
    return p;
}

void ts_cuda_free(ts_cuda *c, void *dev) {
    if (!dev) return;
    TS_CU(c, cudaStreamSynchronize(c->stream));
    TS_CU(c, cudaFree(dev));
}

ts_status ts_cuda_upload(ts_cuda *c, void *dev, const void *host, size_t bytes, ts_err *err) {
    if (ts_cuda_live(c) && bytes)
        TS_CU(c, cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, c->stream));
    return ts_cuda_sync(c, err);
}

ts_status ts_cuda_download(ts_cuda *c, void *host, const void *dev, size_t bytes,
                           ts_err *err) {
    if (ts_cuda_live(c) && bytes)
        TS_CU(c, cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream));
    return ts_cuda_sync(c, err);
}

void ts_cuda_copy(ts_cuda *c, void *dst, const void *src, size_t bytes) {
    if (ts_cuda_live(c) && bytes)
        TS_CU(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
}

void ts_cuda_memset(ts_cuda *c, void *dev, int byte, size_t bytes) {
    if (ts_cuda_live(c) && bytes) TS_CU(c, cudaMemsetAsync(dev, byte, bytes, c->stream));
}

static size_t dtype_size(ts_dtype t) {
    switch (t) {
    case TS_DT_F32: return 4;
    case TS_DT_F16:
    case TS_DT_BF16: return 2;
    default: return 0;
    }
}

ts_status ts_cuda_wmat_upload(ts_cuda *c, const ts_wmat *host, ts_wmat *out, ts_err *err) {
    size_t es = dtype_size(host->dtype);
    if (!es || host->rows <= 0 || host->cols <= 0) {
        set_err(err, TS_ERR_UNSUPPORTED, "cuda: weight upload: dtype or shape not supported");
        return TS_ERR_UNSUPPORTED;
    }
    size_t bytes = (size_t)host->rows * (size_t)host->cols * es;
    void *d = ts_cuda_alloc(c, bytes);
    if (!d) return ts_cuda_sync(c, err) == TS_OK ? TS_ERR_NOMEM : TS_ERR_IO;
    ts_status st = ts_cuda_upload(c, d, host->data, bytes, err);
    if (st != TS_OK) {
        cudaFree(d);
        return st;
    }
    *out = *host;
    out->data = d;
    return TS_OK;
}

void ts_cuda_wmat_free(ts_cuda *c, ts_wmat *w) {
    if (!w || !w->data) return;
    ts_cuda_free(c, (void *)w->data);
    w->data = NULL;
}

struct ts_cuda_event {
    cudaEvent_t e;
};

ts_cuda_event *ts_cuda_event_record(ts_cuda *c) {
    ts_cuda_event *ev = (ts_cuda_event *)calloc(1, sizeof *ev);
    if (!ev) return NULL;
    if (!TS_CU(c, cudaEventCreate(&ev->e)) || !TS_CU(c, cudaEventRecord(ev->e, c->stream))) {
        free(ev);
        return NULL;
    }
    return ev;
}

float ts_cuda_event_ms(ts_cuda *c, ts_cuda_event *a, ts_cuda_event *b) {
    float ms = -1.0f;
    if (!a || !b) return ms;
    if (TS_CU(c, cudaEventSynchronize(b->e))) TS_CU(c, cudaEventElapsedTime(&ms, a->e, b->e));
    return ms;
}

void ts_cuda_event_free(ts_cuda_event *e) {
    if (!e) return;
    cudaEventDestroy(e->e);
    free(e);
}
