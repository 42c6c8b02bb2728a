/* Run-time choices: instruction set, thread count and scratch memory.
 *
 * The library is compiled for baseline x86-64; only the AVX2 / AVX-512
 * versions (gemm_avx2.c, gemm_avx512.c, the bf16 GEMM's files and the
 * *_fast.c templates, compiled once per ISA: fast_isa.h) are compiled for
 * those ISAs, by GCC target pragmas, and the dispatchers call them only
 * when this CPU (and OS) supports them, so one build runs on any x86-64.
 * Other CPUs run the references. */
#include <stdlib.h>
#include "runtime.h"
#if defined(_OPENMP) && defined(__unix__)
#include <pthread.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#if MINIT2T_X86
#include <cpuid.h>
#endif
#if MINIT2T_X86 && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023       /* arch_prctl: ask for an XSAVE feature */
#define XFEATURE_XTILEDATA 18            /* the AMX tile registers' state */
#endif

static int g_cpu_isa = -1;     /* detected once */
static int g_cap = ISA_AMX;    /* minit2t_set_isa's cap */
static int g_threads = 1;

#if MINIT2T_X86
/* AMX-TILE and AMX-BF16 (cpuid leaf 7: EDX bits 24 and 22) on an OS that
 * saves the tile state (XCR0 bits 17 and 18: XTILECFG, XTILEDATA). */
static int cpu_has_amx(void)
{
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)))
        return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))      /* OSXSAVE: xgetbv */
        return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & (3u << 17)) == (3u << 17);
}
#endif

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
        if (isa == ISA_AVX512 && __builtin_cpu_supports("avx512bf16") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
            isa = ISA_AVX512_BF16;
        if (isa == ISA_AVX512_BF16 && cpu_has_amx())
            isa = ISA_AMX;
#endif
        g_cpu_isa = isa;
    }
    return g_cpu_isa;
}

/* Linux lends the tile registers only to a process that asks (their 8 KB
 * of state grow every signal frame): asked once, the first time the AMX
 * level comes up (minit2t_isa, sgemm_bf16_amx). A refusal (an alternate
 * signal stack too small for the frame, a kernel without AMX) leaves the
 * process at AVX512_BF16. */
int minit2t_amx_ready(void)
{
    static int ready = -1;
    int r = __atomic_load_n(&ready, __ATOMIC_ACQUIRE);
    if (r < 0) {
        r = 0;
#if MINIT2T_X86 && defined(__linux__)
        if (minit2t_cpu_isa() >= ISA_AMX)
            r = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#endif
        __atomic_store_n(&ready, r, __ATOMIC_RELEASE);
    }
    return r;
}

int minit2t_isa(void)
{
    int isa = MIN(minit2t_cpu_isa(), g_cap);
    return isa == ISA_AMX && !minit2t_amx_ready() ? ISA_AVX512_BF16 : isa;
}

int minit2t_set_isa(int level)
{
    g_cap = MAX(ISA_SCALAR, MIN(level, ISA_AMX));
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

int minit2t_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
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
