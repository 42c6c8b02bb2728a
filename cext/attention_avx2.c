/* The AVX2 + FMA attention: attention_fast.h compiled for that ISA in the
 * vocabulary of vec_avx2.h, under the names attention_*_avx2 (arguments as
 * in minit2t.h). The register tile: 6 rows by up to 2 vectors of columns
 * (12 accumulators of the 16 ymm registers; 4 rows measured about 5% slower
 * per head at the backbone's shape). The dispatchers (attention.c) call these only on
 * CPUs that have the ISA. */
#include "runtime.h"

#if MINIT2T_X86
#pragma GCC target("avx2,fma")
#include "vec_avx2.h"
#define ATTN_RB 6
#define ATTN_NV 2
#include "attention_fast.h"

int attention_forward_avx2(const float *qkv, const float *kbias, float *out, float *p,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_fast(0, qkv, kbias, NULL, p, NULL, out, B, N, h, d, scale);
}

int attention_backward_avx2(const float *qkv, const float *p, const float *g, float *gqkv,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_fast(1, qkv, NULL, p, NULL, g, gqkv, B, N, h, d, scale);
}

#endif /* MINIT2T_X86; elsewhere not_x86.c defines these names */
