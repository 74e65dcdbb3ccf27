/* Internals shared by the kv/ files: LRU list and prefix index helpers. */
#ifndef TS_KV_KV_INT_H
#define TS_KV_KV_INT_H

#include "kv/kv.h"

/* Appends a cached block at the newest end of the LRU list. */
void ts_kv_lru_push(ts_kv *kv, int32_t b);
/* Unlinks a block from the LRU list. */
void ts_kv_lru_unlink(ts_kv *kv, int32_t b);
/* Removes a published block from the index and clears its published flag. */
void ts_kv_index_remove(ts_kv *kv, int32_t b);
/* Index slot a hash probes first. */
uint32_t ts_kv_index_home(const ts_kv *kv, const uint8_t *hash);
/* Block published under hash, or -1. */
int32_t ts_kv_index_find(const ts_kv *kv, const uint8_t *hash);
/* Slot holding block b's entry, or -1 if the index lacks it. */
int64_t ts_kv_index_find_block(const ts_kv *kv, int32_t b);

#endif
