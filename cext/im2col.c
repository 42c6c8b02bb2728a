/* unfold (im2col) and fold (col2im): the reference loops and the
 * dispatchers. The fast versions:
 *   unfold -> unfold_avx512 (im2col_fast.c: threads over planes)
 *          -> unfold_one (one plane: split into phases, copy runs out);
 *   fold likewise, and unfold_avx2, fold_avx2 for AVX2.
 *
 * Legend: B batch (nb), C channels (nc), H/W height/width, k kernel,
 * s stride, p padding, Ho/Wo = (H/W + 2p - k) / s + 1, L = Ho * Wo.
 *   unfold  x (B, C, H, W), strides sx = {batch, channel, row, col}
 *           -> cols (B, C*k*k, L), contiguous
 *   fold    cols (B, C*k*k, L), strides scol = {batch, row, col}
 *           -> x (B, C, H, W), contiguous
 * Row (c*k + i)*k + j of cols holds, for every window (oh, ow), the input
 * pixel x[c, oh*s - p + i, ow*s - p + j] (0 in the padding). fold sums
 * each column entry back onto that pixel: it is unfold's adjoint. */
#include "runtime.h"

/* Loops over (b, c, i, j), the rows of cols, then over the windows. */
void unfold_ref(const float *x, const int64_t *sx, float *cols, int64_t nb,
                int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    if (h + 2 * p < k || w + 2 * p < k) return;      /* no windows */
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < nc; c++)
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) {
                    float *row = cols + (((b * nc + c) * k + i) * k + j) * ho * wo;
                    for (int64_t oh = 0; oh < ho; oh++)
                        for (int64_t ow = 0; ow < wo; ow++) {
                            int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                            int inside = ih >= 0 && ih < h && iw >= 0 && iw < w;
                            row[oh * wo + ow] = inside ? x[b * sx[0] + c * sx[1]
                                                           + ih * sx[2] + iw * sx[3]] : 0.0f;
                        }
                }
}

/* x = 0, then the loops of unfold_ref, adding instead of copying. */
void fold_ref(const float *cols, const int64_t *scol, float *x, int64_t nb,
              int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    for (int64_t t = 0; t < nb * nc * h * w; t++) x[t] = 0.0f;
    if (h + 2 * p < k || w + 2 * p < k) return;
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < nc; c++)
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) {
                    const float *row = cols + b * scol[0] + ((c * k + i) * k + j) * scol[1];
                    for (int64_t oh = 0; oh < ho; oh++)
                        for (int64_t ow = 0; ow < wo; ow++) {
                            int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                            if (ih >= 0 && ih < h && iw >= 0 && iw < w)
                                x[((b * nc + c) * h + ih) * w + iw] +=
                                    row[(oh * wo + ow) * scol[2]];
                        }
                }
}

/* unfold_ref's values in cols_t (B, L, C*k*k): token by token. */
void unfold_tokens_ref(const float *x, const int64_t *sx, float *cols, int64_t nb,
                       int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    if (h + 2 * p < k || w + 2 * p < k) return;
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                float *token = cols + ((b * ho + oh) * wo + ow) * nc * k * k;
                for (int64_t c = 0; c < nc; c++)
                    for (int64_t i = 0; i < k; i++)
                        for (int64_t j = 0; j < k; j++) {
                            int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                            int inside = ih >= 0 && ih < h && iw >= 0 && iw < w;
                            token[(c * k + i) * k + j] =
                                inside ? x[b * sx[0] + c * sx[1] + ih * sx[2] + iw * sx[3]] : 0.0f;
                        }
            }
}

/* x = 0 (through sx), then the loops of fold_ref over cols_t: (i, j)
 * outermost, so each pixel gets its terms in fold_ref's order. */
void fold_tokens_ref(const float *cols, float *x, const int64_t *sx, int64_t nb,
                     int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < nc; c++)
            for (int64_t ih = 0; ih < h; ih++)
                for (int64_t iw = 0; iw < w; iw++) x[b * sx[0] + c * sx[1] + ih * sx[2] + iw * sx[3]] = 0.0f;
    if (h + 2 * p < k || w + 2 * p < k) return;
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1, f = nc * k * k;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                for (int64_t oh = 0; oh < ho; oh++)
                    for (int64_t ow = 0; ow < wo; ow++) {
                        int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                        if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                        const float *token = cols + ((b * ho + oh) * wo + ow) * f;
                        for (int64_t c = 0; c < nc; c++)
                            x[b * sx[0] + c * sx[1] + ih * sx[2] + iw * sx[3]] += token[(c * k + i) * k + j];
                    }
}

void unfold_tokens(const float *x, const int64_t *sx, float *cols, int64_t nb,
                   int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    int isa = minit2t_isa();
    DISPATCH(isa, unfold_tokens, (x, sx, cols, nb, nc, h, w, k, s, p));
}

void fold_tokens(const float *cols, float *x, const int64_t *sx, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    int isa = minit2t_isa();
    DISPATCH(isa, fold_tokens, (cols, x, sx, nb, nc, h, w, k, s, p));
}

/* The fast versions need unit column strides: x's for unfold, cols' for
 * fold; anything else goes to the reference. */
void unfold(const float *x, const int64_t *sx, float *cols, int64_t nb,
            int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    int isa = minit2t_isa();
    if (sx[3] != 1) isa = ISA_SCALAR;      /* fast path: unit column stride */
    DISPATCH(isa, unfold, (x, sx, cols, nb, nc, h, w, k, s, p));
}

void fold(const float *cols, const int64_t *scol, float *x, int64_t nb,
          int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    int isa = minit2t_isa();
    if (scol[2] != 1) isa = ISA_SCALAR;    /* fast path: unit column stride */
    DISPATCH(isa, fold, (cols, scol, x, nb, nc, h, w, k, s, p));
}
