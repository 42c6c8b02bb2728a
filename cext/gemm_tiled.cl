/* Local-memory tiled float32 GEMM for GPU OpenCL devices.
 *
 * Legend: C (Bt, M, N) = A (Bt, M, K) @ B (Bt, K, N), all row-major and
 * contiguous. TS x TS tile of C per work-group, WPT outputs per work-item
 * (compile-time: -DTS=32 -DWPT=8), RTS = TS / WPT rows of work-items.
 *
 * Work-group (TS, RTS, 1) computes C[bt, gm : gm+TS, gn : gn+TS]. Each step
 * copies one TS x TS tile of A and of B into local memory (every work-item
 * loads WPT elements of each, reads along a row so neighbours read
 * neighbouring addresses), waits, then each work-item accumulates column
 * gn + tx of WPT rows ty, ty + RTS, ... in registers: one local read of B
 * serves WPT multiply-adds. Tiles that overhang M, N or K are zero-filled
 * on load and masked on store, so any size works. */
#pragma OPENCL FP_CONTRACT ON        /* a * b + c: one fma where the device has it */
#define RTS (TS / WPT)

__kernel __attribute__((reqd_work_group_size(TS, RTS, 1)))
void gemm_tiled(const int z0, const int M, const int N, const int K,
                __global const float* A, __global const float* B,
                __global float* C)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int gn = get_group_id(0) * TS, gm = get_group_id(1) * TS;
    const int bt = get_global_id(2) + z0;      /* launched in slabs of batches */
    A += (size_t)bt * M * K;                    /* this batch's (M, K) */
    B += (size_t)bt * K * N;                    /* (K, N) */
    C += (size_t)bt * M * N;                    /* (M, N) */
    __local float As[TS][TS];                   /* As[ty + ..][k]: one address per row of work-items */
    __local float Bs[TS][TS];
    float acc[WPT];
    for (int w = 0; w < WPT; w++) acc[w] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TS) {
        for (int w = 0; w < WPT; w++) {
            const int r = ty + w * RTS;         /* tile row this work-item loads */
            const int am = gm + r, ak = k0 + tx, bk = k0 + r, bn = gn + tx;
            As[r][tx] = (am < M && ak < K) ? A[(size_t)am * K + ak] : 0.0f;
            Bs[r][tx] = (bk < K && bn < N) ? B[(size_t)bk * N + bn] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < TS; k++) {
            const float b = Bs[k][tx];
            for (int w = 0; w < WPT; w++) acc[w] += As[ty + w * RTS][k] * b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const int n = gn + tx;
    for (int w = 0; w < WPT; w++) {
        const int m = gm + ty + w * RTS;
        if (m < M && n < N) C[(size_t)m * N + n] = acc[w];
    }
}
