/* Runs of floats for the fast unfold/fold (im2col_fast.h): copy, zero,
 * add, and the gathers / interleaves of stride 2, in AVX2 intrinsics (the
 * including file is compiled for AVX2 or AVX-512); n is a run length.
 * They are short inline loops: for runs of a few floats a call to memcpy /
 * memset costs more than the copy, so GCC must not turn the scalar tails
 * back into such calls (the pragma). */
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

/* dst[0:n] = src[0:2n:2]. A vector takes src[2t : 2t+8] and
 * src[2t+7 : 2t+15] (never src[2t+15], which may lie past the input) and
 * keeps the even floats of the first, the odd ones of the second. */
static inline void even_run(float *dst, const float *src, int64_t n)
{
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 lo = _mm256_loadu_ps(src + 2 * t), hi = _mm256_loadu_ps(src + 2 * t + 7);
        __m256 ev = _mm256_shuffle_ps(lo, hi, 0xD8);   /* s0 s2 s8 s10 | s4 s6 s12 s14 */
        ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8));
        _mm256_storeu_ps(dst + t, ev);
    }
    for (; t < n; t++) dst[t] = src[2 * t];
}

/* dst[0:n] = src[0:ns:s], any stride */
static inline void strided_run(float *dst, const float *src, int64_t n, int64_t s)
{
    if (s == 1) copy_run(dst, src, n);
    else if (s == 2) even_run(dst, src, n);
    else for (int64_t t = 0; t < n; t++) dst[t] = src[t * s];
}

/* dst[2t] = e[t], dst[2t + 1] = o[t] for t < n */
static inline void interleave_run(float *dst, const float *e, const float *o, int64_t n)
{
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 a = _mm256_loadu_ps(e + t), b = _mm256_loadu_ps(o + t);
        __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
        _mm256_storeu_ps(dst + 2 * t, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(dst + 2 * t + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
    for (; t < n; t++) {
        dst[2 * t] = e[t];
        dst[2 * t + 1] = o[t];
    }
}
