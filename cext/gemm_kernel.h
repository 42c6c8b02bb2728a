/* The GEMM micro-kernel, written once for any vector width and both A
 * layouts. Included by avx2.c and avx512.c (twice each) after they define:
 *   VF, VW      vector type and its number of floats
 *   VLOAD(p), VSTORE(p, v), VBCAST(p), VFMA(a, b, c) = a*b + c, VADD, VZERO()
 *   MR          rows of the micro-tile; NR = 2 * VW columns
 *   UKERNEL     the function's name
 *   A_PACKED    defined: A is a packed sliver, A[i, p] at a[p*MR + i] (one
 *               sequential stream); undefined: A is MR rows in place,
 *               A[i, p] at a[i*rsa + p]
 * The MR x NR tile of C lives in 2*MR vector registers (AVX2: 6 x 16 in 12
 * of 16 ymm; AVX-512: 12 x 32 in 24 of 32 zmm). Each step p broadcasts one
 * float of each A row and multiplies it by one packed row of B (2 vectors):
 *   acc[i][h] += A[i, p] * B[p, h*VW : (h+1)*VW]
 * b: packed sliver (kc, NR); c: the tile, row stride rsc (see internal.h) */
#define NR (2 * VW)
#ifdef A_PACKED
#define A_AT(i, p) (a + (p) * MR + (i))
#else
#define A_AT(i, p) (ar[i] + (p))
#endif

static void UKERNEL(int64_t kc, const float *a, int64_t rsa, const float *b,
                    float *c, int64_t rsc, int acc)
{
    VF c0[MR], c1[MR];
    const float *ar[MR];                     /* the rows, when A is in place */
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        c0[i] = VZERO();
        c1[i] = VZERO();
        ar[i] = a + i * rsa;
        __builtin_prefetch(c + i * rsc);     /* C rows: fetched during the loop */
        __builtin_prefetch(c + i * rsc + NR - 1);
    }
    (void)ar;
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        VF b0 = VLOAD(b + p * NR), b1 = VLOAD(b + p * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            VF ai = VBCAST(A_AT(i, p));
            c0[i] = VFMA(ai, b0, c0[i]);
            c1[i] = VFMA(ai, b1, c1[i]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * rsc;
        if (acc) {
            c0[i] = VADD(c0[i], VLOAD(ci));
            c1[i] = VADD(c1[i], VLOAD(ci + VW));
        }
        VSTORE(ci, c0[i]);
        VSTORE(ci + VW, c1[i]);
    }
}

#undef NR
#undef A_AT
#undef UKERNEL
