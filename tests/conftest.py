"""Shared test setup: the hypothesis profile, the float64 switch, and `dataset`: a small learnable
CIFAR-format folder for the training and evaluation tests."""
import os

import numpy as np
import pytest
from hypothesis import settings

from minit2t.data import cifar

settings.register_profile("minit2t", deadline=None, max_examples=25, derandomize=True)
settings.register_profile("thorough", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minit2t"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


PER_FILE = 40                        # records per batch file: 200 training, 40 test images


def _write_dataset(root):
    """A learnable CIFAR-format folder: each class is a colour plus noise."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (10, 3))
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        labels = rng.integers(0, 10, PER_FILE)
        images = colours[labels][:, :, None] + rng.normal(0, 40, (PER_FILE, 3, 1024))
        images = np.clip(images, 0, 255).astype(np.uint8)
        records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(PER_FILE, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    return folder


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """The path of a learnable CIFAR-format folder (200 training, 40 test images)."""
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", PER_FILE)
    return str(_write_dataset(tmp_path))
