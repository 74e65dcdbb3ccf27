/* Internals of the CUDA backend shared by its .cu files: the backend object,
 * status checks that record a sticky error, scratch memory and the kernel
 * entry points. Not part of the op-table contract. */
#ifndef TS_OPS_CUDA_INTERNAL_CUH
#define TS_OPS_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/cuda/cuda.h"

#define TS_CUDA_RING 8

/* A device buffer kept between calls, grown on demand. */
typedef struct ts_cuda_scratch {
    void *p;
    size_t cap;
    /* ts_cuda_stage skips the copy when the bytes equal the last staged ones
     * (set for buffers no kernel writes: attention's work items are the same
     * for every layer of a step); last/last_len: host copy of those bytes */
    bool cache;
    void *last;
    size_t last_len, last_cap;
} ts_cuda_scratch;

struct ts_cuda {
    ts_ops ops;
    int device;
    int n_sm;
    char name[256];
    cudaStream_t stream;
    cublasHandle_t blas;
    char err[512];          /* sticky: first failure, "" while none */
    ts_cuda_scratch act;    /* matmul: activations converted to bf16 */
    ts_cuda_scratch part;   /* matmul split products / attention partials */
    ts_cuda_scratch meta;   /* attention work items */
    ts_cuda_scratch mlp;    /* matmul_swiglu: the up product of a prefill */
    ts_cuda_scratch xn, acc;/* matmul_ex of a prefill: normed input, product to add */
    /* pinned staging for work items: a ring, so that a call never waits for
     * the previous one; slot i is reused once ring_ev[i] (its copy) is done */
    void *ring[TS_CUDA_RING];
    size_t ring_cap[TS_CUDA_RING];
    cudaEvent_t ring_ev[TS_CUDA_RING];
    int ring_next;
    int att_bps[4];         /* resident attention blocks per SM, by head_dim class */
    ts_ops host_ops;        /* ts_cuda_host_ops */
    ts_cuda_scratch hs[3];  /* device copies of its host arguments */
    bool pdl;               /* launch with programmatic dependence (TS_CUDA_PDL=0: off) */
    int wmv_rw1;            /* weight rows per warp of 1-2 token products (TS_WMV_RW: 1 or 2) */
    bool cascade_mma;       /* cascade's shared level on the tensor cores (TS_CASCADE_MMA=0: off) */
    int shm16_parts;        /* its 16-bit KV kernel: q and P in 1 or 2 16-bit parts
                               (TS_CASCADE_PARTS) */
    int dec_layers;         /* decode_layers: 1 on (default), 0 off, 2 on without its KV
                               prefetch (TS_CUDA_LAYERS) */
    int dl_smem_max;        /* its dynamic shared memory limit */
    int graph_rows;         /* decode steps recorded as graphs up to this many rows
                               (TS_CUDA_GRAPH_ROWS, 8-64; default 64): above 8 their
                               products are matmul_tc.cu's kernels (cuBLAS calls
                               for f32 or f16 weights), recorded too */
    void *blas_ws;          /* cuBLAS's workspace when graph_rows > 8, so that a
                               recorded product allocates nothing */
    bool capturing;         /* between capture_begin and capture_end */
    bool capture_short;     /* a scratch buffer had to grow while capturing: the
                               capture is discarded and the ops run uncaptured */
    bool tmv_on;            /* 9-64 row products on matmul_tc.cu (TS_CUDA_TMV=0: cuBLAS) */
    unsigned *tmv_cnt;      /* its split counters, zero between launches */
    uint64_t epoch;         /* bumped whenever a scratch buffer moves */
};

/* The nearest bf16 to *r, leaving in *r what it misses (exact): three calls
 * split an f32 into bf16 parts hi, mid, lo that hold all its 24 bits. */
__device__ __forceinline__ __nv_bfloat16 ts_bf16_take(float *r) {
    const __nv_bfloat16 b = __float2bfloat16_rn(*r);
    *r -= __bfloat162float(b);
    return b;
}

/* Programmatic dependent launch (sm_90): a kernel launched by ts_cuda_launch
 * may start while the kernel before it in the stream is still running. It
 * must call ts_pdl_wait() before it reads anything an earlier kernel wrote
 * or writes anything at all; before that it may only read constant data
 * (weights). ts_pdl_trigger() lets the next such kernel start. */
__device__ __forceinline__ void ts_pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void ts_pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;"); }
/* cp.async of 16 bytes from global src to the shared address dst, through
 * L2 only; !valid: the 16 bytes are zero-filled and src is not read. */
__device__ __forceinline__ void ts_cp16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0));
}
/* Closes the group of this thread's cp.async issued since the last one. */
__device__ __forceinline__ void ts_cp_commit() { asm volatile("cp.async.commit_group;"); }
/* Waits until at most N of this thread's groups are still in flight. */
template <int N> __device__ __forceinline__ void ts_cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/* Records "file:line: what: reason" as the sticky error unless one is set. */
void ts_cuda_record(ts_cuda *c, const char *file, int line, const char *what,
                    const char *reason);

/* Checks a runtime call; on failure records it and evaluates to false. */
#define TS_CU(c, call) ts_cuda_ok_rt((c), (call), __FILE__, __LINE__, #call)
#define TS_BLAS(c, call) ts_cuda_ok_blas((c), (call), __FILE__, __LINE__, #call)
/* After a kernel launch: the launch's own error. */
#define TS_LAUNCHED(c, what) ts_cuda_ok_rt((c), cudaGetLastError(), __FILE__, __LINE__, what)
/* Records an unsupported argument. */
#define TS_BAD(c, what) ts_cuda_record((c), __FILE__, __LINE__, what, "unsupported argument")

static inline bool ts_cuda_ok_rt(ts_cuda *c, cudaError_t e, const char *f, int l,
                                 const char *what) {
    if (e == cudaSuccess) return true;
    ts_cuda_record(c, f, l, what, cudaGetErrorString(e));
    return false;
}

const char *ts_cublas_str(cublasStatus_t s);

static inline bool ts_cuda_ok_blas(ts_cuda *c, cublasStatus_t s, const char *f, int l,
                                   const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    ts_cuda_record(c, f, l, what, ts_cublas_str(s));
    return false;
}

/* True while no error is recorded: ops return early otherwise. */
static inline bool ts_cuda_live(const ts_cuda *c) { return c->err[0] == 0; }

/* At least `bytes` of device scratch (contents not kept on growth); NULL
 * with a recorded error on failure. Growth synchronises the stream. */
void *ts_cuda_scratch_get(ts_cuda *c, ts_cuda_scratch *s, size_t bytes);
/* Copies `bytes` of host data into device scratch s via pinned staging,
 * queued on the stream (no host wait unless the buffer grows or the staging
 * ring wraps onto a copy still in flight); returns the device pointer or
 * NULL. The device data stays valid for work queued before the next call. */
void *ts_cuda_stage(ts_cuda *c, ts_cuda_scratch *s, const void *host, size_t bytes);

/* Launches kernel k on the backend's stream, allowed to overlap the
 * previous kernel when c->pdl (k must follow the ts_pdl_wait rule);
 * false with a recorded error on failure. */
template <typename... P, typename... A>
static inline bool ts_cuda_launch(ts_cuda *c, const char *what, void (*k)(P...), dim3 grid,
                                  dim3 block, size_t smem, A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = c->pdl ? 1 : 0;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return ts_cuda_ok_rt(c, cudaLaunchKernelEx(&cfg, k, ((P)args)...), __FILE__, __LINE__, what);
}

static inline unsigned ts_cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

/* ---- op entry points (ctx is the ts_cuda) ---- */
void ts_cuda_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                    const float *bias, ts_prec prec);
void ts_cuda_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                          const float *const *bias, int n_w, ts_prec prec);
void ts_cuda_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                           const ts_wmat *w_up, ts_prec prec);
void ts_cuda_matmul_ex(void *ctx, const ts_matmul_ex *e);
void ts_cuda_sample(void *ctx, int32_t *ids, const float *logits, int n, int vocab,
                    const ts_sample_row *rows);
void ts_cuda_qk_rope_kv(void *ctx, float *q, float *k, const float *v, const float *q_norm,
                        const float *k_norm, float eps, const int32_t *pos, const float *inv_freq,
                        void *k_pool, void *v_pool, ts_dtype kv_dtype, const int32_t *slot, int n,
                        int n_heads, int n_kv_heads, int head_dim, int block_size);
void ts_cuda_attention_decode(void *ctx, float *out, float *lse, float *part, const float *q,
                              const void *k, const void *v, ts_dtype kv_dtype,
                              const int32_t *tables, const int32_t *info,
                              int n_seq, int n_heads, int n_kv_heads, int head_dim,
                              int block_size, float scale);
void ts_cuda_embed(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n);
void ts_cuda_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                     float eps);
void ts_cuda_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                         int d, float eps);
void ts_cuda_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                  const float *inv_freq);
void ts_cuda_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d);
void ts_cuda_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                      const float *v,
                      const int32_t *slot, int n, int n_kv_heads, int head_dim,
                      int block_size);
void ts_cuda_attention(void *ctx, const ts_attn *a);
bool ts_cuda_decode_layers(void *ctx, const ts_decode_layers *d);
void ts_cuda_attention_shared(void *ctx, const ts_attn_shared *a);

/* Prepares kernel attributes (large dynamic shared memory); at create. */
bool ts_cuda_attn_init(ts_cuda *c);
/* Cascade's shared level on the tensor cores (attn_shared_mma.cu): runs it
 * and returns true when the shape suits (head_dim 64 or 128), else false
 * without doing anything. _init lets its kernel use its shared memory. */
bool ts_cuda_attn_shared_mma(ts_cuda *c, const ts_attn_shared *at);
bool ts_cuda_attention_cascade(void *ctx, const ts_attn_shared *at);
bool ts_cuda_shm_init(ts_cuda *c);
/* decode_layers: its shared-memory limit and TS_CUDA_LAYERS (decode_layers.cu);
 * before the op table is filled (it decides whether the op is set). */
bool ts_cuda_decode_layers_init(ts_cuda *c);
/* Lets sample_kernel use its dynamic shared memory (once per device). */
bool ts_cuda_sample_init(ts_cuda *c);
/* Products of 9-64 rows of x with bf16 weights on the tensor cores
 * (matmul_tc.cu): y[i] (+)= x . w[i]^T (+ bias[i]) for n_w weights sharing
 * cols (swi: n_w = 2, y[0] = silu(x . w[0]^T) * (x . w[1]^T)); round_x: x
 * rounded to bf16 first (TS_PREC_BF16), else f32-exact products. Returns
 * false, having done nothing, when the shapes are not for it (the caller
 * uses cuBLAS); true once queued, once a failure is recorded, or when a
 * capture ran short of scratch (ts_cuda_scratch_get). _init reads
 * TS_CUDA_TMV, allocates its counters; at create. */
bool ts_cuda_tmv(ts_cuda *c, float *const *y, const float *x, int n, const ts_wmat *w,
                 const float *const *bias, int n_w, bool round_x, bool swi, bool acc_out);
bool ts_cuda_tmv_init(ts_cuda *c);
/* x (total floats) -> parts bf16 parts (1 or 3: hi, mid, lo) at p,
 * p + total, p + 2 total; false when the launch failed (recorded). */
bool ts_cuda_split_bf16(ts_cuda *c, __nv_bfloat16 *p, const float *x, size_t total, int parts);

#endif
