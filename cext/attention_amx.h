/* One head's bf16 forward and backward on AMX tiles, for the AVX-512 build
 * of attention_fast.c (which includes this file after its softmax): the
 * same roundings as forward_head's and backward_head's bf16 mode (q, k, v
 * and g rounded; P rounded after the softmax, and kept so; gS rounded
 * before its products), the six products on tdpbf16ps instead of float32
 * FMAs of rounded operands. Legend as in attention.c; the tiles as
 * in gemm_bf16_amx.c (16 rows of 64 bytes: a C tile 16 x 16 float32, an A
 * tile 16 rows of 32 bf16, a B tile 16 rows of 16 bf16 pairs), loaded by
 * bf16_tiles_start in each thread (attention_heads).
 *
 * Per head, in the thread's scratch (amx_head_floats), for the forward (the
 * backward's: g for q, v^T for k^T, gP then gS for P, its A and B operands
 * in pa and vb):
 *   qa  (Np, Dp) bf16   q's rows rounded, zeros past N rows and d columns
 *   kt  (Np / 16) B slivers of (Dp / 2, 16) pairs: k^T, 16 tokens each
 *   s   (Np, Np) float  S, then P (softmax_head), rounded: streamed out to the
 *                       kept P by the forward of a training step
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

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

/* out[i, c] = alpha * (A B)[i, c] for i < rows, c < cols (out's row stride
 * ro): A packed as mp rows of kp bf16 (mp, kp multiples of 16 and 32), B
 * as slivers of 16 columns of (kp / 2, 16) pairs. A whole 16 x 16 tile with
 * alpha 1 is stored by the tile store; any other through ot (16 x 16). With
 * stream (an output in memory, not read again here: O, and the gradients),
 * every tile goes through ot and its whole rows of 16 floats that start on a
 * 64-byte line by streaming stores, which do not read the line first (the
 * caller fences). */
AMX_TARGET static void tile_product(const uint16_t *a, const uint32_t *b, int64_t mp, int64_t kp,
                                    int64_t rows, int64_t cols, float alpha, float *out, int64_t ro,
                                    float *ot, int stream)
{
    __m512 va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < mp; i += 16)
        for (int64_t c = 0; c < cols; c += 16) {
            _tile_zero(0);
            for (int64_t t = 0; t < kp; t += 32) {
                _tile_loadd(4, a + i * kp + t, kp * 2);
                _tile_loadd(6, b + (c / 16 * (kp / 2) + t / 2) * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
            }
            int64_t r = MIN(16, rows - i), w = MIN(16, cols - c);
            if (r == 16 && w == 16 && alpha == 1.0f && !stream) {
                _tile_stored(0, out + i * ro + c, ro * 4);
                continue;
            }
            _tile_stored(0, ot, 64);
            __mmask16 m = (__mmask16)((1u << w) - 1u);
            for (int64_t x = 0; x < r; x++) {
                float *dst = out + (i + x) * ro + c;
                __m512 y = _mm512_mul_ps(_mm512_loadu_ps(ot + x * 16), va);
                if (stream && w == 16 && (uintptr_t)dst % 64 == 0) _mm512_stream_ps(dst, y);
                else _mm512_mask_storeu_ps(dst, m, y);
            }
        }
}

/* x^T's columns as B slivers of 16: x (n rows of d, row stride rs) -> dst,
 * sliver j / 16 = (dp / 2, 16) pairs of rows j .. j + 15 of x. */
static void pack_rows_as_columns(const float *x, int64_t n, int64_t d, int64_t rs, int64_t np, int64_t dp,
                                 uint32_t *dst)
{
    for (int64_t j = 0; j < np; j += 16)
        bf16_pack_b_pairs(d, MIN(16, n - j), x + j * rs, 1, rs, dp, 16, dst + j / 16 * (dp / 2) * 16);
}

/* x (n rows of d, row stride rs) as B slivers of 16 of its columns, each
 * (kp / 2, 16) pairs along its rows. */
static void pack_columns(const float *x, int64_t n, int64_t d, int64_t rs, int64_t kp, uint32_t *dst)
{
    for (int64_t c = 0; c < d; c += 16)
        bf16_pack_b_pairs(n, MIN(16, d - c), x + c, rs, 1, kp, 16, dst + c / 16 * (kp / 2) * 16);
}

AMX_TARGET static void forward_head_amx(const float *q, const float *k, const float *v, const float *kb,
                                        float *o, float *p, int64_t N, int64_t np, int64_t d, int64_t rs,
                                        int64_t ro, float scale, float *scratch)
{
    int64_t dp = up_to(d, 32), kp = up_to(N, 32), dq = up_to(d, 16);
    uint16_t *qa = (uint16_t *)scratch;                              /* (np, dp) bf16 */
    uint32_t *kt = (uint32_t *)(qa + np * dp);                       /* np / 16 x (dp / 2, 16) */
    float *s = (float *)(kt + dp / 2 * np);                          /* S, then P (np, np) */
    uint16_t *pa = (uint16_t *)(s + np * np);                        /* (np, kp) bf16 */
    uint32_t *vb = (uint32_t *)(pa + np * kp);                       /* dq / 16 x (kp / 2, 16) */
    float *ot = (float *)(vb + kp / 2 * dq);                         /* (16, 16) */

    bf16_pack_a_pairs(N, d, q, rs, 1, np, dp, qa, dp);
    pack_rows_as_columns(k, N, d, rs, np, dp, kt);                   /* k^T */
    tile_product(qa, kt, np, dp, np, np, 1.0f, s, np, ot, 0);        /* S (np, np) = q k^T */
    __m512 sc = _mm512_set1_ps(scale);
    for (int64_t x = 0; x < N * np; x += 16)                          /* S * scale, rows < N */
        _mm512_storeu_ps(s + x, _mm512_mul_ps(_mm512_loadu_ps(s + x), sc));
    softmax_head(s, kb, N, np);                                      /* P (N, np), zeros past N */
    round_run(s, s, N * np);
    if (p) stream_copy(s, p, N * np);                                /* kept: out to memory */

    bf16_pack_a_pairs(N, N, s, np, 1, np, kp, pa, kp);
    pack_columns(v, N, d, rs, kp, vb);
    tile_product(pa, vb, np, kp, N, d, 1.0f, o, ro, ot, 1);          /* O (N, d) = P v */
}

/* One head's gradients as backward_head's bf16 mode, the four products on
 * tiles: gP = g v^T into ds (np, np), gS = P (gP - rowsum(gP P)) rounded,
 * then gq = gS k scale, gk = gS^T q scale, gv = P^T g, each from gS, gS^T or
 * P^T packed as A and k, q or g as B (the scratch of the forward: A in pa,
 * B in vb). */
AMX_TARGET static void backward_head_amx(const float *q, const float *k, const float *v, const float *p,
                                         const float *g, float *gq, float *gk, float *gv, int64_t N,
                                         int64_t np, int64_t d, int64_t rs, int64_t ro, float scale,
                                         float *scratch)
{
    int64_t dp = up_to(d, 32), kp = up_to(N, 32), dq = up_to(d, 16);
    uint16_t *ga = (uint16_t *)scratch;                              /* (np, dp) bf16 */
    uint32_t *vt = (uint32_t *)(ga + np * dp);                       /* np / 16 x (dp / 2, 16) */
    float *ds = (float *)(vt + dp / 2 * np);                         /* (np, np) */
    uint16_t *a = (uint16_t *)(ds + np * np);                        /* (np, kp) bf16 */
    uint32_t *b = (uint32_t *)(a + np * kp);                         /* dq / 16 x (kp / 2, 16) */
    float *ot = (float *)(b + kp / 2 * dq);                          /* (16, 16) */

    bf16_pack_a_pairs(N, d, g, ro, 1, np, dp, ga, dp);
    pack_rows_as_columns(v, N, d, rs, np, dp, vt);                   /* v^T */
    tile_product(ga, vt, np, dp, np, np, 1.0f, ds, np, ot, 0);       /* gP (np, np) */
    for (int64_t i = 0; i < N; i++) softmax_row_backward(ds + i * np, p + i * np, ds + i * np, np);
    round_run(ds, ds, N * np);                                       /* gS, rounded */

    bf16_pack_a_pairs(N, N, ds, np, 1, np, kp, a, kp);               /* gS */
    pack_columns(k, N, d, rs, kp, b);
    tile_product(a, b, np, kp, N, d, scale, gq, rs, ot, 1);          /* gq = gS k scale */
    bf16_pack_a_pairs(N, N, ds, 1, np, np, kp, a, kp);               /* gS^T */
    pack_columns(q, N, d, rs, kp, b);
    tile_product(a, b, np, kp, N, d, scale, gk, rs, ot, 1);          /* gk = gS^T q scale */
    bf16_pack_a_pairs(N, N, p, 1, np, np, kp, a, kp);                /* P^T */
    pack_columns(g, N, d, ro, kp, b);
    tile_product(a, b, np, kp, N, d, 1.0f, gv, rs, ot, 1);           /* gv = P^T g */
}
