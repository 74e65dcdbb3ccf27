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

/* Bytes per element. */
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
 * checked (may be NULL). */
typedef void (*ts_progress_fn)(void *cb_ctx, uint64_t done, uint64_t total);

/* Opens dir/model.safetensors, or the shards named by
 * dir/model.safetensors.index.json. */
ts_status ts_st_open_dir(const char *dir, ts_st **out, ts_progress_fn progress,
                         void *cb_ctx, ts_err *err);
/* Opens one .safetensors file. */
ts_status ts_st_open_file(const char *path, ts_st **out, ts_err *err);
/* Returns the tensor or NULL. */
const ts_tensor *ts_st_find(const ts_st *st, const char *name);
size_t ts_st_count(const ts_st *st);
const ts_tensor *ts_st_at(const ts_st *st, size_t i);
/* Total bytes of tensor data mapped. */
uint64_t ts_st_bytes(const ts_st *st);
void ts_st_close(ts_st *st);

/* Parses a safetensors image already in memory (the fuzz target's entry).
 * name is used in messages. The returned object references data. */
ts_status ts_st_parse(const unsigned char *data, size_t size, const char *name,
                      ts_st **out, ts_err *err);

#endif
