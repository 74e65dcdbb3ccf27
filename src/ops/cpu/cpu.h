/* The CPU backend: a scalar reference for every op, and SIMD paths (AVX2,
 * AVX-512 with BF16 dot products) for the hot ones, chosen at run time. */
#ifndef TS_OPS_CPU_H
#define TS_OPS_CPU_H

#include "base/pool.h"
#include "ops/ops.h"

typedef enum ts_cpu_isa {
    TS_ISA_AUTO = 0,   /* the best this CPU supports */
    TS_ISA_SCALAR,     /* the plain reference implementation */
    TS_ISA_AVX2,
    TS_ISA_AVX512,
} ts_cpu_isa;

typedef struct ts_cpu ts_cpu;

/* Creates a CPU backend running on pool (not owned; may be NULL for one
 * thread). Asking for an ISA the CPU lacks falls back to the best available.
 * Returns NULL on allocation failure. */
ts_cpu *ts_cpu_create(ts_pool *pool, ts_cpu_isa isa);
void ts_cpu_destroy(ts_cpu *cpu);
/* The op table, valid while cpu lives. */
const ts_ops *ts_cpu_ops(ts_cpu *cpu);
/* The ISA actually in use. */
ts_cpu_isa ts_cpu_isa_used(const ts_cpu *cpu);
/* Best ISA this CPU supports. */
ts_cpu_isa ts_cpu_isa_detect(void);

#endif
