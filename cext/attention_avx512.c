/* The AVX-512F attention: attention_fast.h compiled for that ISA in the
 * vocabulary of vec_avx512.h, under the names attention_*_avx512 (arguments as
 * in minit2t.h). The register tile: 6 rows by up to 4 vectors of columns
 * (24 accumulators). The dispatchers (attention.c) call these only on
 * CPUs that have the ISA. */
#include "runtime.h"

#if MINIT2T_X86
#pragma GCC target("avx512f,avx2,fma")
#include "vec_avx512.h"
#define ATTN_RB 6
#define ATTN_NV 4
#include "attention_fast.h"

int attention_forward_avx512(const float *qkv, const float *kbias, float *out, float *p,
                             int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_fast(0, qkv, kbias, NULL, p, NULL, out, B, N, h, d, scale);
}

int attention_backward_avx512(const float *qkv, const float *p, const float *g, float *gqkv,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_fast(1, qkv, NULL, p, NULL, g, gqkv, B, N, h, d, scale);
}

#endif /* MINIT2T_X86; elsewhere not_x86.c defines these names */
