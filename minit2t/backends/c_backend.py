"""The C backend: float32 matmul, unfold/fold and the fused kernels (GELU,
layer norm, softmax, each forward and backward) from the cffi module minit2t._cext.

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

Outputs: a fresh large allocation costs page faults that halve the write
bandwidth, so outputs from 1 to 64 MiB come from a small pool of buffers
(at most 256 MiB of them). A buffer is handed out again only when no Python
object refers to it any more (every view, slice or reshape of an output
holds a reference to its buffer), so memory a caller can still reach is
never overwritten. Pooled outputs start on a 64-byte boundary. Smaller
outputs are plain np.empty.
"""
import math
import os
import sys
import threading
import warnings

import numpy as np

from minit2t.backends import numpy_backend as _reference
from minit2t.backends._checks import (check_fold, check_layer_norm, check_layer_norm_backward,
                                      check_linear, check_matmul, check_same_shape, check_unfold)

try:
    from minit2t._cext import ffi, lib
    _build_error = None
except ImportError as exc:  # not compiled: the NumPy backend takes over
    ffi = lib = None
    _build_error = exc

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


class _OutputPool:
    """Recycles output buffers that nothing references any more (see the module doc)."""

    MIN_BYTES = 1 << 20
    MAX_BYTES = 256 << 20

    def __init__(self):
        self._bufs = []                      # flat uint8 buffers, oldest first
        self._lock = threading.Lock()
        probe = [np.empty(0, np.uint8)]
        self._free_refs = sys.getrefcount(probe[0])   # held by the list alone

    def empty(self, shape, dtype=np.float32):
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if not self.MIN_BYTES <= nbytes <= self.MAX_BYTES // 4:
            return np.empty(shape, dtype)
        with self._lock:
            raw = self._take(nbytes + 64)
            start = -raw.ctypes.data % 64             # 64-byte aligned start
            return raw[start:start + nbytes].view(dtype).reshape(shape)

    def _take(self, nbytes):
        """A free owner array of nbytes (the views handed out point back to it)."""
        bufs = self._bufs
        for i in range(len(bufs)):
            if bufs[i].nbytes == nbytes and sys.getrefcount(bufs[i]) <= self._free_refs:
                bufs.append(bufs.pop(i))     # most recently used last
                return bufs[-1]
        bufs.append(np.empty(nbytes, np.uint8))
        while sum(b.nbytes for b in bufs) > self.MAX_BYTES and len(bufs) > 1:
            bufs.pop(0)                      # forgotten; its holder keeps it
        return bufs[-1]


_pool = _OutputPool()
if lib is not None:
    lib.minit2t_set_num_threads(_default_threads())


def _usable(x):
    """x itself when its address and strides are whole floats, else a (fresh, aligned) copy."""
    return x if x.flags.aligned else x.copy()


def _contiguous(x):
    """x itself when C-contiguous and aligned, else a copy that is."""
    return x if x.flags.c_contiguous and x.flags.aligned else x.copy()


def _ptr(x):
    """The address of x[0, ...] (from_buffer is the fast way, for contiguous x)."""
    if x.flags.c_contiguous:
        return ffi.cast("float *", ffi.from_buffer(x))
    return ffi.cast("float *", x.ctypes.data)


def _strides(x, dims):
    """Element strides of x for `dims` (None: a broadcast dim, stride 0)."""
    st, item = x.strides, x.itemsize
    return ffi.new("int64_t[]", [0 if d is None else st[d] // item for d in dims])


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


# ---- fused kernels (cext/fused.c); float32 only, anything else: the reference ----
# Legend: "..." any leading dims, R rows, D the normalised (last) dim, N the softmax dim.

def _all_f32(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


def _rows(x):
    """x (..., D) as (R, D) with unit column stride (a view when possible) and its row stride."""
    x2 = _usable(x.reshape(-1, x.shape[-1]))
    if x2.strides[1] != x2.itemsize:
        x2 = _contiguous(x2)
    return x2, x2.strides[0] // x2.itemsize


def linear_forward(x, weight, bias=None):
    """x (R, Din) @ weight.T + bias (Dout,) -> (R, Dout): the bias added in the GEMM."""
    x, weight = np.asarray(x), np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    r, dout = check_linear(x, weight, bias)
    if bias is None or not _all_f32(x, weight, bias):
        return _reference.linear_forward(x, weight, bias) if bias is not None else matmul(x, weight.T)
    x, w, b = _usable(x), _usable(weight.T), _contiguous(bias)        # w (Din, Dout), a view
    out = _pool.empty((1, r, dout))
    if out.size:
        lib.sgemm_bias(1, r, dout, x.shape[1], _ptr(x), _strides(x, (None, 0, 1)), _ptr(w),
                       _strides(w, (None, 0, 1)), _ptr(b), _ptr(out), _strides(out, (0, 1)))
    return out[0]


def gelu_forward(x):
    """x (...) -> x * Phi(x)."""
    x = np.asarray(x)
    check_same_shape("gelu", x=x)
    if x.dtype != np.float32:
        return _reference.gelu_forward(x)
    x = _contiguous(x)
    y = _pool.empty(x.shape)
    if x.size:
        lib.gelu_forward(_ptr(x), _ptr(y), x.size)
    return y


def gelu_backward(g, x):
    """g, x (...) -> g * (Phi(x) + x * phi(x))."""
    g, x = np.asarray(g), np.asarray(x)
    check_same_shape("gelu_backward", g=g, x=x)
    if not _all_f32(g, x):
        return _reference.gelu_backward(g, x)
    g, x = _contiguous(g), _contiguous(x)
    gx = _pool.empty(x.shape)
    if x.size:
        lib.gelu_backward(_ptr(g), _ptr(x), _ptr(gx), x.size)
    return gx


def layer_norm_forward(x, weight, bias, eps):
    """x (..., D) -> y (..., D), mean (...), rstd (...)."""
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    check_layer_norm(x, weight, bias, eps)
    if not _all_f32(x, weight, bias) or x.size == 0:
        return _reference.layer_norm_forward(x, weight, bias, eps)
    (x2, sx), d = _rows(x), x.shape[-1]
    w, b = _contiguous(weight), _contiguous(bias)
    y = _pool.empty(x.shape)
    mean, rstd = np.empty(x.shape[:-1], np.float32), np.empty(x.shape[:-1], np.float32)
    lib.layer_norm_forward(_ptr(x2), sx, _ptr(w), _ptr(b), float(eps), _ptr(y),
                           _ptr(mean), _ptr(rstd), x2.shape[0], d)
    return y, mean, rstd


def layer_norm_backward(g, x, weight, mean, rstd):
    """g, x (..., D) -> gx (..., D), gweight (D,), gbias (D,)."""
    g, x, weight = np.asarray(g), np.asarray(x), np.asarray(weight)
    mean, rstd = np.asarray(mean), np.asarray(rstd)
    check_layer_norm_backward(g, x, weight, mean, rstd)
    if not _all_f32(g, x, weight, mean, rstd) or x.size == 0:
        return _reference.layer_norm_backward(g, x, weight, mean, rstd)
    (g2, sg), (x2, sx), d = _rows(g), _rows(x), x.shape[-1]
    w = _contiguous(weight)
    mean, rstd = _contiguous(mean.reshape(-1)), _contiguous(rstd.reshape(-1))
    gx = _pool.empty(x.shape)
    gw, gb = np.empty(d, np.float32), np.empty(d, np.float32)
    lib.layer_norm_backward(_ptr(g2), sg, _ptr(x2), sx, _ptr(w), _ptr(mean), _ptr(rstd),
                            _ptr(gx), _ptr(gw), _ptr(gb), x2.shape[0], d)
    return gx, gw, gb


def softmax_forward(x):
    """x (..., N) -> softmax along the last dim."""
    x = np.asarray(x)
    check_same_shape("softmax", x=x)
    if x.dtype != np.float32 or x.size == 0:
        return _reference.softmax_forward(x)
    x = _contiguous(x)
    y = _pool.empty(x.shape)
    lib.softmax_forward(_ptr(x), _ptr(y), x.size // x.shape[-1], x.shape[-1])
    return y


def softmax_backward(g, y):
    """g, y (..., N) -> y * (g - sum(g * y)) along the last dim."""
    g, y = np.asarray(g), np.asarray(y)
    check_same_shape("softmax_backward", g=g, y=y)
    if not _all_f32(g, y) or y.size == 0:
        return _reference.softmax_backward(g, y)
    g, y = _contiguous(g), _contiguous(y)
    gx = _pool.empty(y.shape)
    lib.softmax_backward(_ptr(g), _ptr(y), _ptr(gx), y.size // y.shape[-1], y.shape[-1])
    return gx
