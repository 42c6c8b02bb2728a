/* The ISA a vectorised template is compiled for. Each template
 * (im2col_fast.c, fused_fast.c, band_fast.c, attention_fast.c) is written
 * once and compiled twice: build.py compiles, per template and ISA, a
 * generated file that holds only
 *     #include "runtime.h"
 *     #if MINIT2T_X86
 *     #define FAST_AVX512 1             (0: the AVX2 + FMA build)
 *     #include "band_fast.c"
 *     #endif
 * The template includes this header first. It sets the target of the rest
 * of the file (GCC's target pragma), includes the vector vocabulary of that
 * ISA (vec_avx2.h / vec_avx512.h: VF, VW, VLOAD, VFMA, ...), and defines
 * FAST(name), the name of that ISA's version of a kernel:
 *     void FAST(band_dot)(...)   defines band_dot_avx512 or band_dot_avx2,
 * with the signature of band_dot_ref and band_dot in minit2t.h. */
#ifndef MINIT2T_FAST_ISA_H
#define MINIT2T_FAST_ISA_H
#include "runtime.h"

#if FAST_AVX512
#pragma GCC target("avx512f,avx2,fma")
#include "vec_avx512.h"
#define FAST(name) name##_avx512
#else
#pragma GCC target("avx2,fma")
#include "vec_avx2.h"
#define FAST(name) name##_avx2
#endif

#endif
