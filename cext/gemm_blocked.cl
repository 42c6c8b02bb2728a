/* Register-blocked float32 GEMM for CPU OpenCL devices (e.g. PoCL).
 *
 * Legend: C (Bt, M, N) = A (Bt, M, K) @ B (Bt, K, N), all row-major and
 * contiguous. RM x NB micro-tile per work-item, NB = NV vectors of VW floats
 * (compile-time: -DRM=6 -DVW=8 -DNV=2), Q = ceil(M / RM) row blocks,
 * P = ceil(N / NB) column panels.
 *
 * A CPU runs one work-group per thread and loops over its work-items, so
 * local memory buys nothing (it is ordinary memory). What matters is what
 * a GPU hides for free: registers and the order of memory accesses. So:
 *   pack_b  B -> Bp (Bt, P, K, NB): each NB-column panel becomes one
 *           contiguous stream, zero-padded past N
 *   gemm_blocked  one work-item = one RM x NB tile of C in RM * NV vector
 *           accumulators; each step k loads NV vectors of Bp, broadcasts
 *           one float from each of its RM rows of A (read in place, RM
 *           sequential streams) and issues RM * NV vector multiply-adds.
 *           With RM = 6, VW = 8, NV = 2 on AVX2: 12 of the 16 registers.
 * Edge tiles are computed in full, on Bp's zero padding and on row M - 1
 * repeated past M, and only their in-range part is stored. */
#pragma OPENCL FP_CONTRACT ON        /* a * b + c: one fma where the device has it */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define VEC CAT(float, VW)
#define VLOAD CAT(vload, VW)
#define VSTORE CAT(vstore, VW)
#define NB (NV * VW)

/* Bp[bt, p, k, :] = B[bt, k, p*NB : +NB], 0 past N. One work-item per (p, k, bt). */
__kernel void pack_b(const int N, const int K, const int P,
                     __global const float* B, __global float* Bp)
{
    const int p = get_global_id(0), k = get_global_id(1), bt = get_global_id(2);
    if (p >= P || k >= K) return;
    const __global float* b = B + ((size_t)bt * K + k) * N + p * NB;   /* row k */
    __global float* dst = Bp + (((size_t)bt * P + p) * K + k) * NB;    /* (NB,) */
    const int cols = min(NB, N - p * NB);
    for (int j = 0; j < NB; j++) dst[j] = j < cols ? b[j] : 0.0f;
}

/* Store the in-range rows x cols of the RM x NB tile at c (an edge tile). */
static void store_edge(const VEC acc[RM][NV], __global float* c, const int N,
                       const int rows, const int cols)
{
    #pragma unroll                            /* constant indices keep acc in registers */
    for (int r = 0; r < RM; r++)
        #pragma unroll
        for (int v = 0; v < NV; v++) {
            if (r >= rows) return;
            float t[VW];
            VSTORE(acc[r][v], 0, t);
            for (int j = 0; j < VW && v * VW + j < cols; j++)
                c[(size_t)r * N + v * VW + j] = t[j];
        }
}

/* C[bt, q*RM : +RM, p*NB : +NB] for work-item (p, q, bt). */
__kernel void gemm_blocked(const int M, const int N, const int K,
                           __global const float* A, __global const float* Bp,
                           __global float* C)
{
    const int p = get_global_id(0), q = get_global_id(1), bt = get_global_id(2);
    const int P = (N + NB - 1) / NB, Q = (M + RM - 1) / RM;
    if (p >= P || q >= Q) return;             /* grid rounded up to the group size */
    const int m0 = q * RM, n0 = p * NB;
    const __global float* a[RM];              /* rows of A; past M, row M - 1 again */
    #pragma unroll
    for (int r = 0; r < RM; r++) a[r] = A + ((size_t)bt * M + min(m0 + r, M - 1)) * K;
    const __global float* b = Bp + ((size_t)bt * P + p) * K * NB;   /* (K, NB) */
    VEC acc[RM][NV];
    #pragma unroll
    for (int r = 0; r < RM; r++)
        #pragma unroll
        for (int v = 0; v < NV; v++) acc[r][v] = (VEC)(0.0f);
    for (int k = 0; k < K; k++) {
        VEC bk[NV];                                                 /* (NB,) */
        #pragma unroll
        for (int v = 0; v < NV; v++) bk[v] = VLOAD(k * NV + v, b);
        #pragma unroll
        for (int r = 0; r < RM; r++) {
            const VEC ar = (VEC)(a[r][k]);
            #pragma unroll
            for (int v = 0; v < NV; v++) acc[r][v] += ar * bk[v];
        }
    }
    __global float* c = C + ((size_t)bt * M + m0) * N + n0;
    if (m0 + RM <= M && n0 + NB <= N) {
        #pragma unroll
        for (int r = 0; r < RM; r++)
            #pragma unroll
            for (int v = 0; v < NV; v++) VSTORE(acc[r][v], 0, c + (size_t)r * N + v * VW);
    } else {
        store_edge(acc, c, N, min(RM, M - m0), min(NB, N - n0));
    }
}
