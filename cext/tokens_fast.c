/* The fast unfold_tokens / fold_tokens (minit2t.h), written once and
 * compiled once per ISA (fast_isa.h): the soft split with its columns
 * tokens-major, cols_t (B, L, C*k*k), the layout the T2T layers read, so
 * no transpose of cols (nor, for a channels-last x, of x) is needed.
 * Legend as in im2col.c; f = C*k*k, a token's length; t = i*k + j, a
 * kernel offset.
 *
 * unfold_tokens: threads over rows of tokens (b, oh). For each token the
 * k*k pixels its window reads are found once (NULL in the padding), then
 * its run of f floats is written in order, channel by channel: the writes
 * are one contiguous run, the reads k*k streams along the channels
 * (contiguous for a channels-last x).
 * fold_tokens: threads over images (windows of one image overlap). Each
 * image is zeroed, then for each kernel offset (i, j), every token adds
 * its C values at offset t to the pixel its window put there: the order of
 * fold's sums for each pixel, so the values are fold's bit for bit. */
#include "fast_isa.h"

/* The pixel at kernel offset (i, j) of window (oh, ow) of image x0, or NULL in the padding. */
static inline const float *window_pixel(const float *x0, const int64_t *sx, int64_t h, int64_t w,
                                        int64_t ih, int64_t iw)
{
    return ih >= 0 && ih < h && iw >= 0 && iw < w ? x0 + ih * sx[2] + iw * sx[3] : NULL;
}

void FAST(unfold_tokens)(const float *x, const int64_t *sx, float *cols, int64_t nb,
                         int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    if (h + 2 * p < k || w + 2 * p < k || k > 16) {              /* no windows; or kernels past */
        unfold_tokens_ref(x, sx, cols, nb, nc, h, w, k, s, p);    /* the pixel table below */
        return;
    }
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1, kk = k * k, f = nc * kk;
    int nt = minit2t_threads_for(4.0 * (double)(nb * ho * wo) * (double)f);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t row = 0; row < nb * ho; row++) {
        int64_t b = row / ho, oh = row % ho;
        const float *x0 = x + b * sx[0];
        for (int64_t ow = 0; ow < wo; ow++) {
            const float *px[256];                                  /* (k*k,) this window's pixels */
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++)
                    px[i * k + j] = window_pixel(x0, sx, h, w, oh * s - p + i, ow * s - p + j);
            float *token = cols + (row * wo + ow) * f;             /* (f,) */
            for (int64_t c = 0; c < nc; c++, token += kk)
                for (int64_t t = 0; t < kk; t++) token[t] = px[t] ? px[t][c * sx[1]] : 0.0f;
        }
    }
}

void FAST(fold_tokens)(const float *cols, float *x, const int64_t *sx, int64_t nb,
                       int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    int64_t ho = h + 2 * p < k || w + 2 * p < k ? 0 : (h + 2 * p - k) / s + 1;
    int64_t wo = ho ? (w + 2 * p - k) / s + 1 : 0, kk = k * k, f = nc * kk;
    int nt = minit2t_threads_for(4.0 * (double)nb * (double)(ho * wo * f + nc * h * w));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t b = 0; b < nb; b++) {
        float *x0 = x + b * sx[0];
        for (int64_t c = 0; c < nc; c++)
            for (int64_t ih = 0; ih < h; ih++)
                for (int64_t iw = 0; iw < w; iw++) x0[c * sx[1] + ih * sx[2] + iw * sx[3]] = 0.0f;
        for (int64_t t = 0; t < kk; t++) {
            int64_t i = t / k, j = t % k;
            for (int64_t oh = 0; oh < ho; oh++) {
                int64_t ih = oh * s - p + i;
                if (ih < 0 || ih >= h) continue;
                for (int64_t ow = 0; ow < wo; ow++) {
                    int64_t iw = ow * s - p + j;
                    if (iw < 0 || iw >= w) continue;
                    const float *token = cols + ((b * ho + oh) * wo + ow) * f + t;   /* stride kk */
                    float *px = x0 + ih * sx[2] + iw * sx[3];
                    if (sx[1] == 1)
                        for (int64_t c = 0; c < nc; c++) px[c] += token[c * kk];
                    else
                        for (int64_t c = 0; c < nc; c++) px[c * sx[1]] += token[c * kk];
                }
            }
        }
    }
}
