/* The fast fused kernels (the sum of two arrays, row sums, GELU, layer
 * norm, softmax; the strided copy in copy_fast.h, included at the end),
 * written once in the vector vocabulary of vec_avx2.h and compiled once per
 * ISA (fast_isa.h): FAST(gelu_forward) is gelu_forward_avx2 /
 * gelu_forward_avx512, and so for each. Legend and argument shapes as in
 * fused.c / minit2t.h: R rows, D or N the row length, n elements.
 *
 * Rows are independent, so threads take runs of rows (or of elements);
 * layer norm's weight / bias gradients are summed per fixed chunk of rows
 * and the chunks added in order, so the result is the same on any number
 * of threads.
 *
 * The outputs of the sum, GELU and layer norm (forward and backward) are
 * written by streaming stores when they are STREAM_BYTES or more and start on a
 * 64-byte line, as the GEMM writes its C (gemm_blocking.h): a store that
 * misses the cache reads its line from memory first, and an output this
 * large has left the caches before the op that reads it runs (t2t_vit_cifar's
 * inference at batch 256, AMD EPYC, 2 threads, the builds with and without
 * in one process in turn: benchmarks/HISTORY.md). */
#include "fast_isa.h"
#include <math.h>
#include <stdlib.h>
#include "vmath.h"
#include "softmax_rows.h"

#define BLOCK 4096          /* elements per work item of the GELU loops */
#define LN_CHUNK 32         /* rows per partial sum of layer norm's dw, db */
#define STREAM_BYTES (4 << 20)

/* Whether an output y of n floats is written by streaming stores (see above). */
static inline int streamed(const float *y, int64_t n)
{
    return n * (int64_t)sizeof(float) >= STREAM_BYTES && (uintptr_t)y % 64 == 0;
}

/* v into y (a whole vector): a streaming store with `stream` (y on a vector
 * boundary); the caller then fences (_mm_sfence) before the threads meet. */
static inline void store_out(float *y, VF v, int stream)
{
    if (stream) VSTREAM(y, v);
    else VSTORE(y, v);
}

static inline VF gelu_v(VF x)
{
    VF pdf;
    return VMUL(x, vnormcdf(x, &pdf));
}

static inline VF gelu_grad_v(VF g, VF x)
{
    VF pdf, cdf = vnormcdf(x, &pdf);
    return VMUL(g, VFMA(x, pdf, cdf));                     /* g (Phi + x phi) */
}

/* y = a + b: memory-bound, so threads take blocks of 16 * BLOCK floats. */
void FAST(add_arrays)(const float *a, const float *b, float *y, int64_t n)
{
    int nt = minit2t_threads_for(3.0 * (double)n), stream = streamed(y, n);
    int64_t blocks = (n + 16 * BLOCK - 1) / (16 * BLOCK);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < blocks; t++) {
        int64_t i = t * 16 * BLOCK, end = MIN(n, i + 16 * BLOCK);
        for (; i + VW <= end; i += VW) store_out(y + i, VADD(VLOAD(a + i), VLOAD(b + i)), stream);
        for (; i < end; i++) y[i] = a[i] + b[i];
        if (stream) _mm_sfence();
    }
}

/* y (d,) = the sum of `chunks` partial rows part[c * stride .. + d), added in
 * chunk order: how the chunked sums (sum_rows, layer norm's dw, db) end the
 * same on any number of threads. */
static void sum_chunks(const float *part, int64_t chunks, int64_t stride, int64_t d, float *y)
{
    for (int64_t j = 0; j < d; j++) y[j] = 0.0f;
    for (int64_t c = 0; c < chunks; c++)
        for (int64_t j = 0; j < d; j++) y[j] += part[c * stride + j];
}

/* One chunk of `rows` rows summed in row order into part (d,), columns 4
 * vectors at a time (the tail masked). */
static void sum_rows_chunk(const float *x, int64_t sx, int64_t rows, int64_t d, float *part)
{
    int64_t j = 0;
    for (; j + 4 * VW <= d; j += 4 * VW) {
        VF s0 = VSET1(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t i = 0; i < rows; i++) {
            const float *xi = x + i * sx + j;
            s0 = VADD(s0, VLOAD(xi));
            s1 = VADD(s1, VLOAD(xi + VW));
            s2 = VADD(s2, VLOAD(xi + 2 * VW));
            s3 = VADD(s3, VLOAD(xi + 3 * VW));
        }
        VSTORE(part + j, s0);
        VSTORE(part + j + VW, s1);
        VSTORE(part + j + 2 * VW, s2);
        VSTORE(part + j + 3 * VW, s3);
    }
    for (; j < d; j += VW) {
        VTAIL m = VTAILMASK(MIN(VW, d - j));
        VF s = VSET1(0.0f);
        for (int64_t i = 0; i < rows; i++) s = VADD(s, VLOADT(x + i * sx + j, m, 0.0f));
        VSTORET(part + j, m, s);
    }
}

/* y (D,) = the sum of x's R rows (row stride sx): threads take chunks of
 * LN_CHUNK rows, each summed into its own partial row; the partials are
 * then added in chunk order (sum_chunks), so the result does not depend on
 * the thread count. */
void FAST(sum_rows)(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    int64_t chunks = (r + LN_CHUNK - 1) / LN_CHUNK;
    float *part = malloc(((size_t)chunks * (size_t)d + 1) * sizeof(float));
    if (!part) {                                  /* out of memory: the loops need none */
        sum_rows_ref(x, sx, y, r, d);
        return;
    }
    int nt = minit2t_threads_for(2.0 * (double)r * (double)d);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t c = 0; c < chunks; c++)
        sum_rows_chunk(x + c * LN_CHUNK * sx, sx, MIN(LN_CHUNK, r - c * LN_CHUNK), d, part + c * d);
    sum_chunks(part, chunks, d, d, y);
    free(part);
}

void FAST(gelu_forward)(const float *x, float *y, int64_t n)
{
    int nt = minit2t_threads_for(40.0 * (double)n), stream = streamed(y, n);
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < blocks; t++) {
        int64_t i = t * BLOCK, end = MIN(n, i + BLOCK);
        for (; i + 2 * VW <= end; i += 2 * VW) {         /* two independent chains */
            VF a = gelu_v(VLOAD(x + i)), b = gelu_v(VLOAD(x + i + VW));
            store_out(y + i, a, stream);
            store_out(y + i + VW, b, stream);
        }
        for (; i + VW <= end; i += VW) store_out(y + i, gelu_v(VLOAD(x + i)), stream);
        if (i < end) {
            VTAIL m = VTAILMASK(end - i);
            VSTORET(y + i, m, gelu_v(VLOADT(x + i, m, 0.0f)));
        }
        if (stream) _mm_sfence();
    }
}

/* GELU over a block of rows on the calling thread alone, with no OpenMP
 * construct: the GEMM's epilogue runs it inside its own threads, on a block
 * of C just computed (gemm_act_block), and with h copies the block there.
 * With stream, rows that start on a 64-byte line are written by streaming
 * stores. */
void FAST(gelu_block)(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                      int64_t rows, int64_t cols, int stream)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * rx;                       /* row r: (cols,) */
        float *yr = y + r * ry, *hr = h ? h + r * rh : NULL;
        int s = stream && (uintptr_t)yr % 64 == 0, sh = stream && (uintptr_t)hr % 64 == 0;
        int64_t i = 0;
        for (; i + VW <= cols; i += VW) {
            VF v = VLOAD(xr + i);
            if (hr) store_out(hr + i, v, sh);
            store_out(yr + i, gelu_v(v), s);
        }
        if (i < cols) {
            VTAIL m = VTAILMASK(cols - i);
            VF v = VLOADT(xr + i, m, 0.0f);
            if (hr) VSTORET(hr + i, m, v);
            VSTORET(yr + i, m, gelu_v(v));
        }
    }
    if (stream) _mm_sfence();
}

/* x + z over a block of rows on the calling thread alone, as gelu_block:
 * the epilogue of a product with a residual (sgemm_bias_add). */
void FAST(add_block)(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                     int64_t rows, int64_t cols, int stream)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * rx, *zr = z + r * rz;     /* row r: (cols,) */
        float *yr = y + r * ry;
        int s = stream && (uintptr_t)yr % 64 == 0;
        int64_t i = 0;
        for (; i + VW <= cols; i += VW) store_out(yr + i, VADD(VLOAD(xr + i), VLOAD(zr + i)), s);
        if (i < cols) {
            VTAIL m = VTAILMASK(cols - i);
            VSTORET(yr + i, m, VADD(VLOADT(xr + i, m, 0.0f), VLOADT(zr + i, m, 0.0f)));
        }
    }
    if (stream) _mm_sfence();
}

void FAST(gelu_backward)(const float *g, const float *x, float *gx, int64_t n)
{
    int nt = minit2t_threads_for(40.0 * (double)n), stream = streamed(gx, n);
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < blocks; t++) {
        int64_t i = t * BLOCK, end = MIN(n, i + BLOCK);
        for (; i + VW <= end; i += VW) store_out(gx + i, gelu_grad_v(VLOAD(g + i), VLOAD(x + i)), stream);
        if (i < end) {
            VTAIL m = VTAILMASK(end - i);
            VSTORET(gx + i, m, gelu_grad_v(VLOADT(g + i, m, 0.0f), VLOADT(x + i, m, 0.0f)));
        }
        if (stream) _mm_sfence();
    }
}

/* gx = g GELU'(x) over R rows of D, and y (D,) = the sum of gx's rows (a
 * Linear's bias gradient after its GELU): gelu_backward, then sum_rows of
 * its output, bit for bit, in one pass. Threads take chunks of LN_CHUNK
 * rows; each lane of a chunk's partial row adds that chunk's rows in row
 * order from zero, as sum_rows_chunk does, and the partials are added in
 * chunk order (sum_chunks). Returns -1 (nothing done) without memory for
 * the partials. */
int FAST(gelu_backward_sum)(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d)
{
    int64_t chunks = (r + LN_CHUNK - 1) / LN_CHUNK;
    float *part = calloc((size_t)chunks * (size_t)d + 1, sizeof(float));
    if (!part) return -1;
    int nt = minit2t_threads_for(40.0 * (double)r * (double)d);
    int stream = streamed(gx, r * d) && d % VW == 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t c = 0; c < chunks; c++) {
        float *pc = part + c * d;                           /* this chunk's partial row */
        for (int64_t i = c * LN_CHUNK; i < MIN(r, (c + 1) * LN_CHUNK); i++) {
            const float *gi = g + i * d, *xi = x + i * d;
            float *oi = gx + i * d;                         /* row i: (D,) */
            int64_t j = 0;
            for (; j + VW <= d; j += VW) {
                VF v = gelu_grad_v(VLOAD(gi + j), VLOAD(xi + j));
                store_out(oi + j, v, stream);
                VSTORE(pc + j, VADD(VLOAD(pc + j), v));
            }
            if (j < d) {
                VTAIL m = VTAILMASK(d - j);
                VF v = gelu_grad_v(VLOADT(gi + j, m, 0.0f), VLOADT(xi + j, m, 0.0f));
                VSTORET(oi + j, m, v);
                VSTORET(pc + j, m, VADD(VLOADT(pc + j, m, 0.0f), v));
            }
        }
        if (stream) _mm_sfence();
    }
    sum_chunks(part, chunks, d, d, y);
    free(part);
    return 0;
}

/* ---- layer norm ----------------------------------------------------------- */

/* One row: y = (x - mu) * rstd * w + b; returns mu, rstd. Tail lanes load
 * mu, so they add nothing to the variance. y's whole vectors by streaming
 * stores with `stream` (D a multiple of VW). */
static inline void ln_row(const float *x, const float *w, const float *b, float eps,
                          int64_t d, float *y, float *mean, float *rstd, int stream)
{
    VF acc = VSET1(0.0f);
    int64_t j = 0;
    for (; j + VW <= d; j += VW) acc = VADD(acc, VLOAD(x + j));
    if (j < d) acc = VADD(acc, VLOADT(x + j, VTAILMASK(d - j), 0.0f));
    float mu = VHSUM(acc) / (float)d;
    VF vm = VSET1(mu), sq = VSET1(0.0f);
    for (j = 0; j + VW <= d; j += VW) {
        VF c = VSUB(VLOAD(x + j), vm);
        sq = VFMA(c, c, sq);
    }
    if (j < d) {
        VF c = VSUB(VLOADT(x + j, VTAILMASK(d - j), mu), vm);
        sq = VFMA(c, c, sq);
    }
    float rs = 1.0f / sqrtf(VHSUM(sq) / (float)d + eps);
    VF vr = VSET1(rs);
    for (j = 0; j + VW <= d; j += VW) {
        VF xh = VMUL(VSUB(VLOAD(x + j), vm), vr);
        store_out(y + j, VFMA(xh, VLOAD(w + j), VLOAD(b + j)), stream);
    }
    if (j < d) {
        VTAIL m = VTAILMASK(d - j);
        VF xh = VMUL(VSUB(VLOADT(x + j, m, mu), vm), vr);
        VSTORET(y + j, m, VFMA(xh, VLOADT(w + j, m, 0.0f), VLOADT(b + j, m, 0.0f)));
    }
    *mean = mu;
    *rstd = rs;
}

void FAST(layer_norm_forward)(const float *x, int64_t sx, const float *w,
                              const float *b, float eps, float *y, float *mean,
                              float *rstd, int64_t r, int64_t d)
{
    int nt = minit2t_threads_for(10.0 * (double)r * (double)d);
    int stream = streamed(y, r * d) && d % VW == 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < r; i++)
            ln_row(x + i * sx, w, b, eps, d, y + i * d, mean + i, rstd + i, stream);
        if (stream) _mm_sfence();
    }
}

/* One row of the backward: gx = rstd (g w - mean(g w) - xh mean(g w xh)),
 * xh = (x - mu) rstd; adds g xh to pw and g to pb. Tail lanes load g = 0. */
static void ln_row_backward(const float *g, const float *x, const float *w, float mu,
                            float rs, int64_t d, float *gx, float *pw, float *pb, int stream)
{
    VF vm = VSET1(mu), vr = VSET1(rs), s1 = VSET1(0.0f), s2 = VSET1(0.0f);
    int64_t j = 0;
    for (; j + VW <= d; j += VW) {
        VF gv = VLOAD(g + j), xh = VMUL(VSUB(VLOAD(x + j), vm), vr);
        VF gw = VMUL(gv, VLOAD(w + j));
        s1 = VADD(s1, gw);
        s2 = VFMA(gw, xh, s2);
        VSTORE(pw + j, VFMA(gv, xh, VLOAD(pw + j)));
        VSTORE(pb + j, VADD(gv, VLOAD(pb + j)));
    }
    if (j < d) {
        VTAIL m = VTAILMASK(d - j);
        VF gv = VLOADT(g + j, m, 0.0f), xh = VMUL(VSUB(VLOADT(x + j, m, mu), vm), vr);
        VF gw = VMUL(gv, VLOADT(w + j, m, 0.0f));
        s1 = VADD(s1, gw);
        s2 = VFMA(gw, xh, s2);
        VSTORET(pw + j, m, VFMA(gv, xh, VLOADT(pw + j, m, 0.0f)));
        VSTORET(pb + j, m, VADD(gv, VLOADT(pb + j, m, 0.0f)));
    }
    VF c1 = VSET1(VHSUM(s1) / (float)d), c2 = VSET1(VHSUM(s2) / (float)d);
    for (j = 0; j + VW <= d; j += VW) {
        VF gw = VMUL(VLOAD(g + j), VLOAD(w + j)), xh = VMUL(VSUB(VLOAD(x + j), vm), vr);
        store_out(gx + j, VMUL(vr, VSUB(VSUB(gw, c1), VMUL(xh, c2))), stream);
    }
    if (j < d) {
        VTAIL m = VTAILMASK(d - j);
        VF gw = VMUL(VLOADT(g + j, m, 0.0f), VLOADT(w + j, m, 0.0f));
        VF xh = VMUL(VSUB(VLOADT(x + j, m, mu), vm), vr);
        VSTORET(gx + j, m, VMUL(vr, VSUB(VSUB(gw, c1), VMUL(xh, c2))));
    }
}

void FAST(layer_norm_backward)(const float *g, int64_t sg, const float *x, int64_t sx,
                               const float *w, const float *mean, const float *rstd,
                               float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    int64_t chunks = (r + LN_CHUNK - 1) / LN_CHUNK;
    float *part = calloc((size_t)chunks * 2 * (size_t)d + 1, sizeof(float));
    if (!part) {                                  /* out of memory: the loops need none */
        layer_norm_backward_ref(g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d);
        return;
    }
    int nt = minit2t_threads_for(14.0 * (double)r * (double)d);
    int stream = streamed(gx, r * d) && d % VW == 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t c = 0; c < chunks; c++) {               /* chunk c: rows, partial sums */
        float *pw = part + 2 * c * d, *pb = pw + d;
        for (int64_t i = c * LN_CHUNK; i < MIN(r, (c + 1) * LN_CHUNK); i++)
            ln_row_backward(g + i * sg, x + i * sx, w, mean[i], rstd[i], d, gx + i * d, pw, pb, stream);
        if (stream) _mm_sfence();
    }
    sum_chunks(part, chunks, 2 * d, d, gw);
    sum_chunks(part + d, chunks, 2 * d, d, gb);
    free(part);
}

/* ---- softmax ---------------------------------------------------------------- */

/* Rows over threads; one row: softmax_row / softmax_row_backward (softmax_rows.h). */

void FAST(softmax_forward)(const float *x, float *y, int64_t r, int64_t n)
{
    int nt = minit2t_threads_for(30.0 * (double)r * (double)n);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < r; i++) softmax_row(x + i * n, y + i * n, n);
}

void FAST(softmax_backward)(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    int nt = minit2t_threads_for(6.0 * (double)r * (double)n);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < r; i++) softmax_row_backward(g + i * n, y + i * n, gx + i * n, n);
}

/* ---- the strided copy: copy_strided_avx2 / _avx512 ------------------------- */

#include "copy_fast.h"
