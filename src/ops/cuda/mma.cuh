/* The tensor-core steps the bf16 products share (sm_80+ warp-level mma):
 * ldmatrix of a 16 x 16 A tile and one m16n8k16 bf16 mma with f32 sums.
 * Fragment layouts are PTX's: lane l = 4 g + t holds A rows g, g + 8 and
 * columns 2t, 2t + 1 (+ 8); B columns g, rows 2t, 2t + 1 (b0) and + 8 (b1);
 * D rows g, g + 8 and columns 2t, 2t + 1 (c[0-1], c[2-3]). */
#ifndef TS_OPS_CUDA_MMA_CUH
#define TS_OPS_CUDA_MMA_CUH

/* a[4] = the four 8 x 8 matrices whose rows lanes 0-7, 8-15, 16-23 and
 * 24-31 address (addr: this lane's row, a shared-memory address, 16-byte
 * aligned) */
__device__ __forceinline__ void ts_ldmatrix_x4(unsigned *a, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(addr));
}

/* c[4] += A (a[4], 16 x 16 bf16) . B (b0, b1: 16 x 8 bf16), f32 sums */
__device__ __forceinline__ void ts_mma_bf16(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif
