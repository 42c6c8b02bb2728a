"""CIFAR-10 readers, download, restricted unpickling and the input pipeline.

The readers are tested on small CIFAR-format files written here (RECORDS_PER_FILE
patched to 4), and on the real copy in ../shared/data when it is there.
"""
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minit2t.data import (CIFAR10_MEAN, CIFAR10_STD, DataLoader, augment, cifar, crop_at, cutmix, download,
                          download_cifar10, flip_where, load_cifar10, load_cifar10_splits, mixup, mixup_cutmix,
                          normalize, random_crop, safe_loads, smooth_one_hot, subset)

N = 4                                                   # records per batch file in these tests
REAL_COPY = Path(__file__).parent.parent.parent / "shared" / "data" / "cifar-10-binary.tar.gz"
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(autouse=True)
def small_files(monkeypatch, tmp_path):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", N)
    monkeypatch.delenv("MINIT2T_DATA", raising=False)
    monkeypatch.setenv("MINIT2T_CACHE", str(tmp_path / "cache"))


def fake_dataset(seed=0):
    """{file stem: (images uint8 (N, 3, 32, 32), labels int64 (N,))}."""
    r = np.random.default_rng(seed)
    return {name: (r.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8), r.integers(0, 10, N)) for name in NAMES}


def bin_bytes(images, labels):
    """Records: label byte, then the R, G, B planes row-major."""
    return np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1).tobytes()


def py_bytes(images, labels):
    batch = {b"batch_label": b"batch", b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), 3072), b"filenames": [b"img.png"] * len(images)}
    return pickle.dumps(batch, protocol=2)


def members(ds, layout="bin", **replace):
    folder, suffix, encode = (("cifar-10-batches-bin", ".bin", bin_bytes) if layout == "bin"
                              else ("cifar-10-batches-py", "", py_bytes))
    out = {f"{folder}/{name}{suffix}": encode(*ds[name]) for name in NAMES}
    out[f"{folder}/batches.meta.txt"] = b"airplane\n"
    for stem, data in replace.items():
        out[f"{folder}/{stem}{suffix}"] = data
    return out


def write_tar(path, files, gz=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())
    return path


def write_folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def assert_dataset(got, ds):
    for split, names in (("train", NAMES[:5]), ("test", NAMES[5:])):
        images, labels = got[split]
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, np.concatenate([ds[n][0] for n in names]), strict=True)
        np.testing.assert_array_equal(labels, np.concatenate([ds[n][1] for n in names]), strict=True)


# ---- readers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["bin", "py"])
def test_archive_and_folders_read_back(tmp_path, layout):
    ds = fake_dataset()
    files = members(ds, layout)
    archive = write_tar(tmp_path / f"cifar-10-{layout}.tar.gz", files)
    root = write_folder(tmp_path / "extracted", files)
    batches = root / ("cifar-10-batches-bin" if layout == "bin" else "cifar-10-batches-py")
    for where in (archive, root, batches, write_tar(tmp_path / "plain.tar", files, gz=False)):
        assert_dataset(load_cifar10_splits(where), ds)
    x, y = load_cifar10(archive, "test")
    np.testing.assert_array_equal(x, ds["test_batch"][0])


def test_record_layout_is_label_then_rgb_planes(tmp_path):
    ds = fake_dataset()
    record = np.zeros(3073, np.uint8)
    record[0], record[1:1025], record[1025 + 32 * 5 + 7] = 3, 200, 9     # label 3, R = 200, G[5, 7] = 9
    raw = bytearray(bin_bytes(*ds["test_batch"]))
    raw[:3073] = record.tobytes()
    images, labels = load_cifar10(write_tar(tmp_path / "a.tar.gz", members(ds, test_batch=bytes(raw))), "test")
    assert labels[0] == 3 and (images[0, 0] == 200).all()
    assert images[0, 1, 5, 7] == 9 and images[0, 1].sum() == 9 and not images[0, 2].any()


def test_path_resolution_order(tmp_path, monkeypatch):
    ds, other = fake_dataset(0), fake_dataset(1)
    mine = write_tar(tmp_path / "mine.tar.gz", members(ds))
    env = write_folder(tmp_path / "env", members(other))
    monkeypatch.setenv("MINIT2T_DATA", str(env))
    assert_dataset(load_cifar10_splits(mine), ds)                       # explicit path first
    assert_dataset(load_cifar10_splits(), other)                        # then $MINIT2T_DATA
    monkeypatch.setenv("MINIT2T_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="MINIT2T_DATA"):
        load_cifar10()
    with pytest.raises(FileNotFoundError, match="holds none of"):
        load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_cifar10(mine, "valid")


def damaged_archives(tmp_path, ds):
    """(expected message, path) for archives broken in the ways a download or a disk breaks them."""
    good = gzip.decompress(write_tar(tmp_path / "good.tar.gz", members(ds)).read_bytes())
    gz = gzip.compress(good)
    bad_label = bytearray(bin_bytes(*ds["data_batch_3"]))
    bad_label[2 * 3073] = 10
    crc, body = bytearray(gz), bytearray(gz)
    crc[-8] ^= 0xFF                                                     # the gzip trailer's CRC32
    body[len(body) // 2] ^= 0x55                                        # somewhere inside the data
    cases = [("data_batch_3.bin: record 2 has label 10", members(ds, data_batch_3=bytes(bad_label))),
             ("data_batch_2.bin: expected 4 records", members(ds, data_batch_2=bin_bytes(*ds["data_batch_2"])[:-5])),
             ("test_batch.bin: expected 4 records of 3073 bytes (12292 bytes), got 9219 bytes",
              members(ds, test_batch=bin_bytes(*ds["test_batch"])[:3 * 3073])),
             ("ended before the end-of-stream", gz[: len(gz) * 2 // 3]), ("CRC check failed", bytes(crc)),
             ("damaged", bytes(body)), ("unexpected end of data", gzip.compress(good[: len(good) // 2])),
             ("damaged", b"\x1f\x8b" + b"garbage" * 100)]
    out = []
    for i, (message, content) in enumerate(cases):
        path = tmp_path / f"case{i}.tar.gz"
        out.append((message, write_tar(path, content) if isinstance(content, dict) else path))
        if not isinstance(content, dict):
            path.write_bytes(content)
    return out


def test_damaged_archives_are_errors_naming_the_file(tmp_path):
    for message, path in damaged_archives(tmp_path, fake_dataset()):
        with pytest.raises(ValueError) as info:
            load_cifar10_splits(path)
        assert message in str(info.value) and str(path) in str(info.value), str(info.value)


def test_damaged_folders_and_missing_members(tmp_path):
    ds = fake_dataset()
    root = write_folder(tmp_path / "d", members(ds, data_batch_5=bin_bytes(*ds["data_batch_5"])[:-1]))
    with pytest.raises(ValueError, match="data_batch_5.bin: expected 4 records"):
        load_cifar10(root, "train")
    assert load_cifar10(root, "test")[0].shape == (N, 3, 32, 32)      # the test split is intact
    files = members(ds)
    del files["cifar-10-batches-bin/data_batch_4.bin"]
    with pytest.raises(ValueError, match="needs all of"):
        load_cifar10(write_tar(tmp_path / "m.tar.gz", files))
    with pytest.raises(ValueError, match="labels"):
        load_cifar10(write_tar(tmp_path / "p.tar.gz", members(ds, "py", data_batch_1=pickle.dumps(
            {b"data": ds["data_batch_1"][0].reshape(N, -1), b"labels": [0.5] * N}, protocol=2))))


# ---- restricted unpickling ---------------------------------------------------------------------
# A 2x3 batch as Python 2's cPickle (protocol 2) writes the official files: byte strings, numpy.core.
PY2_BATCH = (b"\x80\x02}(U\x04datacnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
             b"(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff"
             b"\xff\xffK\x00tb\x89U\x06\x00\x01\x02\x03\x04\x05tbU\x06labels](K\x01K\x02eu.")


def test_restricted_unpickler_reads_official_structure_and_refuses_code(tmp_path):
    py2 = safe_loads(PY2_BATCH)
    np.testing.assert_array_equal(py2[b"data"], np.arange(6, dtype=np.uint8).reshape(2, 3), strict=True)
    assert py2[b"labels"] == [1, 2]
    ds = fake_dataset()
    batch = safe_loads(py_bytes(*ds["data_batch_1"]))
    np.testing.assert_array_equal(batch[b"data"], ds["data_batch_1"][0].reshape(N, 3072))
    assert batch[b"labels"] == ds["data_batch_1"][1].tolist() and batch[b"filenames"][0] == b"img.png"
    marker = tmp_path / "executed"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()           # os.system("touch marker")
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        safe_loads(evil)
    for payload in (np.array([1, None], dtype=object), np.array([1, 2]).view(np.matrix), print):
        with pytest.raises(pickle.UnpicklingError):
            safe_loads(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2.*os.system"):
        load_cifar10(write_tar(tmp_path / "evil.tar.gz", members(ds, "py", data_batch_2=evil)))
    assert not marker.exists()
    pickle.loads(evil)                                                 # the payload is live: plain pickle runs it
    assert marker.exists()


# ---- download ------------------------------------------------------------------------------------
def test_download_checks_md5_and_writes_atomically(tmp_path, monkeypatch):
    ds = fake_dataset()
    source = write_tar(tmp_path / "cifar-10-python.tar.gz", members(ds, "py"))
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    folder = tmp_path / "cache"
    with pytest.raises(ValueError, match=f"expected {'0' * 32}"):
        download_cifar10(source.as_uri(), "0" * 32, folder)
    assert os.listdir(folder) == []                                    # nothing kept, no temp file
    with pytest.raises(FileNotFoundError) as info:
        download_cifar10((tmp_path / "offline.tar.gz").as_uri(), md5, folder)
    assert str(folder) in str(info.value) and "MINIT2T_DATA" in str(info.value)
    monkeypatch.setattr(download, "CIFAR10_URL", source.as_uri())
    monkeypatch.setattr(download, "CIFAR10_MD5", md5)
    with pytest.raises(FileNotFoundError, match="no CIFAR-10"):
        load_cifar10(download_if_missing=False)
    assert load_cifar10_splits()["test"][0].shape == (500, 3, 32, 32)   # nothing found: the shipped sample
    assert os.listdir(folder) == []
    assert_dataset(load_cifar10_splits(download_if_missing=True), ds)  # downloaded into $MINIT2T_CACHE
    assert os.listdir(folder) == ["cifar-10-python.tar.gz"]
    source.unlink()
    assert_dataset(load_cifar10_splits(), ds)                          # read from the cache now


# ---- input pipeline ----------------------------------------------------------------------------------
def test_crop_flip_normalize():
    r = np.random.default_rng(0)
    x = r.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    top, left = r.integers(0, 9, 6), r.integers(0, 9, 6)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    want = np.stack([padded[b, :, top[b]:top[b] + 32, left[b]:left[b] + 32] for b in range(6)])
    np.testing.assert_array_equal(crop_at(x, top, left), want)
    mask = np.array([1, 0, 1, 0, 0, 1], bool)
    flipped = flip_where(x, mask)
    np.testing.assert_array_equal(flipped[mask], x[mask][..., ::-1])
    np.testing.assert_array_equal(flipped[~mask], x[~mask])
    out = normalize(x)
    ref = (x / 255.0 - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None, None]
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        crop_at(x, top + 9, left)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        random_crop(x[0], r)


def test_augment_is_a_crop_and_flip_and_deterministic():
    x = np.random.default_rng(1).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    a, b = augment(x, np.random.default_rng(5)), augment(x, np.random.default_rng(5))
    assert a.dtype == np.float32 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment(x, np.random.default_rng(6)))
    r = np.random.default_rng(5)
    top, left = r.integers(0, 9, size=(2, 64))
    mask = r.random(64) < 0.5
    np.testing.assert_array_equal(a, normalize(flip_where(crop_at(x, top, left), mask)))
    assert 0 < mask.sum() < 64 and len({(t, s) for t, s in zip(top, left)}) > 10


def test_data_loader_epochs():
    images = np.random.default_rng(2).integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(10)
    loader = DataLoader(images, labels, batch_size=4, shuffle=True, augment=True, seed=3)
    assert len(loader) == 3 and len(DataLoader(images, labels, 4, drop_last=True)) == 2
    e0, e1 = list(loader), list(loader)                                # epochs 0 and 1
    assert [x.shape for x, _ in e0] == [(4, 3, 32, 32)] * 2 + [(2, 3, 32, 32)]
    assert sorted(np.concatenate([y for _, y in e0]).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate([y for _, y in e0]), np.concatenate([y for _, y in e1]))
    loader.set_epoch(0)
    for (x, y), (x2, y2) in zip(e0, loader):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    (x, y), = list(DataLoader(images, labels, batch_size=6, drop_last=True))
    np.testing.assert_array_equal(x, normalize(images[:6]))
    np.testing.assert_array_equal(y, np.arange(6))
    (x, y), = list(DataLoader(images, labels, batch_size=10, mixup={}))       # {}: the release's settings
    assert x.dtype == y.dtype == np.float32 and y.shape == (10, 10)
    with pytest.raises(ValueError, match="uint8"):
        DataLoader(images.astype(np.float32), labels)


def test_mixup_and_cutmix_targets():
    r = np.random.default_rng(4)
    x = r.standard_normal((8, 3, 32, 32)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 5, 6, 9])
    t = smooth_one_hot(y, 10, 0.1)
    assert t[0, 0] == pytest.approx(0.91) and t[0, 1] == pytest.approx(0.01)
    mx, my = mixup(x, y, 0.7, smoothing=0.1)
    np.testing.assert_allclose(mx, 0.7 * x + 0.3 * x[::-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(my, 0.7 * t + 0.3 * t[::-1], rtol=1e-6)
    cx, cy = cutmix(x, y, 0.75, r, smoothing=0.0)
    pasted = (cx != x).any(axis=(0, 1))                                # (H, W) box that changed
    rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
    box = np.zeros((32, 32), bool)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    np.testing.assert_array_equal(cx[..., box], x[::-1][..., box])
    np.testing.assert_array_equal(cx[..., ~box], x[..., ~box])
    kept = 1.0 - box.mean()                                           # label 0 pairs with label 9
    np.testing.assert_allclose(cy[0, [0, 9]], [kept, 1.0 - kept], rtol=1e-6)


def test_mixup_cutmix_draws_both_deterministically():
    x, y = np.random.default_rng(4).standard_normal((8, 3, 32, 32)).astype(np.float32), np.arange(8)
    kinds = set()
    for seed in range(8):
        a, b = mixup_cutmix(x, y, np.random.default_rng(seed))
        c, d = mixup_cutmix(x, y, np.random.default_rng(seed))
        assert a.dtype == b.dtype == np.float32 and b.shape == (8, 10)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_allclose(b.sum(1), 1.0, rtol=1e-6)
        assert b.min() >= 0.01 - 1e-7                                  # smoothing 0.1 over 10 classes
        kinds.add(bool((a == x).any()))                                # cutmix leaves pixels as they were
    assert kinds == {True, False}


def test_subset():
    x, y = np.arange(20).reshape(20, 1), np.arange(20)
    assert subset(x, y, 5)[1].tolist() == [0, 1, 2, 3, 4]
    a, b = subset(x, y, 7, seed=1)[1], subset(x, y, 7, seed=1)[1]
    assert a.tolist() == b.tolist() == sorted(set(a.tolist())) and len(a) == 7
    with pytest.raises(ValueError, match=r"\[1, 20\]"):
        subset(x, y, 21)


@pytest.mark.skipif(not REAL_COPY.exists(), reason="no CIFAR-10 copy in ../shared/data")
def test_real_copy_loads(monkeypatch):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", 10000)
    data = load_cifar10_splits(REAL_COPY)
    for split, n in (("train", 50000), ("test", 10000)):
        images, labels = data[split]
        assert images.shape == (n, 3, 32, 32) and images.dtype == np.uint8 and labels.dtype == np.int64
        assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10


def test_crop_padding_zero_is_flip_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    loader = DataLoader(images, np.arange(6), batch_size=6, augment=True, seed=1, crop_padding=0)
    (x, y), = list(loader.iter_epoch(0))
    plain = normalize(images)
    for out, ref in zip(x, plain[y]):
        assert np.array_equal(out, ref) or np.array_equal(out, ref[:, :, ::-1])
    with pytest.raises(ValueError, match="crop_padding must be an int >= 0, got -1"):
        DataLoader(images, np.arange(6), crop_padding=-1)


def test_negative_crop_padding_is_named():
    x = np.zeros((2, 3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"random_crop: padding must be an int >= 0, got -2"):
        random_crop(x, np.random.default_rng(0), padding=-2)
    with pytest.raises(ValueError, match=r"augment: padding must be an int >= 0, got -1"):
        augment(x, np.random.default_rng(0), padding=-1)
    with pytest.raises(ValueError, match=r"crop_at: padding must be an int >= 0, got -1"):
        crop_at(x, np.zeros(2, np.int64), np.zeros(2, np.int64), padding=-1)
