"""The C backend: the ops of c_ops (Add, Concat, MatMul, Linear, LayerNorm, Softmax, GELU, Reshape,
GetItem, Split, Unfold, Fold, BandDot, BandMix, Attention, ToMeMatch), c_linear_gelu (LinearGELU,
built on c_ops' Linear and GELU) and c_linear_add (LinearAdd, on c_ops' Linear) on the float32 kernels of the cffi
module minit2t._cext (cext/: AVX-512, AVX2 or scalar, chosen at run time;
threads over cores).

    OPS                          the ops this backend replaces (c_ops.OPS, LinearGELU, LinearAdd)
    matmul, unfold, fold         the GEMM and im2col kernels (c_kernels), which
                                 also take float64 (then in NumPy)
    set_num_threads, isa, ...    threads and the instruction set in force
    release_buffers()            let go of the free buffers of the output pool
                                 (at most $MINIT2T_POOL_MIB MiB; see _cmem)

Threads: $MINIT2T_NUM_THREADS, else every core this process may run on;
minit2t.backends.set_num_threads(n) changes it. A forked child computes on
one thread (GNU OpenMP's thread pool does not survive fork).

Instruction set: the best this CPU runs, or at most $MINIT2T_ISA (scalar, avx2, avx512,
avx512_bf16 or amx), e.g. MINIT2T_ISA=avx2 to run the AVX2 kernels on an AVX-512 CPU;
set_isa(level) changes it. The float32 kernels stop at avx512; the two levels above it
choose the bf16 GEMM's version (matmul(..., bf16=True)): avx512_bf16 its vdpbf16ps
kernel, amx its AMX tile kernel (where Linux lends this process the tiles; else the level
in force is avx512_bf16, and isa() says so). At avx512 and avx2 the bf16 GEMM rounds its
operands as it packs them and runs float32 micro-kernels.
"""
import warnings

from minit2t.backends._cmem import build_error as _build_error
from minit2t.backends._cmem import ISAS as _ISAS
from minit2t.backends._cmem import lib, pool

if lib is not None:                          # the kernels and ops need the compiled module
    from minit2t.backends.c_kernels import fold, matmul, unfold  # noqa: F401
    from minit2t import ops as _ops
    from minit2t.backends.c_linear_add import LinearAdd as _LinearAdd
    from minit2t.backends.c_linear_gelu import LinearGELU as _LinearGELU
    from minit2t.backends.c_ops import OPS as _C_OPS
    OPS = {**_C_OPS, _ops.LinearGELU: _LinearGELU, _ops.LinearAdd: _LinearAdd}

name = "c"
_warned = False


def check_available():
    """RuntimeError (and one warning per process) when the extension is not built or cannot load, saying which."""
    global _warned
    if lib is not None:
        return
    reason = f"the C extension {_build_error}"             # says which: not built, or built but cannot load
    if not _warned:
        _warned = True
        warnings.warn(reason + "; minit2t runs on NumPy", RuntimeWarning, stacklevel=3)
    raise RuntimeError(reason)


def release_buffers():
    """Return the output pool's free buffers to the system (buffers in use stay)."""
    pool.release()


def set_num_threads(n):
    lib.minit2t_set_num_threads(int(n))


def get_num_threads():
    return lib.minit2t_get_num_threads()


def isa():
    """The instruction set the kernels dispatch to: 'amx', 'avx512_bf16', 'avx512', 'avx2' or
    'scalar' (the float32 kernels run 'avx512' at the two levels above it)."""
    return _ISAS[lib.minit2t_isa()]


def set_isa(level):
    """Cap the instruction set ('scalar', 'avx2', 'avx512', 'avx512_bf16', 'amx'); returns the
    one in force (never above what this CPU runs)."""
    if level not in _ISAS:
        raise ValueError(f"the instruction set must be one of {', '.join(_ISAS)}; got {level!r}")
    return _ISAS[lib.minit2t_set_isa(_ISAS.index(level))]
