/* The fast unfold/fold, written once and compiled per ISA: included by
 * avx2.c and avx512.c after they define IM2COL_NAME(f) (the name suffix).
 * Legend as in im2col.c; xp is x with its zero border, (H + 2p, W + 2p).
 *
 * Work is split by planes (one (b, c) pair: x (H, W) <-> cols (k*k, L)),
 * handed to threads in small runs as they come free; one thread per plane,
 * so no two threads write the same memory.
 *
 * Phases: with stride s, window (oh, ow) at kernel offset (i, j) reads
 *   xp[oh*s + i, ow*s + j] = ph[i%s, j%s][oh + i/s, ow + j/s]
 * where phase plane ph[a, b][r, c] = xp[r*s + a, c*s + b], (Hq, Wq) =
 * (ceil((H + 2p) / s), ceil((W + 2p) / s)). A plane is first split into its
 * s*s phases in a scratch buffer that stays in cache (the padding becomes
 * zeros there); every row of cols is then a run of Wo contiguous floats
 * copied out of one phase (unfold), or added into it (fold, after which the
 * phases are interleaved back into x). The inner loops have no bounds tests,
 * no strides and no padding cases. For s = 1 the one phase is xp itself.
 * The fast path needs unit column strides (x's for unfold, cols' for fold);
 * the dispatchers send anything else to the reference. */
#include <string.h>
#include "runs.h"

/* The c with 0 <= c*s + b - p < w, as [*lo, *hi) within [0, n). */
static inline void inside(int64_t w, int64_t n, int64_t b, int64_t s, int64_t p,
                          int64_t *lo, int64_t *hi)
{
    int64_t first = p - b > 0 ? (p - b + s - 1) / s : 0;
    int64_t last = w - 1 + p - b >= 0 ? (w - 1 + p - b) / s + 1 : 0;
    *lo = MIN(first, n);
    *hi = MAX(MIN(last, n), *lo);
}

/* x (H, W), row stride sh -> its s*s phases ph (s*s, Hq, Wq). */
static void split_phases(const float *x, int64_t sh, float *ph, int64_t h, int64_t w,
                         int64_t s, int64_t p, int64_t hq, int64_t wq)
{
    for (int64_t b = 0; b < s; b++) {
        int64_t lo, hi;
        inside(w, wq, b, s, p, &lo, &hi);
        for (int64_t a = 0; a < s; a++)
            for (int64_t r = 0; r < hq; r++) {
                float *dst = ph + ((a * s + b) * hq + r) * wq;   /* (Wq,) */
                int64_t ih = r * s + a - p;
                if (ih < 0 || ih >= h) {
                    zero_run(dst, wq);
                    continue;
                }
                zero_run(dst, lo);
                strided_run(dst + lo, x + ih * sh + lo * s + b - p, hi - lo, s);
                zero_run(dst + hi, wq - hi);
            }
    }
}

/* The inverse: x (H, W) contiguous <- the phases ph (s*s, Hq, Wq). For
 * s = 2 each padded row is first re-interleaved whole into row (2 Wq). */
static void merge_phases(const float *ph, float *x, int64_t h, int64_t w, int64_t s,
                         int64_t p, int64_t hq, int64_t wq, float *row, int stream)
{
    int64_t a = p % s, r = p / s;           /* padded row ih + p = r*s + a */
    for (int64_t ih = 0; ih < h; ih++, a = a + 1 == s ? 0 : a + 1, r += a == 0) {
        float *dst = x + ih * w;
        const float *src = ph + (a * s * hq + r) * wq;        /* phase (a, 0) */
        if (s <= 2) {
            if (s == 2) interleave_run(row, src, src + hq * wq, wq);
            if (stream) stream_run(dst, s == 2 ? row + p : src + p, w);
            else copy_run(dst, s == 2 ? row + p : src + p, w);
            continue;
        }
        for (int64_t b = 0; b < s; b++, src += hq * wq) {
            int64_t lo, hi;
            inside(w, wq, b, s, p, &lo, &hi);
            float *out = dst + lo * s + b - p;
            for (int64_t c = 0; c < hi - lo; c++) out[c * s] = src[lo + c];
        }
    }
}

/* Where window offset (i, j) starts: phase (i%s, j%s), at (i/s, j/s). The
 * small divisions of s = 1, 2 are spelled out: a 64-bit division costs more
 * than a short run. */
static inline int64_t phase_offset(int64_t i, int64_t j, int64_t s, int64_t hq, int64_t wq)
{
    if (s == 1) return i * wq + j;
    if (s == 2) return (((i & 1) * 2 + (j & 1)) * hq + (i >> 1)) * wq + (j >> 1);
    return ((i % s * s + j % s) * hq + i / s) * wq + j / s;
}

/* cols (k*k, L) <- the phases: row (i, j) is Ho runs of Wo floats. */
static void phases_to_cols(const float *ph, float *cols, int64_t k, int64_t s,
                           int64_t hq, int64_t wq, int64_t ho, int64_t wo, int stream)
{
    float *row = cols;                                       /* (Ho, Wo) */
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++, row += ho * wo) {
            const float *src = ph + phase_offset(i, j, s, hq, wq);
            if (stream)
                for (int64_t oh = 0; oh < ho; oh++) stream_run(row + oh * wo, src + oh * wq, wo);
            else
                for (int64_t oh = 0; oh < ho; oh++) copy_run(row + oh * wo, src + oh * wq, wo);
        }
}

/* The phases (zeroed by the caller) += cols (k*k, L), row stride sr. */
static void cols_to_phases(const float *cols, int64_t sr, float *ph, int64_t k,
                           int64_t s, int64_t hq, int64_t wq, int64_t ho, int64_t wo)
{
    const float *row = cols;                                 /* (Ho, Wo) */
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++, row += sr) {
            float *dst = ph + phase_offset(i, j, s, hq, wq);
            if (wo % 8 == 0)
                for (int64_t oh = 0; oh < ho; oh++) add_run8(dst + oh * wq, row + oh * wo, wo);
            else
                for (int64_t oh = 0; oh < ho; oh++) add_run(dst + oh * wq, row + oh * wo, wo);
        }
}

typedef struct {               /* one plane's geometry; stream: the output */
    int64_t h, w, k, s, p, ho, wo, hq, wq;   /* is written with streaming stores */
    int stream;
} plane_geom;

/* Outputs of 8 MiB or more (a quarter of this L3) are streamed, when their
 * rows are whole aligned vectors (the C backend's outputs are 64-byte
 * aligned): measured faster here, as most of such an output leaves the
 * cache before it is used. */
#define STREAM_BYTES (8.0 * 1024 * 1024)

static plane_geom geometry(int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    plane_geom g = {h, w, k, s, p, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1,
                    (h + 2 * p + s - 1) / s, (w + 2 * p + s - 1) / s, 0};
    return g;
}

static void unfold_one(const plane_geom *g, const float *x, int64_t sh, float *cols)
{
    float *ph = minit2t_scratch(3, (size_t)(g->s * g->s * g->hq * g->wq));
    if (!ph) {                                   /* out of memory */
        int64_t sx[4] = {0, 0, sh, 1};
        unfold_ref(x, sx, cols, 1, 1, g->h, g->w, g->k, g->s, g->p);
        return;
    }
    split_phases(x, sh, ph, g->h, g->w, g->s, g->p, g->hq, g->wq);
    phases_to_cols(ph, cols, g->k, g->s, g->hq, g->wq, g->ho, g->wo, g->stream);
}

static void fold_one(const plane_geom *g, const float *cols, int64_t sr, float *x)
{
    size_t n = (size_t)(g->s * g->s * g->hq * g->wq);
    float *ph = minit2t_scratch(3, n + (size_t)(2 * g->wq));  /* + a row */
    if (!ph) {                                   /* out of memory */
        int64_t sc[3] = {0, sr, 1};
        fold_ref(cols, sc, x, 1, 1, g->h, g->w, g->k, g->s, g->p);
        return;
    }
    zero_run(ph, (int64_t)n);
    cols_to_phases(cols, sr, ph, g->k, g->s, g->hq, g->wq, g->ho, g->wo);
    merge_phases(ph, x, g->h, g->w, g->s, g->p, g->hq, g->wq, ph + n, g->stream);
}

void IM2COL_NAME(unfold)(const float *x, const int64_t *sx, float *cols,
                         int64_t nb, int64_t nc, int64_t h, int64_t w,
                         int64_t k, int64_t s, int64_t p)
{
    if (sx[3] != 1) {
        unfold_ref(x, sx, cols, nb, nc, h, w, k, s, p);
        return;
    }
    if (h + 2 * p < k || w + 2 * p < k) return;
    plane_geom g = geometry(h, w, k, s, p);
    int64_t planes = nb * nc, plane = k * k * g.ho * g.wo;   /* floats per plane */
    g.stream = 4.0 * (double)planes * (double)plane >= STREAM_BYTES
               && (uintptr_t)cols % 32 == 0 && g.wo % 8 == 0;   /* whole aligned rows */
    int nt = minit2t_threads_for(4.0 * (double)planes * (double)(plane + h * w));
    int64_t chunk = MAX(1, planes / (16 * nt));                /* planes per hand-out */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(dynamic, chunk)
        for (int64_t t = 0; t < planes; t++)
            unfold_one(&g, x + t / nc * sx[0] + t % nc * sx[1], sx[2], cols + t * plane);
        _mm_sfence();                /* streamed stores done before the barrier */
    }
}

void IM2COL_NAME(fold)(const float *cols, const int64_t *scol, float *x,
                       int64_t nb, int64_t nc, int64_t h, int64_t w,
                       int64_t k, int64_t s, int64_t p)
{
    if (scol[2] != 1 || h + 2 * p < k || w + 2 * p < k) {
        fold_ref(cols, scol, x, nb, nc, h, w, k, s, p);
        return;
    }
    plane_geom g = geometry(h, w, k, s, p);
    int64_t planes = nb * nc;
    g.stream = 4.0 * (double)planes * (double)(h * w) >= STREAM_BYTES
               && (uintptr_t)x % 32 == 0 && w % 8 == 0;
    int nt = minit2t_threads_for(4.0 * (double)planes * (double)(k * k * g.ho * g.wo + h * w));
    int64_t chunk = MAX(1, planes / (16 * nt));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(dynamic, chunk)
        for (int64_t t = 0; t < planes; t++)
            fold_one(&g, cols + t / nc * scol[0] + t % nc * k * k * scol[1], scol[1],
                     x + t * h * w);
        _mm_sfence();
    }
}
