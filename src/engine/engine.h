/* Internal additions to the public engine API (tessera.h) for in-tree
 * callers (CLI, server, tests). */
#ifndef TS_ENGINE_ENGINE_H
#define TS_ENGINE_ENGINE_H

#include "engine/runtime.h"
#include "tessera.h"

/* The runtime the engine runs on (tokenizer, chat template, model). Owned by
 * the engine; only the stepping thread may use its KV or forward state. */
ts_runtime *ts_engine_runtime(ts_engine *e);

#endif
