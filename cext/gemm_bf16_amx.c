/* The bf16 GEMM on AMX tiles: sgemm_bf16_amx (arguments as sgemm_bf16) and
 * its micro-kernel. A and B are packed into pairs of bf16 as for vdpbf16ps
 * (gemm_bf16_avx512.c), K padded to a multiple of 32; the loops around the
 * micro-kernel are gemm_bf16_loops.c. Legend as in gemm_bf16.h.
 *
 * The eight tile registers, each configured as 16 rows of 64 bytes:
 *   0 1   C rows 0-15, columns 0-15 | 16-31   (16 x 16 float32 each)
 *   2 3   C rows 16-31, the same columns
 *   4 5   A rows 0-15 | 16-31, 32 bf16 of K  (row stride lda bf16)
 *   6 7   B columns 0-15 | 16-31: 16 rows of pairs (K 32) of 16 columns
 *         each, read out of a sliver of NR = 32 columns (row stride 128 bytes)
 * so the micro-tile is 32 x 32 of C, and each step of 32 along K loads two
 * A and two B tiles and runs four tdpbf16ps: C[i, j] += A[i, 2q] B[2q, j] +
 * A[i, 2q + 1] B[2q + 1, j] over the 16 pairs q. Linux lends the tiles on
 * request (minit2t_amx_ready, runtime.c); each thread loads the tile
 * configuration before its first tile and releases the tiles after its
 * last (gemm_bf16_run's thread_start, thread_end), so no tile state outlives
 * a call. */
#include "gemm_bf16.h"

#if MINIT2T_X86
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")
#include <immintrin.h>

enum { MR = 32, NR = 32 };

/* The tile configuration (palette 1): tiles 0-7 of 16 rows x 64 bytes. A
 * constant: GCC's _tile_loadconfig tells the compiler it reads 8 bytes, so
 * the stores that filled a configuration on the stack would be dropped. */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void bf16_tiles_start(void) { _tile_loadconfig(&tile_config); }

void bf16_tiles_end(void) { _tile_release(); }

/* The 32 x 32 tile of C at c = (or +=, with GEMM_ACC) A @ B + bias over kp
 * (a multiple of 32). The C tiles start at C (GEMM_ACC), at the bias (its
 * 16 floats loaded into every row: row stride 0) or at zero. With
 * GEMM_STREAM they go through a buffer in L1 and on to C by streaming
 * stores (C then costs no read of its lines). */
static void ukernel(int64_t kp, const void *ap, int64_t lda, const void *bp, float *c,
                    int64_t rsc, int flags, const float *bias)
{
    const uint16_t *a = ap;
    const uint32_t *b = bp;
    const int64_t sa = lda * 2, sc = rsc * 4;                  /* row strides in bytes */
    if (flags & GEMM_ACC) {
        _tile_loadd(0, c, sc);
        _tile_loadd(1, c + 16, sc);
        _tile_loadd(2, c + 16 * rsc, sc);
        _tile_loadd(3, c + 16 * rsc + 16, sc);
    } else if (bias) {
        _tile_loadd(0, bias, 0);
        _tile_loadd(1, bias + 16, 0);
        _tile_loadd(2, bias, 0);
        _tile_loadd(3, bias + 16, 0);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t p = 0; p < kp; p += 32) {
        _tile_loadd(4, a + p, sa);
        _tile_loadd(5, a + 16 * lda + p, sa);
        _tile_loadd(6, b + p / 2 * NR, NR * 4);
        _tile_loadd(7, b + p / 2 * NR + 16, NR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (!(flags & GEMM_STREAM)) {
        _tile_stored(0, c, sc);
        _tile_stored(1, c + 16, sc);
        _tile_stored(2, c + 16 * rsc, sc);
        _tile_stored(3, c + 16 * rsc + 16, sc);
        return;
    }
    float buf[MR * NR] __attribute__((aligned(64)));           /* the tile, row stride NR */
    _tile_stored(0, buf, NR * 4);
    _tile_stored(1, buf + 16, NR * 4);
    _tile_stored(2, buf + 16 * NR, NR * 4);
    _tile_stored(3, buf + 16 * NR + 16, NR * 4);
    for (int i = 0; i < MR; i++) {
        _mm512_stream_ps(c + i * rsc, _mm512_load_ps(buf + i * NR));
        _mm512_stream_ps(c + i * rsc + 16, _mm512_load_ps(buf + i * NR + 16));
    }
}

/* Block sizes: A block MC x KC = 128 x 1024 bf16 (256 KB) in L2; B sliver
 * KC x NR = 1024 x 32 bf16 (64 KB); B panel up to 1024 x 512 (1 MB). */
static const bf16_kit kit = {
    .mr = MR, .nr = NR, .kstep = 32, .mc = 128, .kc = 1024, .nc = 512,
    .a_bytes = 2, .b_bytes = 2, .pack_a = bf16_pack_a_pairs, .pack_b = bf16_pack_b_pairs,
    .ukernel = ukernel, .thread_start = bf16_tiles_start, .thread_end = bf16_tiles_end,
};

/* Where Linux refuses this process the tiles: the vdpbf16ps version. */
void sgemm_bf16_gelu_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact)
{
    if (minit2t_amx_ready())
        gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, NULL, NULL);
    else
        sgemm_bf16_gelu_avx512bf16(bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact);
}

void sgemm_bf16_add_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc)
{
    if (minit2t_amx_ready())
        gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, c, sc, r, sr);
    else
        sgemm_bf16_add_avx512bf16(bt, m, n, k, a, sa, b, sb, bias, r, sr, c, sc);
}

void sgemm_bf16_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_bf16_gelu_amx(bt, m, n, k, a, sa, b, sb, bias, c, sc, NULL, NULL);
}

#endif /* MINIT2T_X86; elsewhere sgemm_bf16 calls only sgemm_bf16_ref */
