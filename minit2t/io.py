"""Saving and loading arrays as .npz: atomic writes; reads that never unpickle and check sizes first.

A minit2t weights file is one of three kinds, told apart by its members:
    plain state dict     the model's state_dict() names -> arrays        mt.save(model.state_dict(), path)
    shipped model        "model.<name>" arrays, "config", "default_cfg"  hub.export_pretrained
    training checkpoint  "model.<name>" arrays, "optimizer.*", "epoch", "schedule", "rng", "history",
                         "model_config", "run_config"                    python -m minit2t train
read_weights(path) gives the model's state dict from any of them; mt.load(path) gives every member.

Before a member's data is read, its .npy header is checked: a plain numeric or text dtype (never a
pickle), the declared size within a limit (MAX_BYTES for all the members read, unless told), the
zip entry's uncompressed size equal to the declared size (a zip bomb is refused before it is
expanded), and, when a model is given, the shape the model has for that name. Weights (a plain state
dict's members, the "model.*" members of the other two kinds) must be floating point: float16, float32
or float64, cast to the model's dtype when loaded, as torch's load_state_dict copies a float64 tensor
into a float32 parameter; integer, bool and complex arrays are refused, never cast.
Every failure is a LoadError (a ValueError) whose one-line message names the file.
"""
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

MAX_BYTES = 2 ** 30                  # 1 GiB: at most this much array data is read by one call unless told
STATE_DICT, SHIPPED, CHECKPOINT = "plain state dict", "shipped model file", "training checkpoint"
SHIPPED_KEYS = ("config", "default_cfg")
CHECKPOINT_KEYS = ("epoch", "schedule", "rng", "history", "model_config", "run_config")
_CHUNK = 1 << 24
PREFIX = "model."                   # the model's weights inside a shipped file or a checkpoint
_FORMATS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class LoadError(ValueError):
    """A file that is not what it should be; the message is one line and names the file."""


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


def load(path, max_bytes=MAX_BYTES):
    """Every member of the .npz at `path` as a dict name -> ndarray (pickles refused, sizes checked).

    For a shipped model or a training checkpoint that is the "model."-prefixed weights (floating point,
    checked) and the metadata; model.load_state_dict takes such a dict as it is, and read_weights(path)
    reads the weights alone. Any other .npz is read as it is: numbers of any dtype, or text."""
    kind, members = weight_members(read_headers(path))
    check = None if kind == STATE_DICT else _weight_check(members, None)
    return read_arrays(path, check=check, max_bytes=max_bytes)


def read_headers(path):
    """name -> (shape, dtype) of every member, from the .npy headers alone (no array data is read)."""
    with _Npz(path) as npz:
        return {name: (h[0], h[1]) for name, h in npz.headers.items()}


def read_arrays(path, names=None, check=None, max_bytes=MAX_BYTES):
    """The members `names` (default: all) as arrays. check(name, shape, dtype) may return a complaint
    (a string), which refuses the file; it, the size limit and the zip entry sizes are all checked
    before any array is read."""
    with _Npz(path) as npz:
        names = list(npz.headers) if names is None else list(names)
        absent = [n for n in names if n not in npz.headers]
        if absent:
            raise LoadError(f"{npz.path} has no member {absent[0]!r}")
        total = 0
        for name in names:
            shape, dtype, nbytes = npz.headers[name][:3]
            complaint = check(name, shape, dtype) if check else None
            if complaint:
                raise LoadError(f"{npz.path}: {complaint}")
            total += nbytes
        if total > max_bytes:
            raise LoadError(f"{npz.path} declares {total:,} bytes of arrays, more than the limit of "
                            f"{max_bytes:,} (pass max_bytes= to read larger files)")
        return {name: npz.read(name) for name in names}


def weights_kind(names):
    """Which of the three kinds a file (or a dict as mt.load returns it) with these member names is."""
    names = set(names)
    if names & set(CHECKPOINT_KEYS):
        return CHECKPOINT
    if names & set(SHIPPED_KEYS):
        return SHIPPED
    return STATE_DICT


def weight_members(names):
    """(kind, {member name: the model's state-dict name}) for the weights among `names`."""
    kind = weights_kind(names)
    if kind == STATE_DICT:
        return kind, {n: n for n in names}
    return kind, {n: n[len(PREFIX):] for n in names if n.startswith(PREFIX)}


def model_weights(arrays):
    """The model's state dict inside a dict of any of the three kinds (as mt.load returns it)."""
    kind, members = weight_members(arrays)
    return arrays if kind == STATE_DICT else {key: arrays[name] for name, key in members.items()}


def read_weights(path, model=None, max_bytes=MAX_BYTES):
    """(state dict, kind) of the weights file at `path`, of any of the three kinds; only the weights
    are read, and each must be floating point (see the module's docstring). With `model`, the names and
    every shape must be the model's, checked before reading."""
    headers = read_headers(path)
    kind, members = weight_members(headers)
    if not members:
        raise LoadError(f"{path} is a {kind} without model weights (no '{PREFIX}*' members)")
    shapes = None
    if model is not None:
        shapes = model_shapes(model)
        _check_names(path, kind, set(members.values()), shapes)
    arrays = read_arrays(path, members, _weight_check(members, shapes), max_bytes)
    return {members[name]: value for name, value in arrays.items()}, kind


def model_shapes(model):
    """The model's state-dict name -> shape, without copying its arrays."""
    return {**{n: tuple(p.shape) for n, p in model.named_parameters()},
            **{n: tuple(b.shape) for n, b in model.named_buffers()}}


def _check_names(path, kind, have, shapes):
    missing = [k for k in shapes if k not in have]
    unexpected = sorted(have - set(shapes))
    if missing or unexpected:
        raise LoadError(f"{path} ({kind}) does not fit the model: missing {listing(missing)}, "
                        f"unexpected {listing(unexpected)}")


def weight_complaint(name, dtype):
    """Why the weight `name` of dtype `dtype` is refused (a string), or None: weights are floating point."""
    if dtype.kind == "f":
        return None
    return f"weight {name!r} must be a floating-point array (float32 or float64), got {dtype}"


def _weight_check(members, shapes):
    """read_arrays' check for the weights `members` (member -> state-dict name): floating point, and
    with `shapes` (the model's) each the shape the model has; other members pass."""
    def check(name, shape, dtype):
        if name not in members:
            return None
        key = members[name]
        if shapes is not None and shape != shapes[key]:
            return f"{name!r} has shape {shape} in the file but {shapes[key]} in the model"
        return weight_complaint(name, dtype)
    return check


def listing(keys, shown=3):
    """A short one-line list of names: the first few, and how many in all."""
    if not keys:
        return "none"
    more = f", ... ({len(keys)} in all)" if len(keys) > shown else ""
    return "[" + ", ".join(map(str, keys[:shown])) + more + "]"


class _Npz:
    """An .npz opened for checked reading: .headers gives name -> (shape, dtype, nbytes, fortran,
    zip entry) of every member, read from the .npy headers; .read(name) then reads one array."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise LoadError(f"{self.path} is not an .npz archive ({_reason(exc)})") from None
        try:
            self.headers = self._headers()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def _headers(self):
        headers = {}
        for info in self.zip.infolist():
            if not info.filename.endswith(".npy"):
                raise LoadError(f"{self.path}: member {info.filename!r} is not an .npy array")
            name = info.filename[:-len(".npy")]
            if name in headers:
                raise LoadError(f"{self.path}: member {name!r} appears twice")
            headers[name] = self._guarded(name, self._header, info)
        return headers

    def _header(self, name, info):
        with self.zip.open(info) as f:
            shape, dtype, fortran = _npy_header(f)
            offset = f.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufU":
            raise ValueError(f"dtype {dtype} is not a plain number or text array (pickles are never loaded)")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"declares {nbytes:,} bytes of data but its zip entry holds "
                             f"{info.file_size - offset:,}")
        return shape, dtype, nbytes, fortran, info

    def read(self, name):
        return self._guarded(name, self._read, self.headers[name])

    def _read(self, name, header):
        shape, dtype, nbytes, fortran, info = header
        flat = np.empty(math.prod(shape), dtype)
        view, got = memoryview(flat.view(np.uint8)) if nbytes else None, 0
        with self.zip.open(info) as f:
            _npy_header(f)
            while got < nbytes:                          # in pieces: no second copy of a large array
                n = f.readinto(view[got:got + _CHUNK])
                if not n:
                    break
                got += n
        if got != nbytes:
            raise ValueError(f"holds {got:,} of its {nbytes:,} bytes")
        return flat.reshape(shape, order="F" if fortran else "C")

    def _guarded(self, name, fn, arg):
        try:
            return fn(name, arg)
        except LoadError:
            raise
        except (ValueError, OSError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
            raise LoadError(f"{self.path}: member {name!r}: {_reason(exc)}") from None
        except Exception as exc:                  # e.g. tokenize's error for a garbled header
            raise LoadError(f"{self.path}: member {name!r} is unreadable ({type(exc).__name__})") from None


def _npy_header(f):
    """(shape, dtype, fortran order) from the .npy header at the start of the open file f."""
    version = np.lib.format.read_magic(f)
    if version not in _FORMATS:
        raise ValueError(f".npy format version {version} is not supported")
    shape, fortran, dtype = _FORMATS[version](f)
    return tuple(int(n) for n in shape), dtype, fortran


def _reason(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
