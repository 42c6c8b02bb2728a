/* Runs of floats for the fast unfold / fold (im2col_fast.c): copy, zero,
 * add, blocks of runs, and the splits of a row into its column phases at
 * stride 2 and 4 and their inverses; n is a run length.
 *
 * AVX2 intrinsics (256-bit), in both builds: the AVX-512 build of
 * im2col_fast.c includes this file too, on purpose. The runs are rows of Wo or W floats, a few vectors
 * long; the 8-float shuffles of the phase splits are what stride 2 and 4
 * need, and an AVX-512 CPU runs them as they are.
 *
 * They are short inline loops: for runs of a few floats a call to memcpy /
 * memset costs more than the copy, so GCC must not turn the scalar tails
 * back into such calls (the pragma, in force for the rest of the including
 * file). */
#ifndef MINIT2T_IM2COL_RUNS_H
#define MINIT2T_IM2COL_RUNS_H
#pragma GCC optimize("no-tree-loop-distribute-patterns")

/* dst[0:n] = src[0:n] */
static inline void copy_run(float *dst, const float *src, int64_t n)
{
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(dst + t, _mm256_loadu_ps(src + t));
    if (t + 4 <= n) {
        _mm_storeu_ps(dst + t, _mm_loadu_ps(src + t));
        t += 4;
    }
    for (; t < n; t++) dst[t] = src[t];
}

/* copy_run with streaming stores, which go around the cache and skip the
 * read of each destination line that a plain store costs: for outputs too
 * large to be read back from the cache anyway. dst is 32-byte aligned and
 * n a multiple of 8 (see STREAM_BYTES); the caller fences. */
static inline void stream_run(float *dst, const float *src, int64_t n)
{
    for (int64_t t = 0; t < n; t += 8) _mm256_stream_ps(dst + t, _mm256_loadu_ps(src + t));
}

/* add_run for n a multiple of 8: no tail tests in the loop of a short run */
static inline void add_run8(float *dst, const float *src, int64_t n)
{
    for (int64_t t = 0; t < n; t += 8)
        _mm256_storeu_ps(dst + t, _mm256_add_ps(_mm256_loadu_ps(dst + t),
                                                _mm256_loadu_ps(src + t)));
}

/* dst[0:n] = 0 */
static inline void zero_run(float *dst, int64_t n)
{
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(dst + t, _mm256_setzero_ps());
    for (; t < n; t++) dst[t] = 0.0f;
}

/* dst[0:n] += src[0:n] */
static inline void add_run(float *dst, const float *src, int64_t n)
{
    int64_t t = 0;
    for (; t + 8 <= n; t += 8)
        _mm256_storeu_ps(dst + t, _mm256_add_ps(_mm256_loadu_ps(dst + t),
                                                _mm256_loadu_ps(src + t)));
    if (t + 4 <= n) {
        _mm_storeu_ps(dst + t, _mm_add_ps(_mm_loadu_ps(dst + t), _mm_loadu_ps(src + t)));
        t += 4;
    }
    for (; t < n; t++) dst[t] += src[t];
}

/* The 64-bit pairs of v in the order 0 2 1 3 */
static inline __m256 pairs_0213(__m256 v)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

/* A row split into its s column phases, s = 2 or 4: d[q][t] = src[t*s + q]
 * for t*s + q < n; reads src[0:n] only. At s = 2 a vector pair of src
 * gives one vector of evens and one of odds (in-lane shuffles, then a
 * cross-lane permute); at s = 4 four vectors of src, read as an (8, 4)
 * matrix, are transposed to (4, 8) (see transpose4_lanes). */
static inline void deinterleave2_run(float *const *d, const float *src, int64_t n)
{
    int64_t t = 0;
    for (; 2 * t + 16 <= n; t += 8) {
        __m256 a = _mm256_loadu_ps(src + 2 * t), b = _mm256_loadu_ps(src + 2 * t + 8);
        __m256 ev = _mm256_shuffle_ps(a, b, 0x88);     /* s0 s2 s8 s10 | s4 s6 s12 s14 */
        __m256 od = _mm256_shuffle_ps(a, b, 0xDD);     /* s1 s3 s9 s11 | s5 s7 s13 s15 */
        _mm256_storeu_ps(d[0] + t, pairs_0213(ev));
        _mm256_storeu_ps(d[1] + t, pairs_0213(od));
    }
    for (int64_t i = 2 * t; i < n; i++) d[i & 1][i >> 1] = src[i];
}

/* The 4 x 4 transposes of the rows v[0..3], within each 128-bit lane. */
static inline void transpose4_lanes(__m256 *v)
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    v[0] = _mm256_shuffle_ps(t0, t2, 0x44);             /* v0[0] v1[0] v2[0] v3[0] */
    v[1] = _mm256_shuffle_ps(t0, t2, 0xEE);             /* v0[1] v1[1] v2[1] v3[1] */
    v[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}

static inline void deinterleave4_run(float *const *d, const float *src, int64_t n)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t t = 0;
    for (; 4 * t + 32 <= n; t += 8) {
        __m256 v[4];                  /* v[q]: rows 2q, 2q + 1 of src (8, 4) */
        for (int q = 0; q < 4; q++) v[q] = _mm256_loadu_ps(src + 4 * t + 8 * q);
        transpose4_lanes(v);          /* v[q]: column q, rows 0 2 4 6 | 1 3 5 7 */
        for (int q = 0; q < 4; q++)
            _mm256_storeu_ps(d[q] + t, _mm256_permutevar8x32_ps(v[q], order));
    }
    for (int64_t i = 4 * t; i < n; i++) d[i & 3][i >> 2] = src[i];
}

static inline void store_or_stream(float *dst, __m256 v, int stream)
{
    if (stream) _mm256_stream_ps(dst, v);
    else _mm256_storeu_ps(dst, v);
}

/* The inverses: dst[t*s + q] = e[q][t] for t*s + q < n, s = 2 or 4. With
 * stream the whole vectors are streamed (dst 32-byte aligned; the caller
 * fences). */
static inline void interleave2_run(float *dst, const float *const *e, int64_t n, int stream)
{
    int64_t t = 0;
    for (; 2 * t + 16 <= n; t += 8) {
        __m256 a = _mm256_loadu_ps(e[0] + t), b = _mm256_loadu_ps(e[1] + t);
        __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
        store_or_stream(dst + 2 * t, _mm256_permute2f128_ps(lo, hi, 0x20), stream);
        store_or_stream(dst + 2 * t + 8, _mm256_permute2f128_ps(lo, hi, 0x31), stream);
    }
    for (int64_t i = 2 * t; i < n; i++) dst[i] = e[i & 1][i >> 1];
}

static inline void interleave4_run(float *dst, const float *const *e, int64_t n, int stream)
{
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    int64_t t = 0;
    for (; 4 * t + 32 <= n; t += 8) {
        __m256 v[4];                  /* v[q]: e[q][t:t+8] as t 0 2 4 6 | 1 3 5 7 */
        for (int q = 0; q < 4; q++)
            v[q] = _mm256_permutevar8x32_ps(_mm256_loadu_ps(e[q] + t), order);
        transpose4_lanes(v);          /* v[m]: dst[4t + 8m : 4t + 8m + 8] */
        for (int q = 0; q < 4; q++) store_or_stream(dst + 4 * t + 8 * q, v[q], stream);
    }
    for (int64_t i = 4 * t; i < n; i++) dst[i] = e[i & 3][i >> 2];
}

/* dst (m, n) contiguous <- m runs of n floats from src, row stride ss;
 * streamed when stream (then dst is 32-byte aligned, n a multiple of 8 and
 * the caller fences). Runs of one vector (n = 8: the Wo of 16-wide planes
 * at stride 2) get a loop of their own, with no tail tests. */
static inline void copy_rows(float *dst, const float *src, int64_t m, int64_t n, int64_t ss,
                             int stream)
{
    if (stream && n == 8)
        for (int64_t r = 0; r < m; r++)
            _mm256_stream_ps(dst + 8 * r, _mm256_loadu_ps(src + r * ss));
    else if (stream)
        for (int64_t r = 0; r < m; r++) stream_run(dst + r * n, src + r * ss, n);
    else if (n == 8)
        for (int64_t r = 0; r < m; r++)
            _mm256_storeu_ps(dst + 8 * r, _mm256_loadu_ps(src + r * ss));
    else
        for (int64_t r = 0; r < m; r++) copy_run(dst + r * n, src + r * ss, n);
}

/* m runs of n floats at dst, row stride sd, += src (m, n) contiguous */
static inline void add_rows(float *dst, int64_t sd, const float *src, int64_t m, int64_t n)
{
    if (n == 8)
        for (int64_t r = 0; r < m; r++)
            _mm256_storeu_ps(dst + r * sd, _mm256_add_ps(_mm256_loadu_ps(dst + r * sd),
                                                         _mm256_loadu_ps(src + 8 * r)));
    else if (n % 8 == 0)
        for (int64_t r = 0; r < m; r++) add_run8(dst + r * sd, src + r * n, n);
    else
        for (int64_t r = 0; r < m; r++) add_run(dst + r * sd, src + r * n, n);
}

#endif
