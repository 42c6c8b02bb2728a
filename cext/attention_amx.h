/* One head's bf16 forward on AMX tiles, for the AVX-512 build of
 * attention_fast.c (which includes this file after its softmax): the same
 * roundings as forward_head's bf16 mode (q, k, v rounded; P rounded after
 * the softmax, and kept so), its two products on tdpbf16ps instead of
 * float32 FMAs of rounded operands. Legend as in attention.c; the tiles as
 * in gemm_bf16_amx.c (16 rows of 64 bytes: a C tile 16 x 16 float32, an A
 * tile 16 rows of 32 bf16, a B tile 16 rows of 16 bf16 pairs), loaded by
 * bf16_tiles_start in each thread (attention_heads).
 *
 * Per head, in the thread's scratch (amx_head_floats):
 *   qa  (Np, Dp) bf16   q's rows rounded, zeros past N rows and d columns
 *   kt  (Np / 16) B slivers of (Dp / 2, 16) pairs: k^T, 16 tokens each
 *   s   (16, Np) float  S's last row tile, when N is not a multiple of 16
 *   pa  (Np, Kp) bf16   P's rows as an A operand, zeros past N columns
 *   vb  (Dq / 16) B slivers of (Kp / 2, 16) pairs: v, 16 of its columns each
 *   ot  (16, 16) float  an output tile cut by N or d
 * with Np = N rounded up to 16 (attention_row), Dp = d up to 32 (the K of
 * S), Kp = N up to 32 (the K of O), Dq = d up to 16 (O's columns).
 * S's tiles: Np / 16 x Np / 16, each Dp / 32 tdpbf16ps; O's: Np / 16 x
 * Dq / 16, each Kp / 32. At t2t_vit_cifar's backbone (N 65, d 32): 25 and
 * 30 instructions a head, where the float32 kernels run 19,000 vector FMAs. */
#include "gemm_bf16.h"

static inline int64_t up_to(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Floats of scratch one head needs (the layout above; P (N, Np) too, for a
 * forward that does not keep it). */
static int64_t amx_head_floats(int64_t N, int64_t d)
{
    int64_t np = attention_row(N), dp = up_to(d, 32), kp = up_to(N, 32), dq = up_to(d, 16);
    return np * dp / 2 + dp / 2 * np + np * np + np * kp / 2 + kp / 2 * dq + 256 + 16;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
static void forward_head_amx(const float *q, const float *k, const float *v, const float *kb,
                             float *o, float *p, int64_t N, int64_t np, int64_t d, int64_t rs,
                             int64_t ro, float scale, float *scratch)
{
    int64_t dp = up_to(d, 32), kp = up_to(N, 32), dq = up_to(d, 16);
    uint16_t *qa = (uint16_t *)scratch;                              /* (np, dp) bf16 */
    uint32_t *kt = (uint32_t *)(qa + np * dp);                       /* np / 16 x (dp / 2, 16) */
    float *s = (float *)(kt + dp / 2 * np);                          /* (16, np), then P (N, np) */
    uint16_t *pa = (uint16_t *)(s + np * np);                        /* (np, kp) bf16 */
    if (!p) p = s;                                                   /* P not kept: in scratch */
    uint32_t *vb = (uint32_t *)(pa + np * kp);                       /* dq / 16 x (kp / 2, 16) */
    float *ot = (float *)(vb + kp / 2 * dq);                         /* (16, 16) */

    bf16_pack_a_pairs(N, d, q, rs, 1, np, dp, qa, dp);
    for (int64_t j = 0; j < np; j += 16)                             /* k^T's columns j .. j + 15 */
        bf16_pack_b_pairs(d, MIN(16, N - j), k + j * rs, 1, rs, dp, 16, kt + j / 16 * (dp / 2) * 16);
    for (int64_t i = 0; i < np; i += 16) {                           /* S (N, np) = q k^T into p */
        float *row = i + 16 <= N ? p + i * np : s + (p == s ? i * np : 0);   /* the last tile apart */
        for (int64_t j = 0; j < np; j += 16) {
            _tile_zero(0);
            for (int64_t c = 0; c < dp; c += 32) {
                _tile_loadd(4, qa + i * dp + c, dp * 2);
                _tile_loadd(6, kt + (j / 16 * (dp / 2) + c / 2) * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
            }
            _tile_stored(0, row + j, np * 4);
        }
        if (row != p + i * np)                                       /* its rows < N into p */
            for (int64_t x = 0; x < (N - i) * np; x += 16) _mm512_storeu_ps(p + i * np + x, _mm512_loadu_ps(row + x));
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int64_t x = 0; x < N * np; x += 16)                          /* S * scale */
        _mm512_storeu_ps(p + x, _mm512_mul_ps(_mm512_loadu_ps(p + x), sc));
    softmax_head(p, kb, N, np);                                      /* P (N, np), zeros past N */
    round_run(p, p, N * np);

    bf16_pack_a_pairs(N, N, p, np, 1, np, kp, pa, kp);
    for (int64_t c = 0; c < dq; c += 16)                             /* v's columns c .. c + 15 */
        bf16_pack_b_pairs(N, MIN(16, d - c), v + c, rs, 1, kp, 16, vb + c / 16 * (kp / 2) * 16);
    for (int64_t i = 0; i < np; i += 16)                             /* O (N, d) = P v */
        for (int64_t c = 0; c < dq; c += 16) {
            _tile_zero(0);
            for (int64_t t = 0; t < kp; t += 32) {
                _tile_loadd(4, pa + i * kp + t, kp * 2);
                _tile_loadd(6, vb + (c / 16 * (kp / 2) + t / 2) * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
            }
            int64_t rows = MIN(16, N - i), cols = MIN(16, d - c);
            if (rows == 16 && cols == 16) {
                _tile_stored(0, o + i * ro + c, ro * 4);
            } else {                                                 /* cut by N or d */
                _tile_stored(0, ot, 64);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t x = 0; x < cols; x++) o[(i + r) * ro + c + x] = ot[r * 16 + x];
            }
        }
}
