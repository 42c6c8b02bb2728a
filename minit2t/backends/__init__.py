"""Backends: the one seam between the reference ops and faster code.

Every op in minit2t/ops holds its own NumPy forward and backward: that is the
reference, and it is what runs on the "numpy" backend. A backend is a module
with a table

    OPS = {ops.LayerNorm: FasterLayerNorm, ...}

of whole ops it replaces: each replacement is a Function subclass with its own
forward and backward (usually a subclass of the op it replaces, falling back to
it for dtypes it does not handle). Function.apply asks `implementation(op)` for
the active backend's version of every op it runs; that lookup is the only
place where backends and ops meet.

    "numpy"    no replacements: every op runs its reference code
    "c"        the C kernels of cext/ through cffi (c_backend, c_ops, c_kernels)
    "opencl"   matmul, unfold and fold as OpenCL kernels (opencl_backend, opencl_ops,
               opencl_kernels)

The default is "c" when the extension is built, else "numpy"; $MINIT2T_BACKEND
or set_backend(name) chooses. Buffer pools, layouts, threads and fused kernels
live on the backend side; nothing in ops/ knows about them. So does the one
speed policy a layer asks about: whether a layer's attention may run as the one
fused op (fusion.may_fuse_attention).
"""
import importlib
import numbers
import os

_MODULES = {
    "numpy": "minit2t.backends.numpy_backend",
    "c": "minit2t.backends.c_backend",
    "opencl": "minit2t.backends.opencl_backend",
}
BACKENDS = tuple(_MODULES)                      # the names a user may choose
_loaded = {}
_active = None


def available_backends():
    """Names of the backends that load on this machine."""
    names = []
    for name in _MODULES:
        try:
            get_backend(name)
            names.append(name)
        except (ImportError, RuntimeError):
            pass
    return names


def get_backend(name=None):
    """The backend module called `name` (default: the active one)."""
    if name is None:
        return _active if _active is not None else _default()
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_MODULES)}")
    if name not in _loaded:
        module = importlib.import_module(_MODULES[name])
        if hasattr(module, "check_available"):
            module.check_available()   # raises RuntimeError with the reason
        _loaded[name] = module
    return _loaded[name]


def implementation(op):
    """The active backend's version of `op` (a Function subclass), or op itself."""
    return (_active or _default()).OPS.get(op, op)


def set_backend(name):
    """Make `name` the backend every op dispatches to."""
    global _active
    _active = get_backend(name)
    return _active


def _default():
    global _active
    name = os.environ.get("MINIT2T_BACKEND")
    if name:
        _active = get_backend(name)
        return _active
    try:
        _active = get_backend("c")
    except (ImportError, RuntimeError):
        _active = get_backend("numpy")
    return _active


_num_threads = None   # what set_num_threads asked for, when the C backend is absent


def set_num_threads(n):
    """Threads the C kernels use (default: $MINIT2T_NUM_THREADS, else every core)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads expects a positive int; got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive int; got {n}")
    _num_threads = n = int(n)
    try:
        get_backend("c").set_num_threads(n)
    except (ImportError, RuntimeError):
        pass


def get_num_threads():
    """Threads the C kernels use."""
    try:
        return get_backend("c").get_num_threads()
    except (ImportError, RuntimeError):
        return _num_threads or os.cpu_count() or 1
