/* The fast unfold / fold, written once and compiled once per ISA
 * (fast_isa.h): unfold_avx2 / unfold_avx512 and fold_avx2 / fold_avx512,
 * the last two functions here. The runs it copies with (im2col_runs.h) are
 * AVX2 code in the AVX-512 build too, on purpose (see there); the compiler
 * may use AVX-512 around them.
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
 * s*s phases in a scratch buffer that stays in cache: each row of x is cut
 * into its s column phases (vector shuffles at s = 2 and 4), while the
 * padding is zeros there that stay from plane to plane. Every row of cols is
 * then a run of Wo contiguous floats copied out of one phase (unfold), or
 * added into it (fold, after which each row of x is interleaved back from
 * its phases). The inner loops have no bounds tests, no strides and no
 * padding cases. For s = 1 the one phase is xp itself.
 * The fast path needs unit column strides (x's for unfold, cols' for fold);
 * the dispatchers send anything else to the reference. */
#include "fast_isa.h"
#include <string.h>
#include "im2col_runs.h"

typedef struct {               /* one plane's geometry */
    int64_t h, w, k, s, p, ho, wo, hq, wq;
    int stream;                /* the output is written with streaming stores */
    int64_t col[4];            /* column_start(q) for q < min(s, 4) */
} plane_geom;

/* Row ih of x is row r of the phases (a, 0..s-1), where ih + p = r*s + a;
 * the loop steps a and r along with ih (no divisions per row). */
#define FOR_PHASE_ROWS(g, ih, a, r)                                            \
    for (int64_t ih = 0, a = (g)->p % (g)->s, r = (g)->p / (g)->s; ih < (g)->h; \
         ih++, a = a + 1 == (g)->s ? 0 : a + 1, r += a == 0)

/* In that row, x[ih, t*s + q] is float t of phase (a, (q + p) % s) from
 * its column (q + p) / s on: in all, column_start(q) + t floats past the
 * start of row r of phase (a, 0). */
static inline int64_t column_start(const plane_geom *g, int64_t q)
{
    return (q + g->p) % g->s * g->hq * g->wq + (q + g->p) / g->s;
}

/* x (H, W), row stride sh -> the inside of its phases ph (s*s, Hq, Wq):
 * the floats that come from x. The rest, the padding, is the same zeros
 * for every plane: the caller zeroes ph once per call. */
static void split_phases(const plane_geom *g, const float *x, int64_t sh, float *ph)
{
    int64_t s = g->s;
    FOR_PHASE_ROWS(g, ih, a, r) {
        const float *src = x + ih * sh;
        float *row = ph + (a * s * g->hq + r) * g->wq;     /* phase (a, 0), row r */
        /* d[q]: where x[ih, q::s] goes (for q < s, s <= 4) */
        float *d[4] = {row + g->col[0], row + g->col[1], row + g->col[2], row + g->col[3]};
        if (s == 1) copy_run(d[0], src, g->w);
        else if (s == 2) deinterleave2_run(d, src, g->w);
        else if (s == 4) deinterleave4_run(d, src, g->w);
        else
            for (int64_t q = 0; q < s && q < g->w; q++) {
                float *dq = row + column_start(g, q);
                for (int64_t t = 0; t * s + q < g->w; t++) dq[t] = src[t * s + q];
            }
    }
}

/* The inverse: x (H, W) contiguous <- the inside of the phases; with
 * g->stream, in streaming stores. */
static void merge_phases(const plane_geom *g, const float *ph, float *x)
{
    int64_t s = g->s;
    FOR_PHASE_ROWS(g, ih, a, r) {
        float *dst = x + ih * g->w;
        const float *row = ph + (a * s * g->hq + r) * g->wq;
        const float *e[4] = {row + g->col[0], row + g->col[1], row + g->col[2], row + g->col[3]};
        if (s == 1 && g->stream) stream_run(dst, e[0], g->w);
        else if (s == 1) copy_run(dst, e[0], g->w);
        else if (s == 2) interleave2_run(dst, e, g->w, g->stream);
        else if (s == 4) interleave4_run(dst, e, g->w, g->stream);
        else
            for (int64_t q = 0; q < s && q < g->w; q++) {
                const float *eq = row + column_start(g, q);
                for (int64_t t = 0; t * s + q < g->w; t++) dst[t * s + q] = eq[t];
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
        for (int64_t j = 0; j < k; j++, row += ho * wo)
            copy_rows(row, ph + phase_offset(i, j, s, hq, wq), ho, wo, wq, stream);
}

/* The phases (zeroed by the caller) += cols (k*k, L), row stride sr. */
static void cols_to_phases(const float *cols, int64_t sr, float *ph, int64_t k,
                           int64_t s, int64_t hq, int64_t wq, int64_t ho, int64_t wo)
{
    const float *row = cols;                                 /* (Ho, Wo) */
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++, row += sr)
            add_rows(ph + phase_offset(i, j, s, hq, wq), wq, row, ho, wo);
}

/* Outputs of 8 MiB or more (a quarter of this L3) are streamed, when their
 * rows are whole aligned vectors (the C backend's outputs are 64-byte
 * aligned): measured faster here, as most of such an output leaves the
 * cache before it is used. */
#define STREAM_BYTES (8.0 * 1024 * 1024)

static plane_geom geometry(int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    plane_geom g = {h, w, k, s, p, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1,
                    (h + 2 * p + s - 1) / s, (w + 2 * p + s - 1) / s, 0, {0, 0, 0, 0}};
    for (int64_t q = 0; q < s && q < 4; q++) g.col[q] = column_start(&g, q);
    return g;
}

/* One plane each; ph: this thread's phases, NULL when out of memory (the
 * reference takes the plane then). */
static void unfold_one(const plane_geom *g, float *ph, const float *x, int64_t sh, float *cols)
{
    if (!ph) {
        int64_t sx[4] = {0, 0, sh, 1};
        unfold_ref(x, sx, cols, 1, 1, g->h, g->w, g->k, g->s, g->p);
        return;
    }
    split_phases(g, x, sh, ph);
    phases_to_cols(ph, cols, g->k, g->s, g->hq, g->wq, g->ho, g->wo, g->stream);
}

static void fold_one(const plane_geom *g, float *ph, const float *cols, int64_t sr, float *x)
{
    if (!ph) {
        int64_t sc[3] = {0, sr, 1};
        fold_ref(cols, sc, x, 1, 1, g->h, g->w, g->k, g->s, g->p);
        return;
    }
    zero_run(ph, g->s * g->s * g->hq * g->wq);
    cols_to_phases(cols, sr, ph, g->k, g->s, g->hq, g->wq, g->ho, g->wo);
    merge_phases(g, ph, x);
}

/* unfold: x (B, C, H, W), strides sx -> cols (B, C*k*k, L), contiguous;
 * B*C planes shared by the threads, each unfold_one. */
void FAST(unfold)(const float *x, const int64_t *sx, float *cols,
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
    int64_t nph = s * s * g.hq * g.wq;                        /* floats of the phases */
    g.stream = 4.0 * (double)planes * (double)plane >= STREAM_BYTES
               && (uintptr_t)cols % 32 == 0 && g.wo % 8 == 0;   /* whole aligned rows */
    int nt = minit2t_threads_for(4.0 * (double)planes * (double)(plane + h * w));
    int64_t chunk = MAX(1, planes / (16 * nt));                /* planes per hand-out */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *ph = minit2t_scratch(SCRATCH_PHASES, (size_t)nph);
        if (ph) zero_run(ph, nph);       /* the padding; split_phases fills the rest */
#pragma omp for schedule(dynamic, chunk)
        for (int64_t t = 0; t < planes; t++)
            unfold_one(&g, ph, x + t / nc * sx[0] + t % nc * sx[1], sx[2], cols + t * plane);
        _mm_sfence();                /* streamed stores done before the barrier */
    }
}

/* fold: cols (B, C*k*k, L), strides scol -> x (B, C, H, W), contiguous;
 * B*C planes shared by the threads, each fold_one. */
void FAST(fold)(const float *cols, const int64_t *scol, float *x,
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
        float *ph = minit2t_scratch(SCRATCH_PHASES, (size_t)(s * s * g.hq * g.wq));
#pragma omp for schedule(dynamic, chunk)
        for (int64_t t = 0; t < planes; t++)
            fold_one(&g, ph, cols + t / nc * scol[0] + t % nc * k * k * scol[1], scol[1],
                     x + t * h * w);
        _mm_sfence();
    }
}
