/* Safetensors checkpoints: one file or shards listed by
 * model.safetensors.index.json. Tensors are views into read-only mappings;
 * nothing is copied. Every header field is validated (JSON, dtype, shape,
 * offsets within the file, byte count = product of shape x dtype size,
 * no overlapping tensors) before a tensor is exposed. */
#ifndef TS_IO_SAFETENSORS_H
#define TS_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "tessera.h"

typedef enum ts_dtype {
    TS_DT_F32 = 0,
    TS_DT_F16,
    TS_DT_BF16,
    TS_DT_I32, /* accepted in files, not usable as weights */
    TS_DT_I64,
} ts_dtype;

/* Bytes per element (0 for an invalid value). */
size_t ts_dtype_size(ts_dtype dt);
const char *ts_dtype_name(ts_dtype dt);

#define TS_MAX_DIMS 4

typedef struct ts_tensor {
    const char *name;
    ts_dtype dtype;
    int n_dims;
    int64_t shape[TS_MAX_DIMS]; /* row-major; shape[n_dims-1] is contiguous */
    const void *data;           /* inside the mapping; aligned as the file is */
    size_t nbytes;
    const char *file;           /* the shard it came from, for messages */
} ts_tensor;

typedef struct ts_st ts_st;

/* progress(cb_ctx, bytes_done, bytes_total) is called while headers are
 * checked (may be NULL): once with done = 0, then after each file with the
 * bytes of the files checked so far; total is the sum of the file sizes.
 * Tensor data is mapped, never read. ts_progress_cb (base/progress.h) fits. */
typedef void (*ts_progress_fn)(void *cb_ctx, uint64_t done, uint64_t total);

/* Opens the shards named by dir/model.safetensors.index.json if it exists,
 * else dir/model.safetensors; neither is TS_ERR_NOTFOUND. With an index,
 * each distinct shard is opened once; shard names must be plain file names
 * (no '/', backslash or '..'); every tensor of the weight_map must be in the shard
 * it names, and a tensor in two shards is an error. On success *out is
 * owned by the caller (ts_st_close); on failure *out is NULL. */
ts_status ts_st_open_dir(const char *dir, ts_st **out, ts_progress_fn progress,
                         void *cb_ctx, ts_err *err);
/* Opens one .safetensors file (no index). Same ownership as above. */
ts_status ts_st_open_file(const char *path, ts_st **out, ts_err *err);
/* Returns the tensor named name or NULL (binary search, O(log n)). The
 * tensor lives as long as st. */
const ts_tensor *ts_st_find(const ts_st *st, const char *name);
size_t ts_st_count(const ts_st *st);
/* The i-th tensor in name order, or NULL when i >= count. */
const ts_tensor *ts_st_at(const ts_st *st, size_t i);
/* Total bytes of tensor data mapped. */
uint64_t ts_st_bytes(const ts_st *st);
/* Unmaps everything; tensors from st become invalid. NULL is a no-op. */
void ts_st_close(ts_st *st);

/* Parses a safetensors image already in memory (the fuzz target's entry).
 * name is used in messages and as ts_tensor.file. The returned object
 * references data, which must outlive it and is not freed by it. */
ts_status ts_st_parse(const unsigned char *data, size_t size, const char *name,
                      ts_st **out, ts_err *err);

#endif
