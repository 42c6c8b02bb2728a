/* What the bf16 GEMM's files pass each other: a kit (one version's packing,
 * micro-kernel and block sizes) and the loops that run any kit
 * (gemm_bf16_loops.c). Legend as in gemm.c: C (M, N) = A (M, K) @ B (K, N);
 * MR x NR the micro-tile, MC / KC / NC the cache blocks; a K block of kb
 * columns is packed as kp >= kb (kb rounded up to the kit's kstep: 2 for
 * pairs of bf16, 32 for an AMX tile), the columns past kb zero.
 *
 * The kits:
 *   gemm_bf16_fast.c   float32: A and B rounded to bf16 as they are packed,
 *                      kept as floats; float32 FMA micro-kernels (AVX2,
 *                      AVX-512F: CPUs without bf16 instructions)
 *   gemm_bf16_avx512.c pairs: A rows and B slivers packed as pairs of bf16
 *                      along K; the vdpbf16ps micro-kernel (AVX512-BF16)
 *   gemm_bf16_amx.c    the pairs' packing; the AMX tile micro-kernel */
#ifndef MINIT2T_GEMM_BF16_H
#define MINIT2T_GEMM_BF16_H
#include "gemm_blocking.h"

/* A[0:mb, 0:kb] (strides rsa, csa) rounded to bf16 into rows: element
 * (i, p) at dst[i * lda + p] (lda, like every offset here, in elements of
 * the kit's A), zero for mb <= i < mp and kb <= p < kp. */
typedef void (*bf16_pack_a)(int64_t mb, int64_t kb, const float *a, int64_t rsa, int64_t csa,
                            int64_t mp, int64_t kp, void *dst, int64_t lda);

/* B[0:kb, 0:w] (strides rsb, csb), w <= nr columns, rounded to bf16 into one
 * sliver of nr columns and kp rows (zero past w and kb). Floats: (p, j) at
 * dst[p * nr + j]; pairs: (2q, j) and (2q + 1, j) in the two halves of the
 * 32 bits at dst[q * nr + j] (the vdpbf16ps and AMX layout). */
typedef void (*bf16_pack_b)(int64_t kb, int64_t w, const float *b, int64_t rsb, int64_t csb,
                            int64_t kp, int nr, void *dst);

/* The MR x NR tile of C at c (row stride rsc, columns contiguous) = (or +=,
 * with GEMM_ACC in flags) A @ B + bias (NR floats, or NULL), over kp: a the
 * MR rows of a packed A block (row stride lda), b a packed B sliver. flags
 * as in gemm_blocking.h (GEMM_STREAM: rows stored by streaming stores). */
typedef void (*bf16_ukernel)(int64_t kp, const void *a, int64_t lda, const void *b,
                             float *c, int64_t rsc, int flags, const float *bias);

typedef struct {
    int mr, nr, kstep;
    int64_t mc, kc, nc;
    int a_bytes, b_bytes;       /* bytes of a packed element of A / of B (per row, per column) */
    bf16_pack_a pack_a;
    bf16_pack_b pack_b;
    bf16_ukernel ukernel;
    void (*thread_start)(void); /* in each thread before its first micro-kernel, or NULL */
    void (*thread_end)(void);   /* after its last, or NULL */
} bf16_kit;

/* ---- gemm_bf16_loops.c: the entry of every fast version; arguments as
 * sgemm_bf16_gelu (minit2t.h; act NULL: no epilogue), then res, sres as
 * gemm_threaded's (gemm_blocking.h: with act = c, the residual of
 * sgemm_bf16_add), kit the version's. */
void gemm_bf16_run(const bf16_kit *kit, int64_t bt, int64_t m, int64_t n, int64_t k,
                   const float *a, const int64_t *sa, const float *b, const int64_t *sb,
                   const float *bias, float *c, const int64_t *sc, float *act, const int64_t *sact,
                   const float *res, const int64_t *sres);

/* ---- gemm_bf16_avx512.c: the packing into pairs, for the AMX kit too
 * (lda, and B's rows, in bf16; kp even). */
void bf16_pack_a_pairs(int64_t mb, int64_t kb, const float *a, int64_t rsa, int64_t csa,
                       int64_t mp, int64_t kp, void *dst, int64_t lda);
void bf16_pack_b_pairs(int64_t kb, int64_t w, const float *b, int64_t rsb, int64_t csb,
                       int64_t kp, int nr, void *dst);

/* ---- gemm_bf16_amx.c: the tile configuration (eight tiles of 16 rows of
 * 64 bytes) loaded in the calling thread, and the tiles released; for any
 * AMX code of this module (the GEMM's kit, the attention's heads). */
void bf16_tiles_start(void);
void bf16_tiles_end(void);

#endif
