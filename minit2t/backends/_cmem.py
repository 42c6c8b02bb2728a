"""Memory plumbing of the C backend: the cffi module, pointers and strides of
arrays, and the pool its outputs come from (used by c_backend and c_fused).

Outputs: a fresh large allocation costs page faults (the kernel zeroes every
new page), which halve the write bandwidth, so outputs from 1 MiB up come from
a pool of recycled buffers. A buffer is handed out again only when no Python
object refers to it any more (every view, slice or reshape of an output
holds a reference to its buffer), so memory a caller can still reach is
never overwritten. Of the free buffers of the size asked for, the one
handed out last comes back first: written most recently, it is the likeliest
to be still in cache, where a store need not fetch its line from memory
first (t2t_vit_cifar's inference at batch 256 ran about 2% faster than when
the oldest came back first). Pooled outputs start on a 64-byte boundary.
Smaller outputs are plain np.empty.

The pool keeps up to $MINIT2T_POOL_MIB MiB of buffers (default: an eighth of
the machine's memory, at most 2 GiB): a training step keeps every layer's
activations until its backward, about 650 MiB for t2t_vit_cifar at batch
128, and a pool smaller than a step's working set hands out fresh pages on
every step. Past the cap, the least recently used free buffers go first.
release() lets go of every free buffer.
"""
import collections
import itertools
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

ISAS = ("scalar", "avx2", "avx512", "avx512_bf16", "amx")   # minit2t_set_isa's levels, in order


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


def _configure():
    """Threads and the instruction set from the environment, read once, here where the module loads,
    so that every path to the kernels (the backend or c_kernels alone) runs with them."""
    lib.minit2t_set_num_threads(_threads_from_env())
    isa = _isa_from_env()
    if isa:
        lib.minit2t_set_isa(ISAS.index(isa))


if lib is not None:
    _configure()


def _pool_bytes_from_env():
    """$MINIT2T_POOL_MIB in bytes, else an eighth of physical memory, at most 2 GiB."""
    env = os.environ.get("MINIT2T_POOL_MIB")
    if env is not None:
        if not env.strip().isdigit():
            raise ValueError(f"MINIT2T_POOL_MIB must be a whole number of MiB (0: no pool); got {env!r}")
        return int(env) << 20
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 2 << 30
    return min(2 << 30, physical // 8)


class OutputPool:
    """Recycles output buffers that nothing references any more (see the module doc)."""

    MIN_BYTES = 1 << 20

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._bufs = collections.OrderedDict()   # key -> flat uint8 buffer, least recently handed out first
        self._sizes = collections.defaultdict(list)  # nbytes -> keys of that size, last handed out last
        self._keys = itertools.count()
        self._held = 0                           # bytes of all the buffers
        self._lock = threading.Lock()

    def empty(self, shape, dtype=np.float32):
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if not self.MIN_BYTES <= nbytes <= self.max_bytes // 4:
            return np.empty(shape, dtype)
        with self._lock:
            raw = self._bufs[self._take(nbytes + 64)]
            start = -raw.ctypes.data % 64             # 64-byte aligned start
            return raw[start:start + nbytes].view(dtype).reshape(shape)

    def _free(self, key):
        """Whether nothing but the pool refers to buffer `key` (the pool's dict and getrefcount's argument)."""
        return sys.getrefcount(self._bufs[key]) <= 2

    def _take(self, nbytes):
        """The key of a free buffer of nbytes, the one handed out last (a new one if none is free), now the
        most recently used."""
        same = self._sizes[nbytes]
        key = next((k for k in reversed(same) if self._free(k)), None)
        if key is None:
            key = next(self._keys)
            self._bufs[key] = np.empty(nbytes, np.uint8)
            self._held += nbytes
            self._shrink(self.max_bytes, keep=key)
        else:
            same.remove(key)
        same.append(key)
        self._bufs.move_to_end(key)
        return key

    def _forget(self, key):
        buf = self._bufs.pop(key)
        self._sizes[buf.nbytes].remove(key)
        self._held -= buf.nbytes

    def _shrink(self, limit, keep=None):
        """Forget buffers until at most `limit` bytes are held: free ones first, least recently used
        first; then buffers still in use (their holders keep them, the pool no longer does)."""
        for key in [k for k in self._bufs if k != keep and self._free(k)]:
            if self._held <= limit:
                return
            self._forget(key)
        for key in [k for k in self._bufs if k != keep]:
            if self._held <= limit:
                return
            self._forget(key)

    def release(self):
        """Let go of every buffer nothing refers to (their memory goes back to the system)."""
        with self._lock:
            for key in [k for k in self._bufs if self._free(k)]:
                self._forget(key)

    @property
    def held_bytes(self):
        """Bytes of the buffers the pool holds, free or in use."""
        return self._held


pool = OutputPool(_pool_bytes_from_env())


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
