"""Saving and loading arrays as .npz: atomic writes, and never a pickle on load."""
import os
import tempfile
import zipfile

import numpy as np


def save(state, path):
    """Write a dict name -> array (e.g. model.state_dict()) to `path` (.npz), atomically."""
    if not isinstance(state, dict):
        raise TypeError(f"save expects a dict of arrays, got {type(state).__name__}")
    arrays = {}
    for key, value in state.items():
        arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if arr.dtype == object:
            raise TypeError(f"save: {key!r} is not a numeric array (dtype object)")
        arrays[str(key)] = arr
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())         # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)                    # readers see the old file or the new, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """Read a .npz written by `save` into a dict name -> ndarray (pickles refused)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not a .npz archive")
        with data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"load: {path} is not a readable .npz file ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"load: {path} holds something other than plain arrays ({exc})") from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
