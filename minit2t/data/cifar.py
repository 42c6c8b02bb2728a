"""CIFAR-10 readers: the binary and the python layouts, as archives or extracted folders.

Legend: N images, C=3 channels, H=W=32.
Binary layout (cifar-10-binary.tar.gz -> cifar-10-batches-bin/): data_batch_1..5.bin and
test_batch.bin, RECORDS_PER_FILE records of 3073 bytes: a label byte (0..9), then 1024 R,
1024 G, 1024 B bytes, each plane row-major. Python layout (cifar-10-python.tar.gz ->
cifar-10-batches-py/): data_batch_1..5 and test_batch, pickled dicts {b"data": uint8
(n, 3072) in the same plane order, b"labels": [n ints]}, read by a restricted unpickler.
Every file is checked for structure (sizes, record counts, labels, gzip CRC); a damaged
file is a ValueError naming it, never a silently different dataset.

The sample (SAMPLE_DIR, shipped in the package): 2,000 training and 500 test images, the first
200 / 50 of each class in file order of a full copy (made by minit2t.data.make_sample), each split
one gzip-compressed file in the binary layout. It is what load_cifar10 reads when no path is given
and none is found, so that everything runs on a fresh machine; figures from it are not CIFAR-10's.
"""
import gzip
import os
import sys
import tarfile
import zlib

import numpy as np

from minit2t.data import download
from minit2t.data.safe_pickle import safe_loads

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD_BYTES = 1 + 3 * 32 * 32
RECORDS_PER_FILE = 10000
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
ARCHIVES = ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz", "cifar-10-binary.tar", "cifar-10-python.tar")
FOLDERS = ("cifar-10-batches-bin", "cifar-10-batches-py")
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample")
SAMPLE_FILES = {"train": "cifar10_sample_train.bin.gz", "test": "cifar10_sample_test.bin.gz"}
SAMPLE_PER_CLASS = {"train": 200, "test": 50}


def load_cifar10(path=None, split="train", download_if_missing=None):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of the "train" (50000) or "test" (10000) split.

    Where: `path` (an archive, a batches folder, a folder holding either, or SAMPLE_DIR), else
    $MINIT2T_DATA, else the cache folder (see minit2t.data.download). When none holds CIFAR-10:
    download_if_missing=None (default) reads the sample shipped with minit2t (2,000 training,
    500 test images), saying so in one line on stderr; True downloads the official python
    archive into the cache folder; False raises FileNotFoundError.
    An archive is decompressed to its end (its gzip CRC checked): ~3 s for the 170 MB file.
    """
    return load_cifar10_splits(path, (split,), download_if_missing)[split]


def load_cifar10_splits(path=None, splits=("train", "test"), download_if_missing=None):
    """{split: (images, labels)} for every split asked for, reading an archive only once."""
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    location = resolve_path(path, download_if_missing)
    if is_sample(location):
        if path is None and not os.environ.get("MINIT2T_DATA"):
            print(sample_note(), file=sys.stderr, flush=True)
        return {split: _read_sample(location, split) for split in splits}
    if os.path.isdir(location):
        blobs = _read_folder(location, splits)
    else:
        blobs = _read_archive(location, splits)
    return {split: _assemble(blobs, split) for split in splits}


def is_sample(location):
    """Whether `location` (as resolve_path returns it) is a folder holding the sample's files."""
    return os.path.isdir(location) and all(os.path.isfile(os.path.join(location, name))
                                           for name in SAMPLE_FILES.values())


def sample_note():
    """The one line said when the sample stands in for CIFAR-10."""
    n = {split: 10 * k for split, k in SAMPLE_PER_CLASS.items()}
    return (f"CIFAR-10: none given or found (--data, $MINIT2T_DATA, {download.cache_dir()}): using the sample "
            f"shipped with minit2t ({n['train']:,} training, {n['test']:,} test images); for the full data "
            f"set pass its path (--data) or fetch it (--download)")


# ---- where the data is ------------------------------------------------------------------------
def resolve_path(path=None, download_if_missing=None):
    """The archive file, batches folder or sample folder to read, following the order of load_cifar10."""
    if path is not None:
        return _locate(os.fspath(path), "the path given")
    if os.environ.get("MINIT2T_DATA"):
        return _locate(os.environ["MINIT2T_DATA"], "$MINIT2T_DATA")
    cache = download.cache_dir()
    if os.path.isdir(cache):
        try:
            return _locate(cache, "the cache folder")
        except FileNotFoundError:
            pass
    if download_if_missing is None:
        return SAMPLE_DIR
    if not download_if_missing:
        raise FileNotFoundError(f"no CIFAR-10 in {cache}; put cifar-10-binary.tar.gz or cifar-10-python.tar.gz "
                                f"there, or set MINIT2T_DATA to the file or folder")
    return download.download_cifar10(folder=cache)


def _locate(path, what):
    """`path` itself if it is an archive or a batches folder, else one found inside it."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"CIFAR-10: {what} {path} does not exist")
    if _is_batches_folder(path) or is_sample(path):
        return path
    for name in FOLDERS + ARCHIVES:
        candidate = os.path.join(path, name)
        if os.path.isdir(candidate) and _is_batches_folder(candidate) or os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"CIFAR-10: {what} {path} holds none of {', '.join(FOLDERS + ARCHIVES)} "
                            f"and no data_batch_1.bin / data_batch_1")


def _is_batches_folder(path):
    return any(os.path.isfile(os.path.join(path, n)) for n in ("data_batch_1.bin", "data_batch_1"))


# ---- reading raw members -----------------------------------------------------------------------
def _wanted(splits):
    """Member base name -> (split, position, layout) for both layouts."""
    out = {}
    for split in splits:
        for i, stem in enumerate(SPLITS[split]):
            out[stem + ".bin"] = (split, i, "bin")
            out[stem] = (split, i, "py")
    return out


def _read_folder(folder, splits):
    """{(split, position, layout): (bytes, file name)} from the files of a batches folder."""
    layout = "bin" if os.path.isfile(os.path.join(folder, "data_batch_1.bin")) else "py"
    blobs = {}
    for name, key in _wanted(splits).items():
        if key[2] != layout:
            continue
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise ValueError(f"CIFAR-10 folder {folder} lacks {name}")
        with open(file, "rb") as f:
            blobs[key] = (f.read(), file)
    return blobs


def _read_archive(archive, splits):
    """{(split, position, layout): (bytes, member name)}, reading the archive to its end (CRC)."""
    wanted = _wanted(splits)
    blobs = {}
    try:
        with open(archive, "rb") as raw:
            gz = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else None
            raw.seek(0)
            stream = gz or raw
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    key = wanted.get(os.path.basename(member.name))
                    if key is None or not member.isfile():
                        continue
                    if key in blobs:
                        raise ValueError(f"CIFAR-10 archive {archive}: {member.name} appears twice")
                    blobs[key] = (tar.extractfile(member).read(), f"{archive}:{member.name}")
            while stream.read(download.CHUNK):    # to the end, so gzip checks its CRC and length
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise ValueError(f"CIFAR-10 archive {archive} is damaged or not a tar archive: {exc}") from None
    return blobs


# ---- parsing -------------------------------------------------------------------------------------
def _assemble(blobs, split):
    """One split from its members: the binary layout if complete, else the python one."""
    names = SPLITS[split]
    for layout in ("bin", "py"):
        if all((split, i, layout) in blobs for i in range(len(names))):
            parse = _parse_bin if layout == "bin" else _parse_py
            parts = [parse(*blobs[(split, i, layout)]) for i in range(len(names))]
            images = np.concatenate([p[0] for p in parts])   # (N, 3, 32, 32), a fresh array
            return images, np.concatenate([p[1] for p in parts])
    found = sorted({key[2] for key in blobs if key[0] == split})
    raise ValueError(f"CIFAR-10: the {split} split needs all of {names} (binary '.bin' or python layout); "
                     f"found only some ({', '.join(found) or 'none'})")


def _read_sample(folder, split):
    """One split of the sample: a gzip file of SAMPLE_PER_CLASS[split] records per class."""
    path = os.path.join(folder, SAMPLE_FILES[split])
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()                                   # checks the CRC and length
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"CIFAR-10 sample {path} is damaged: {exc}") from None
    images, labels = _parse_bin(raw, path, 10 * SAMPLE_PER_CLASS[split])
    return images.copy(), labels


def _parse_bin(raw, where, n=None):
    n = RECORDS_PER_FILE if n is None else n
    if len(raw) != n * RECORD_BYTES:
        raise ValueError(f"CIFAR-10 {where}: expected {n} records of {RECORD_BYTES} bytes ({n * RECORD_BYTES} "
                         f"bytes), got {len(raw)} bytes")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(n, RECORD_BYTES)      # (n, 3073)
    labels = records[:, 0].astype(np.int64)                                     # (n,)
    _check_labels(labels, where)
    return records[:, 1:].reshape(n, 3, 32, 32), labels                        # (n, 3, 32, 32)


def _parse_py(raw, where):
    n = RECORDS_PER_FILE
    try:
        batch = safe_loads(raw)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle is a damaged file
        raise ValueError(f"CIFAR-10 {where}: not a readable CIFAR-10 python batch ({type(exc).__name__}: "
                         f"{exc})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"CIFAR-10 {where}: expected a dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (n, 3072):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"CIFAR-10 {where}: 'data' must be uint8 of shape ({n}, 3072), got {got}")
    labels = np.asarray(labels if isinstance(labels, (list, np.ndarray)) else None)
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise ValueError(f"CIFAR-10 {where}: 'labels' must be {n} integers, got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    _check_labels(labels, where)
    return data.reshape(n, 3, 32, 32), labels                                  # (n, 3, 32, 32)


def _check_labels(labels, where):
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise ValueError(f"CIFAR-10 {where}: record {bad[0]} has label {labels[bad[0]]}, expected 0..9")
