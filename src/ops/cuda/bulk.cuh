/* Bulk copies (cp.async.bulk, sm_90) from global into shared memory whose
 * completion an mbarrier counts in bytes. Usage: one thread initialises the
 * barrier (count 1), __syncthreads(), then one thread calls mbar_expect with
 * the total bytes and issues the copies; readers mbar_wait(mb, parity) and
 * the parity flips each time the barrier completes. Sources and
 * destinations 16-byte aligned, sizes a multiple of 16. */
#ifndef TS_OPS_CUDA_BULK_CUH
#define TS_OPS_CUDA_BULK_CUH

#include <stdint.h>

__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(uint64_t *mb) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(mb)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_expect(uint64_t *mb, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(mb)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes,
                                          uint64_t *mb) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(smem_u32(dst)),
        "l"(src), "r"(bytes), "r"(smem_u32(mb))
        : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *mb, unsigned parity) {
    unsigned ok = 0;
    while (!ok)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
                     "selp.u32 %0, 1, 0, p; }"
                     : "=r"(ok)
                     : "r"(smem_u32(mb)), "r"(parity)
                     : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *mb) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(mb)) : "memory");
}

#endif
