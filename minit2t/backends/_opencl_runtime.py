"""OpenCL plumbing for the "opencl" backend: device, programs, buffers, timing.

pyopencl is imported here, lazily: importing minit2t never needs it.

Device choice, env MINIT2T_OPENCL_DEVICE:
    "P:D"     device D of platform P (indices as `clinfo -l` lists them)
    "text"    the first device whose name contains text (case-insensitive)
    unset     the first GPU of any platform, else the first device.
"""
import collections
import os
import threading
import warnings
from pathlib import Path

import numpy as np

# the static .cl sources: cext/ of a source checkout, else the copy installed in minit2t/cl/
KERNEL_DIR = next((d for d in (Path(__file__).resolve().parents[2] / "cext", Path(__file__).resolve().parents[1] / "cl")
                   if (d / "im2col.cl").is_file()), Path(__file__).resolve().parents[2] / "cext")
POOL_BYTES = 256 << 20          # idle buffers kept for reuse, at most
_KERNELS = {}                   # (context, file, options, name) -> kernel of a built program
_runtime = None
_lock = threading.Lock()


def import_pyopencl():
    try:
        import pyopencl
    except ImportError as e:
        raise RuntimeError(f"pyopencl is not installed ({e}); "
                           "install it with: pip install -e \".[opencl]\"") from None
    return pyopencl


def _all_devices(cl):
    try:
        platforms = cl.get_platforms()
    except cl.Error as e:     # the ICD loader finds no platform
        raise RuntimeError(f"no OpenCL platform found ({e}); install a driver, "
                           "e.g. apt-get install pocl-opencl-icd") from None
    found = []
    for pi, pf in enumerate(platforms):
        try:
            found += [(pi, di, d) for di, d in enumerate(pf.get_devices())]
        except cl.Error:      # a platform with no device says so by raising
            pass
    if not found:
        raise RuntimeError("OpenCL platforms found, but no device on any of them")
    return found


def select_device(cl, spec=None):
    """The device `spec` names (see the module docstring), or the default one."""
    found = _all_devices(cl)
    listing = ", ".join(f"{pi}:{di} {d.name.strip()}" for pi, di, d in found)
    if not spec:
        gpus = [d for _, _, d in found if d.type & cl.device_type.GPU]
        return gpus[0] if gpus else found[0][2]
    if ":" in spec and spec.replace(":", "", 1).isdigit():
        pi, di = (int(t) for t in spec.split(":"))
        for fpi, fdi, d in found:
            if (fpi, fdi) == (pi, di):
                return d
        raise RuntimeError(f"MINIT2T_OPENCL_DEVICE={spec!r}: no device {pi}:{di}; "
                           f"devices are: {listing}")
    for _, _, d in found:
        if spec.lower() in d.name.lower():
            return d
    raise RuntimeError(f"MINIT2T_OPENCL_DEVICE={spec!r} matches no device name; "
                       f"devices are: {listing}")


class BufferPool:
    """Idle device buffers keyed by size, least recently released dropped first."""

    def __init__(self, cl, ctx, limit=POOL_BYTES):
        self.cl, self.ctx, self.limit = cl, ctx, limit
        self.free = collections.OrderedDict()      # nbytes -> [Buffer, ...]
        self.held = 0                              # bytes in self.free

    def take(self, nbytes):
        nbytes = max(4096, -(-nbytes // 4096) * 4096)   # 4 KiB granules: more reuse
        with _lock:
            bufs = self.free.get(nbytes)
            if bufs:
                self.held -= nbytes
                buf = bufs.pop()
                if not bufs:
                    del self.free[nbytes]
                return buf
        return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, nbytes)

    def give(self, buf):
        nbytes = buf.size
        with _lock:
            self.free.setdefault(nbytes, []).append(buf)
            self.free.move_to_end(nbytes)
            self.held += nbytes
            while self.held > self.limit:          # evict the oldest sizes
                size, bufs = next(iter(self.free.items()))
                bufs.pop(0)
                self.held -= size
                if not bufs:
                    del self.free[size]


class Runtime:
    """One device: its context, a profiling in-order queue, programs, buffer pool."""

    def __init__(self, device):
        cl = self.cl = import_pyopencl()
        self.device = device
        self.is_cpu = bool(device.type & cl.device_type.CPU)
        self.ctx = cl.Context([device])
        props = cl.command_queue_properties.PROFILING_ENABLE
        self.queue = cl.CommandQueue(self.ctx, device, properties=props)
        self.pool = BufferPool(cl, self.ctx)
        self.max_alloc = device.max_mem_alloc_size
        self.max_group = device.max_work_group_size
        vw = device.preferred_vector_width_float      # floats per SIMD register
        self.vector_width = vw if vw in (4, 8, 16) else 4
        self.last = {}                              # kind -> seconds, of the last call

    def kernel(self, file, name, options=""):
        """Kernel `name` of cext/`file`, built once per (context, file, options)."""
        key = (self.ctx.int_ptr, file, options, name)
        with _lock:
            knl = _KERNELS.get(key)
        if knl is None:
            path = KERNEL_DIR / file
            if not path.is_file():
                raise RuntimeError(f"OpenCL source {path} is missing; minit2t's "
                                   "opencl backend needs an editable install (pip install -e)")
            with warnings.catch_warnings():         # a build log is shown only on
                if not os.environ.get("PYOPENCL_COMPILER_OUTPUT"):   # request
                    warnings.simplefilter("ignore", self.cl.CompilerWarning)
                prg = self.cl.Program(self.ctx, path.read_text()).build(options=options)
            with _lock:
                for knl in prg.all_kernels():
                    _KERNELS[key[:3] + (knl.function_name,)] = knl
                knl = _KERNELS[key]
        return knl

    def call(self):
        return Call(self)


class Call:
    """One backend call: uploads, kernels, one blocking download; then its
    buffers go back to the pool and its event times into runtime.last."""

    def __init__(self, rt):
        self.rt, self.bufs, self.events = rt, [], []

    def __enter__(self):
        return self

    def alloc(self, nbytes):
        if nbytes > self.rt.max_alloc:
            raise ValueError(f"opencl: a {nbytes}-byte buffer exceeds the device's "
                             f"largest allocation ({self.rt.max_alloc} bytes)")
        buf = self.rt.pool.take(nbytes)
        self.bufs.append(buf)
        return buf

    def upload(self, host):
        """A device copy of the C-contiguous float32 array `host`."""
        buf = self.alloc(host.nbytes)
        ev = self.rt.cl.enqueue_copy(self.rt.queue, buf, host, is_blocking=False)
        self.events.append(("upload", ev, host))   # host stays alive until done
        return buf

    def run(self, kernel, global_size, local_size, *args):
        with _lock:                                 # a kernel object holds its args
            ev = kernel(self.rt.queue, global_size, local_size, *args)
        self.events.append(("kernel", ev, None))

    def download(self, buf, shape):
        out = np.empty(shape, dtype=np.float32)
        ev = self.rt.cl.enqueue_copy(self.rt.queue, out, buf, is_blocking=True)
        self.events.append(("download", ev, None))
        return out

    def __exit__(self, *exc):
        self.rt.queue.finish()
        last = {"upload": 0.0, "kernel": 0.0, "download": 0.0}
        if exc[0] is None:
            for kind, ev, _ in self.events:
                last[kind] += (ev.profile.end - ev.profile.start) * 1e-9
        self.rt.last = last
        for buf in self.bufs:
            self.rt.pool.give(buf)
        return False


def get_runtime():
    """The runtime of the selected device, created on first use."""
    global _runtime
    if _runtime is None:
        cl = import_pyopencl()
        _runtime = Runtime(select_device(cl, os.environ.get("MINIT2T_OPENCL_DEVICE")))
    return _runtime
