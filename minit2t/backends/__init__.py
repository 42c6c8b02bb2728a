"""Compute backends: the few hot kernels the engine hands off.

Every backend is a module exposing the same three functions:

    matmul(a, b)                                         -> a @ b
        a (M, K), b (K, N)          -> (M, N)
        a (Bt, M, K), b (Bt, K, N)  -> (Bt, M, N)
    unfold(x, kernel_size, stride, padding)              -> cols
        x (B, C, H, W)              -> (B, C*k*k, L)
    fold(cols, output_size, kernel_size, stride, padding) -> x
        cols (B, C*k*k, L)          -> (B, C, H, W)   (overlaps summed)

with the semantics of torch.matmul and torch.nn.functional.unfold/fold
(kernel_size, stride, padding are ints; output_size is a pair (H, W)).
"numpy" is the readable reference; "c" and "opencl" are optional and
are imported only when asked for.

Fused kernels: a backend may also offer some of
    gelu_forward(x), gelu_backward(g, x)
    layer_norm_forward(x, weight, bias, eps) -> (y, mean, rstd)
    layer_norm_backward(g, x, weight, mean, rstd) -> (gx, gweight, gbias)
    softmax_forward(x), softmax_backward(g, y)          (along the last dim)
    linear_forward(x, weight, bias) -> x @ weight.T + bias
(shapes in numpy_backend, which has them all, as the reference). The ops
call kernel(name), which gives the active backend's version when it has
one and the NumPy reference otherwise; the Linear op uses linear_forward
only from a backend that has it, and that backend's matmul otherwise.
"""
import importlib
import numbers
import os

_MODULES = {
    "numpy": "minit2t.backends.numpy_backend",
    "c": "minit2t.backends.c_backend",
    "opencl": "minit2t.backends.opencl_backend",
}
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


def kernel(name):
    """The active backend's fused kernel `name`, else the NumPy reference's."""
    found = getattr(get_backend(), name, None)
    return found if found is not None else getattr(get_backend("numpy"), name)


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
