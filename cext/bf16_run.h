/* bf16 rounding of a run of floats in the vector vocabulary of the
 * template that includes it (after fast_isa.h): shared by gemm_bf16_fast.c
 * (its packing) and attention_fast.c (its bf16 mode). VBF16 rounds one
 * vector as round_bf16 in bf16.h rounds one float. */
#ifndef MINIT2T_BF16_RUN_H
#define MINIT2T_BF16_RUN_H

/* d[0:n] = bf16(s[0:n]), d may be s. */
static inline void round_run(const float *s, float *d, int64_t n)
{
    int64_t j = 0;
    for (; j + VW <= n; j += VW) VSTORE(d + j, VBF16(VLOAD(s + j)));
    if (j < n) {
        VTAIL m = VTAILMASK(n - j);
        VSTORET(d + j, m, VBF16(VLOADT(s + j, m, 0.0f)));
    }
}

#endif
