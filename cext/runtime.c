/* Run-time choices: instruction set, thread count and scratch memory.
 *
 * The library is compiled for baseline x86-64; only the AVX2 / AVX-512
 * versions (gemm_avx2.c, gemm_avx512.c and the *_fast.c templates, compiled
 * once per ISA: fast_isa.h) are compiled for those ISAs, by GCC target
 * pragmas, and the dispatchers call them only when this CPU (and OS)
 * supports them, so one build runs on any x86-64. Other CPUs run the
 * references. */
#include <stdlib.h>
#include "runtime.h"
#if defined(_OPENMP) && defined(__unix__)
#include <pthread.h>
#endif

static int g_cpu_isa = -1;     /* detected once */
static int g_cap = ISA_AVX512; /* minit2t_set_isa's cap */
static int g_threads = 1;

int minit2t_cpu_isa(void)
{
    if (g_cpu_isa < 0) {
        int isa = ISA_SCALAR;
#if MINIT2T_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            isa = ISA_AVX2;
        if (isa == ISA_AVX2 && __builtin_cpu_supports("avx512f"))
            isa = ISA_AVX512;
#endif
        g_cpu_isa = isa;
    }
    return g_cpu_isa;
}

int minit2t_isa(void) { return MIN(minit2t_cpu_isa(), g_cap); }

int minit2t_set_isa(int level)
{
    g_cap = MAX(ISA_SCALAR, MIN(level, ISA_AVX512));
    return minit2t_isa();
}

/* GNU OpenMP's thread pool does not survive fork(): a child that opened a
 * parallel region would hang. A forked child therefore runs on one thread
 * (a team of one never touches the pool). */
static int g_forked = 0;
#if defined(_OPENMP) && defined(__unix__)
static void on_fork_child(void) { g_forked = 1; }
__attribute__((constructor)) static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}
#endif

void minit2t_set_num_threads(int n) { g_threads = MAX(n, 1); }
int minit2t_get_num_threads(void) { return g_forked ? 1 : g_threads; }

/* Waking a sleeping thread costs microseconds: below ~1 MFLOP (or 1 MB)
 * one thread is faster. */
int minit2t_threads_for(double work)
{
#ifdef _OPENMP
    int n = (int)(work / 1e6);
    return MAX(1, MIN(n, minit2t_get_num_threads()));
#else
    (void)work;
    return 1;
#endif
}

static _Thread_local float *t_buf[SCRATCH_SLOTS];
static _Thread_local size_t t_cap[SCRATCH_SLOTS];

float *minit2t_scratch(enum scratch_slot slot, size_t nfloats)
{
    if (nfloats > t_cap[slot]) {
        free(t_buf[slot]);
        size_t bytes = (nfloats * sizeof(float) + 63) / 64 * 64;
        t_buf[slot] = aligned_alloc(64, bytes);
        t_cap[slot] = t_buf[slot] ? nfloats : 0;
    }
    return t_buf[slot];
}
