/* Internals shared by safetensors.c (header parser, lookup) and
 * safetensors_dir.c (files, shards, index). Not a public header. */
#ifndef TS_IO_SAFETENSORS_INT_H
#define TS_IO_SAFETENSORS_INT_H

#include <stdbool.h>

#include "io/mapfile.h"
#include "io/safetensors.h"

typedef struct st_shard {
    char *path;       /* owned; what messages and ts_tensor.file name */
    const char *base; /* the file name part of path (inside path) */
    ts_map map;       /* zeroed when the image belongs to the caller */
} st_shard;

struct ts_st {
    ts_tensor *t; /* sorted by name once loading is done; names owned */
    size_t n, cap;
    st_shard *shards;
    size_t n_shards, cap_shards;
    uint64_t bytes;
};

ts_st *st_new(void);
/* Appends a shard named path (copied); base_off is where its file name
 * starts within path. NULL when out of memory. */
st_shard *st_add_shard(ts_st *st, const char *path, size_t base_off);
/* Validates one safetensors image and appends its tensors; file (which must
 * outlive st) names it in messages and in ts_tensor.file. */
ts_status st_parse_image(ts_st *st, const unsigned char *data, size_t size, const char *file,
                         ts_err *err);
/* Sorts tensors by name for lookup, rejects duplicates, sums the bytes. */
ts_status st_finish(ts_st *st, ts_err *err);

#endif
