"""The C backend: float32 matmul, unfold/fold and the fused kernels (GELU,
layer norm, softmax, each forward and backward; the linear forward with its
bias; the strided copy: in c_fused) from the cffi module minit2t._cext.

Legend: Bt matrices in a batch, M/K/N matrix sides, B batch, C channels,
H/W height/width, k kernel, s stride, p padding, L = Ho * Wo windows.

Same semantics as numpy_backend. float32 inputs run in C (cext/: AVX-512,
AVX2 or scalar, chosen at run time; threads over cores); anything else that
passes the checks (float64, mixed) runs in NumPy, because the C kernels are
float32. Views are passed by their strides, with no copy, unless a stride
is not a whole number of floats (or, for unfold/fold and the fused kernels,
the innermost stride is not 1).

Threads: $MINIT2T_NUM_THREADS, else every core this process may run on;
minit2t.backends.set_num_threads(n) changes it. A forked child computes on
one thread (GNU OpenMP's thread pool does not survive fork).

Outputs come from a pool of buffers (see _cmem).
"""
import os
import warnings

import numpy as np

from minit2t.backends import numpy_backend as _reference
from minit2t.backends._checks import check_fold, check_matmul, check_unfold
from minit2t.backends._cmem import build_error as _build_error
from minit2t.backends._cmem import ffi, lib
from minit2t.backends._cmem import pool as _pool
from minit2t.backends._cmem import ptr as _ptr
from minit2t.backends._cmem import strides as _strides
from minit2t.backends._cmem import usable as _usable
from minit2t.backends.c_fused import (copy_into, empty, gelu_backward, gelu_forward,  # noqa: F401
                                      layer_norm_backward, layer_norm_forward, linear_forward,
                                      softmax_backward, softmax_forward)

name = "c"
_warned = False
_ISAS = ("scalar", "avx2", "avx512")


def check_available():
    """RuntimeError (and one warning per process) when the extension is not built."""
    global _warned
    if lib is not None:
        return
    reason = (f"the C extension minit2t._cext is not built ({_build_error}); "
              f"install a C compiler and rerun `pip install -e .`")
    if not _warned:
        _warned = True
        warnings.warn(reason + "; minit2t runs on NumPy", RuntimeWarning, stacklevel=3)
    raise RuntimeError(reason)


def set_num_threads(n):
    lib.minit2t_set_num_threads(int(n))


def get_num_threads():
    return lib.minit2t_get_num_threads()


def isa():
    """The instruction set the kernels dispatch to: 'avx512', 'avx2' or 'scalar'."""
    return _ISAS[lib.minit2t_isa()]


def set_isa(level):
    """Cap the instruction set ('scalar', 'avx2', 'avx512'); returns the one in force."""
    return _ISAS[lib.minit2t_set_isa(_ISAS.index(level))]


def _default_threads():
    env = os.environ.get("MINIT2T_NUM_THREADS")
    if env is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not env.strip().isdigit() or int(env) < 1:
        raise ValueError(f"MINIT2T_NUM_THREADS must be a positive int; got {env!r}")
    return int(env)


if lib is not None:
    lib.minit2t_set_num_threads(_default_threads())


def matmul(a, b):
    """a (M, K) @ b (K, N) -> (M, N); batched (Bt, M, K) @ (Bt, K, N) -> (Bt, M, N)."""
    a, b = np.asarray(a), np.asarray(b)
    shape = check_matmul(a, b)
    if a.dtype != np.float32 or b.dtype != np.float32:
        return np.matmul(a, b)               # float64: NumPy (the kernels are float32)
    a, b = _usable(a), _usable(b)
    if a.ndim == 3 and b.ndim == 2 and a.size and a.strides[0] == a.shape[1] * a.strides[1]:
        flat = a.reshape(-1, a.shape[2])     # (Bt*M, K), a view: one GEMM
        return _gemm(flat, b, (1, flat.shape[0], b.shape[1])).reshape(shape)
    bt = shape[0] if len(shape) == 3 else 1
    return _gemm(a, b, (bt,) + shape[-2:]).reshape(shape)


def _gemm(a, b, shape):
    """C (Bt, M, N) = a @ b with a, b 2-D or 3-D (batch 1 broadcast)."""
    bt, m, n = shape
    out = _pool.empty(shape)
    if out.size:
        sa = _strides(a, (0 if a.ndim == 3 and a.shape[0] > 1 else None, -2, -1))
        sb = _strides(b, (0 if b.ndim == 3 and b.shape[0] > 1 else None, -2, -1))
        sc = _strides(out, (0, 1))
        lib.sgemm(bt, m, n, a.shape[-1], _ptr(a), sa, _ptr(b), sb, _ptr(out), sc)
    return out


def unfold(x, kernel_size, stride, padding):
    """x (B, C, H, W) -> cols (B, C*k*k, L)."""
    x = np.asarray(x)
    k, s, p, ho, wo = check_unfold(x, kernel_size, stride, padding)
    if x.dtype != np.float32:
        return _reference.unfold(x, k, s, p)
    x = _usable(x) if x.strides[3] == x.itemsize else x.copy()   # the fast path: unit column stride
    nb, nc, h, w = x.shape
    cols = _pool.empty((nb, nc * k * k, ho * wo))           # (B, C*k*k, L)
    if cols.size:
        lib.unfold(_ptr(x), _strides(x, range(4)), _ptr(cols), nb, nc, h, w, k, s, p)
    return cols


def fold(cols, output_size, kernel_size, stride, padding):
    """cols (B, C*k*k, L) -> x (B, C, H, W), overlapping windows summed."""
    cols = np.asarray(cols)
    k, s, p, h, w, nc = check_fold(cols, output_size, kernel_size, stride, padding)
    if cols.dtype != np.float32:
        return _reference.fold(cols, (h, w), k, s, p)
    cols = _usable(cols) if cols.strides[2] == cols.itemsize else cols.copy()   # likewise
    nb = cols.shape[0]
    x = _pool.empty((nb, nc, h, w))                         # (B, C, H, W)
    if x.size:
        lib.fold(_ptr(cols), _strides(cols, range(3)), _ptr(x), nb, nc, h, w, k, s, p)
    return x
