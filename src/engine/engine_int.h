/* Internals of the engine shared by engine.c (API, queues, events) and
 * sched.c (admission, batching, prefix cache, preemption). */
#ifndef TS_ENGINE_INT_H
#define TS_ENGINE_INT_H

#include <pthread.h>

#include "engine/engine_chunks.h"
#include "engine/runtime.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "tessera.h"

typedef struct ts_req {
    int64_t id;
    int32_t *tokens;          /* [n_tokens] prompt then generated */
    int n_tokens, cap_tokens;
    int n_prompt;             /* prompt length at submission */
    int n_gen;
    int32_t *blocks;          /* [n_blocks] KV block table */
    int n_blocks, cap_blocks;
    int n_computed;           /* KV slots filled: tokens[0, n_computed) */
    int n_hashed;             /* leading full blocks hashed (and published) */
    uint8_t (*hashes)[32];    /* [cap_blocks] chained block hashes */
    int n_cached;             /* prompt tokens served from the prefix cache */
    int max_tokens;
    bool ignore_eos;
    uint8_t *salt;            /* owned copy; NULL = none */
    size_t salt_len;
    bool has_salt;
    uint8_t first_hash[32];   /* hash of the first full block (grouping), if any */
    bool has_first_hash;
    ts_sampler *smp;
    ts_stop *stop;
    ts_tok_stream ds;
    ts_event_fn cb;
    void *cb_ctx;
    bool cancelled;
    double t_submit, ttft_ms;
    int step_n;               /* tokens scheduled this step */
    ts_req_seg *segs;         /* [n_segs] placed chunks, in slot order (engine_chunks.h) */
    int n_segs, cap_segs;
    ts_span pieces[16];       /* this step's computed spans when chunks are placed */
    int n_pieces;
} ts_req;

struct ts_engine {
    ts_runtime *rt;
    ts_engine_opts o;
    bool dev_sample;          /* sample on the device when it can (TS_DEVICE_SAMPLE=0: never) */
    /* owned by the stepping thread */
    ts_req **waiting;         /* FCFS; [0] is next */
    int n_waiting, cap_waiting;
    ts_req **running;         /* admission order */
    int n_running, cap_running;
    ts_fwd_seq *batch;        /* per-step scratch, [cap_batch] */
    ts_req **batch_req;       /* [cap_batch] the request of each batch entry */
    int cap_batch;
    float *row;               /* [vocab] logits copy for sampling */
    ts_buf piece;
    ts_engine_stats st;
    ts_echunks *chunks;
    /* shared with submitting threads, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ts_req **inbox;
    int n_inbox, cap_inbox;
    int64_t *cancels;
    int n_cancels, cap_cancels;
    int64_t next_id;
    int n_queued_total;       /* inbox + waiting + running, for max_waiting */
    ts_engine_stats snap;     /* stats as of the last step, for other threads */
};

/* One scheduling step (sched.c). */
ts_status ts_sched_step(ts_engine *e, ts_err *err);
/* Finishes r: DONE event, KV released, memory freed (engine.c). */
void ts_engine_finish(ts_engine *e, ts_req *r, const char *finish, ts_status st, const char *msg);
/* Delivers generated token id of r as text (engine.c); returns true when a
 * stop string matched. */
bool ts_engine_emit_token(ts_engine *e, ts_req *r, int32_t id);
/* Grows an array of pointers/ints; false on allocation failure. */
bool ts_grow(void **p, int *cap, int need, size_t elem);

#endif
