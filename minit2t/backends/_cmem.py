"""Memory plumbing of the C backend: the cffi module, pointers and strides of
arrays, and the pool its outputs come from (used by c_backend and c_fused).

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

import numpy as np


def _why_not(exc):
    """One line saying why minit2t._cext did not import: not built, or built but unable to load."""
    missing = getattr(exc, "name", None)
    if missing == "_cffi_backend" or "_cffi_backend" in str(exc):
        return (f"minit2t._cext is built but cannot load: the cffi package, which it runs on, is not installed "
                f"({exc}); `pip install cffi` (a dependency of minit2t: reinstalling with pip installs it)")
    if missing == "minit2t._cext":
        return ("minit2t._cext is not built (no compiled module beside minit2t/__init__.py): the C compiler "
                "failed or was missing when minit2t was installed; `pip install -v -e .` shows the compiler's "
                "error (a C compiler, e.g. gcc, and the Python headers are needed)")
    return (f"minit2t._cext is built but cannot load ({type(exc).__name__}: {exc}); rebuild it with "
            f"`pip install -e .`")


try:
    from minit2t._cext import ffi, lib
    build_error = None
except ImportError as exc:  # not compiled, or unable to load: the NumPy backend takes over
    ffi = lib = None
    build_error = _why_not(exc)

ISAS = ("scalar", "avx2", "avx512")          # minit2t_set_isa's levels, in order


def _threads_from_env():
    """$MINIT2T_NUM_THREADS, else every core this process may run on."""
    env = os.environ.get("MINIT2T_NUM_THREADS")
    if env is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not env.strip().isdigit() or int(env) < 1:
        raise ValueError(f"MINIT2T_NUM_THREADS must be a positive int; got {env!r}")
    return int(env)


def _isa_from_env():
    """$MINIT2T_ISA's cap on the instruction set, or None."""
    env = os.environ.get("MINIT2T_ISA")
    if env is not None and env.strip().lower() not in ISAS:
        raise ValueError(f"MINIT2T_ISA must be one of {', '.join(ISAS)}; got {env!r}")
    return env and env.strip().lower()


if lib is not None:                          # configured here, so that every path to the kernels sees it
    lib.minit2t_set_num_threads(_threads_from_env())
    if _isa_from_env():
        lib.minit2t_set_isa(ISAS.index(_isa_from_env()))


class OutputPool:
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


pool = OutputPool()


def usable(x):
    """x itself when its address and strides are whole floats, else a (fresh, aligned) copy."""
    return x if x.flags.aligned else x.copy()


def contiguous(x):
    """x itself when C-contiguous and aligned, else a copy that is."""
    return x if x.flags.c_contiguous and x.flags.aligned else x.copy()


def ptr(x):
    """The address of x[0, ...] (from_buffer is the fast way, for contiguous x)."""
    if x.flags.c_contiguous:
        return ffi.cast("float *", ffi.from_buffer(x))
    return ffi.cast("float *", x.ctypes.data)


def strides(x, dims):
    """Element strides of x for `dims` (None: a broadcast dim, stride 0)."""
    st, item = x.strides, x.itemsize
    return ffi.new("int64_t[]", [0 if d is None else st[d] // item for d in dims])
