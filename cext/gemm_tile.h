/* The start and the end of a GEMM micro-tile (gemm_avx2.c, gemm_avx512.c),
 * written once in the vector vocabulary (vec_avx2.h / vec_avx512.h, included
 * first): MR rows of two vectors each, c0[i] and c1[i] (NR = 2 VW floats),
 * kept in registers by the micro-kernels that inline these. The including
 * file defines MR and NR. flags as in gemm_blocking.h. */
#ifndef MINIT2T_GEMM_TILE_H
#define MINIT2T_GEMM_TILE_H

/* Every row at the bias (or 0), and C's rows asked for unless they are to
 * be streamed (GEMM_STREAM: written without a read). */
static inline __attribute__((always_inline)) void
tile_start(const float *bias, float *c, int64_t rsc, int flags, VF *c0, VF *c1)
{
    VF z0 = bias ? VLOAD(bias) : VSET1(0.0f);
    VF z1 = bias ? VLOAD(bias + VW) : VSET1(0.0f);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        c0[i] = z0;
        c1[i] = z1;
        if (!(flags & GEMM_STREAM)) {
            __builtin_prefetch(c + i * rsc);     /* C rows: fetched during the loop */
            __builtin_prefetch(c + i * rsc + NR - 1);
        }
    }
}

/* The rows into C: C's own values added first with GEMM_ACC; stored by
 * streaming stores with GEMM_STREAM. */
static inline __attribute__((always_inline)) void
tile_store(float *c, int64_t rsc, int flags, VF *c0, VF *c1)
{
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * rsc;
        if (flags & GEMM_ACC) {
            c0[i] = VADD(c0[i], VLOAD(ci));
            c1[i] = VADD(c1[i], VLOAD(ci + VW));
        }
        if (flags & GEMM_STREAM) {
            VSTREAM(ci, c0[i]);
            VSTREAM(ci + VW, c1[i]);
        } else {
            VSTORE(ci, c0[i]);
            VSTORE(ci + VW, c1[i]);
        }
    }
}

#endif
