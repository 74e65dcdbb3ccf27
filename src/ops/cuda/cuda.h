/* The CUDA backend: the op table of ops.h on an NVIDIA GPU (sm_90), plus
 * device-memory helpers. Plain C; includable without nvcc. Built only with
 * `make CUDA=1` (the objects come from the .cu files beside this header).
 *
 * Pointer convention for the ops returned by ts_cuda_ops(): every tensor
 * pointer an op receives (x, y, out, lse, q, k, v, g, bias, ids, pos,
 * inv_freq, slot, rows, the block tables in ts_attn_seq.blocks and
 * ts_attn_shared.blocks, and ts_wmat.data) is a DEVICE pointer. The
 * descriptor structs themselves (ts_wmat, ts_attn, ts_attn_shared and the
 * ts_attn_seq array) are read on the host during the call and may be freed
 * when it returns. All work is queued on the backend's stream, in order;
 * results are visible to the host after ts_cuda_sync / ts_cuda_download.
 *
 * Errors: ops return void, so a failing CUDA or cuBLAS call (or an argument
 * the backend cannot handle) records a sticky error in the backend; once set,
 * later ops do nothing. Read it with ts_cuda_last_error(); ts_cuda_sync()
 * returns it as a ts_status. */
#ifndef TS_OPS_CUDA_H
#define TS_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "tessera.h"
#include "ops/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ts_cuda ts_cuda;

/* Creates a backend on GPU `device` (0-based): selects it, creates a stream
 * and a cuBLAS handle. Returns NULL and fills err when there is no such
 * device, no driver, or any setup call fails. */
ts_cuda *ts_cuda_create(int device, ts_err *err);
/* Waits for queued work and releases everything the backend owns.
 * NULL is a no-op. */
void ts_cuda_destroy(ts_cuda *c);
/* The op table (name "cuda", ctx = c), valid while c lives. */
const ts_ops *ts_cuda_ops(ts_cuda *c);

/* The op table for code outside the forward pass that holds its rows in
 * host memory (chunk placement, src/engine/place.c): a copy of ts_cuda_ops
 * whose rope (x, pos, inv_freq) and kv_write (k, v, slot) take HOST arrays,
 * staged through the device and waited for (rope's x is written back); the
 * KV pools passed to kv_write are device memory as always. Every other entry
 * is ts_cuda_ops's, with device pointers. Valid while c lives. */
const ts_ops *ts_cuda_host_ops(ts_cuda *c);

/* The first error recorded ("file.cu:line: call: reason"), or NULL. */
const char *ts_cuda_last_error(const ts_cuda *c);
/* Waits for all queued work; returns TS_OK, or the sticky error (also put
 * into err) as TS_ERR_IO. */
ts_status ts_cuda_sync(ts_cuda *c, ts_err *err);

/* Device memory. alloc returns NULL (and records the error) on failure;
 * bytes == 0 returns NULL without error. free(NULL) is a no-op. */
void *ts_cuda_alloc(ts_cuda *c, size_t bytes);
void ts_cuda_free(ts_cuda *c, void *dev);
/* Synchronous copies host -> device and device -> host (the download waits
 * for queued work first). Return TS_OK or the sticky error. */
ts_status ts_cuda_upload(ts_cuda *c, void *dev, const void *host, size_t bytes, ts_err *err);
ts_status ts_cuda_download(ts_cuda *c, void *host, const void *dev, size_t bytes,
                           ts_err *err);
/* Queued device -> device copy and byte fill on the backend's stream. */
void ts_cuda_copy(ts_cuda *c, void *dst, const void *src, size_t bytes);
void ts_cuda_memset(ts_cuda *c, void *dev, int byte, size_t bytes);

/* Copies a host weight view (F32, F16 or BF16) to newly allocated device
 * memory: *out gets the same shape and dtype with data on the device. Free
 * with ts_cuda_wmat_free. */
ts_status ts_cuda_wmat_upload(ts_cuda *c, const ts_wmat *host, ts_wmat *out, ts_err *err);
void ts_cuda_wmat_free(ts_cuda *c, ts_wmat *w);

/* Device versions of ts_attn_merge and ts_attn_merge_rows (ops.h): same
 * semantics, all array pointers on the device, queued on the stream. */
void ts_cuda_attn_merge(ts_cuda *c, float *o_a, float *lse_a, const float *o_b,
                        const float *lse_b, int n, int n_heads, int head_dim);
void ts_cuda_attn_merge_rows(ts_cuda *c, float *o_a, float *lse_a, const float *o_b,
                             const float *lse_b, const int32_t *rows, int n_rows,
                             int n_heads, int head_dim);

/* Timing helpers for tests and benchmarks: an event recorded on the stream
 * and the milliseconds between two of them (waits for the second). */
typedef struct ts_cuda_event ts_cuda_event;
ts_cuda_event *ts_cuda_event_record(ts_cuda *c);
float ts_cuda_event_ms(ts_cuda *c, ts_cuda_event *a, ts_cuda_event *b);
void ts_cuda_event_free(ts_cuda_event *e);

/* Device name and multiprocessor count, for reports. */
const char *ts_cuda_device_name(const ts_cuda *c);

#ifdef __cplusplus
}
#endif

#endif
