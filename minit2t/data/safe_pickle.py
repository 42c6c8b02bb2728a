"""Reading the CIFAR-10 python layout without executing what a pickle asks for.

A pickle is a small program: its GLOBAL opcodes name any importable callable
and REDUCE calls it, so pickle.load on a hostile file can run os.system. Here
every global goes through `find_class`, which knows only the pieces a pickled
numeric ndarray is rebuilt from, each replaced by a checked stand-in:
    numpy(._)core.multiarray._reconstruct   -> an empty ndarray (class ndarray only), filled by BUILD
    numpy.ndarray                           -> the class, as _reconstruct's first argument
    numpy.dtype                             -> numeric dtypes only (no object arrays)
    _codecs.encode                          -> latin-1 only (bytes pickled by Python 3, protocol 2)
Anything else (os.system, builtins.eval, ...) raises pickle.UnpicklingError.
"""
import codecs
import io
import pickle

import numpy as np


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray or shape != (0,):
        raise pickle.UnpicklingError(f"refusing to rebuild an array of class {cls!r} and shape {shape!r}")
    return np.ndarray.__new__(np.ndarray, (0,), _dtype(dtype))   # __setstate__ fills it


def _dtype(spec, align=False, copy=False):
    if isinstance(spec, bytes):
        spec = spec.decode("ascii")
    if not isinstance(spec, (str, np.dtype)):
        raise pickle.UnpicklingError(f"refusing dtype specification {spec!r}")
    dtype = np.dtype(spec)
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refusing non-numeric dtype {dtype}")
    return dtype


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals in _ALLOWED."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numeric "
                                         f"arrays, lists, dicts, numbers and strings are allowed") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id")


def safe_loads(data):
    """Unpickle bytes holding dicts/lists/bytes/numbers/numeric ndarrays; refuse anything else."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
