/* What every kernel file shares: the ISA levels and the test for x86-64,
 * the thread count, and the per-thread scratch buffers (runtime.c).
 * Legend as in minit2t.h. */
#ifndef MINIT2T_RUNTIME_H
#define MINIT2T_RUNTIME_H
#include <stddef.h>
#include <stdint.h>
#include "minit2t.h"

/* MINIT2T_X86 is 1 where the AVX2 / AVX-512 versions are compiled: x86-64
 * with GCC or clang (their target pragmas and intrinsics). Elsewhere, or
 * when built with -DMINIT2T_PORTABLE (a check of that build on x86), it is
 * 0: the vectorised files compile to nothing, the dispatchers call only the
 * references (DISPATCH), and the module's _avx2 / _avx512 names are the
 * references too (build.py). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MINIT2T_PORTABLE)
#define MINIT2T_X86 1
#else
#define MINIT2T_X86 0
#endif

/* The levels of minit2t_isa: which version of a kernel the dispatchers call.
 * The float32 kernels stop at AVX-512F (a level above runs their _avx512);
 * the two levels above it are the bf16 GEMM's (gemm_bf16.c): AVX512_BF16
 * (vdpbf16ps, with AVX-512BW/VL) and AMX (tiles, AMX-BF16). */
enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_AVX512_BF16 = 3, ISA_AMX = 4 };

/* A dispatcher's call: name_avx512 (at AVX512 or above), name_avx2 or
 * name_ref by the level isa (a variable: it is read twice), with args, the
 * parenthesised arguments; its value is that call's. E.g.
 *     int isa = minit2t_isa();
 *     DISPATCH(isa, band_dot, (a, b, s, nb, T, d, w));
 * Where the fast versions are not compiled it calls name_ref, always. */
#if MINIT2T_X86
#define DISPATCH(isa, name, args) ((isa) >= ISA_AVX512 ? name##_avx512 args \
                                   : (isa) == ISA_AVX2 ? name##_avx2 args : name##_ref args)
#else
#define DISPATCH(isa, name, args) ((void)(isa), name##_ref args)
#endif

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

/* The per-thread scratch buffers, one per slot, so that buffers used at the
 * same time never share one. Sizes in floats (Legend of gemm_loops.c and
 * im2col_fast.c, attention_fast.c). */
enum scratch_slot {
    SCRATCH_B_PANEL,    /* GEMM: the packed B panel, KC x NC (shared by a team) */
    SCRATCH_A_BLOCK,    /* GEMM: a packed A block, (MC + MR) x KC per thread */
    SCRATCH_EDGE_A,     /* GEMM: MR rows of A, zero-padded, for edge tiles; MR x KC */
    SCRATCH_C_BLOCK,    /* GEMM with GELU: a block of C in whole tiles, (MC + MR) x NC */
    SCRATCH_PHASES,     /* unfold / fold: one plane's s*s phases, s*s x Hq x Wq */
    SCRATCH_ATTN_T,     /* attention: one head's k or v transposed, d x N */
    SCRATCH_ATTN_S,     /* attention: one head's S and P (forward) or gS (backward), N x Np */
    SCRATCH_SLOTS       /* how many */
};

/* The calling thread's buffer `slot` of at least nfloats floats, 64-byte
 * aligned, grown (never shrunk) on demand; its contents are not kept when
 * it grows. NULL when memory runs out. */
float *minit2t_scratch(enum scratch_slot slot, size_t nfloats);

/* How many threads are worth waking for `work` (flops or bytes moved). */
int minit2t_threads_for(double work);

/* The calling thread's number in its OpenMP team (0 outside one). */
int minit2t_thread_id(void);

/* Whether this process may use AMX tiles: on Linux it asks the kernel for
 * the tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM) the first time
 * it is called, and answers that same reply ever after (1: granted). */
int minit2t_amx_ready(void);

#endif
