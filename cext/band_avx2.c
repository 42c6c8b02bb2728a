/* The AVX2 + FMA band products: band_fast.h compiled for that ISA in the
 * vocabulary of vec_avx2.h, under the names band_*_avx2 (arguments as in
 * minit2t.h). The dispatchers (band.c) call them only on CPUs that have it. */
#include "runtime.h"

#if MINIT2T_X86
#pragma GCC target("avx2,fma")
#include "vec_avx2.h"
#include "band_fast.h"

void band_dot_avx2(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    band_dot_fast(a, b, s, nb, T, d, w);
}

void band_mix_avx2(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    band_mix_fast(p, v, y, nb, T, d, w);
}

void band_mix_t_avx2(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    band_mix_t_fast(p, a, y, nb, T, d, w);
}

#endif /* MINIT2T_X86; elsewhere not_x86.c defines these names */
