"""Build the CIFAR-10 sample shipped in minit2t/data/sample/ from a full copy of CIFAR-10.

    python -m minit2t.data.make_sample PATH/cifar-10-binary.tar.gz      # rewrites minit2t/data/sample/

The choice is deterministic: reading the records in file order (data_batch_1 ... data_batch_5 for
training, test_batch for test), the first SAMPLE_PER_CLASS[split] records of each class are kept,
in the order they were read. Each split is written in the standard binary layout (records of one
label byte, then 1024 R, 1024 G, 1024 B bytes), gzip-compressed with a zero timestamp, so the same
input gives byte-identical files. The shipped files were made from ../shared/data/cifar-10-binary.tar.gz
(see sample/README.md for its provenance).
"""
import argparse
import gzip
import hashlib
import os
import sys

import numpy as np

from minit2t.data.cifar import SAMPLE_DIR, SAMPLE_FILES, SAMPLE_PER_CLASS, load_cifar10_splits


def choose(labels, per_class):
    """Indices (sorted) of the first `per_class` examples of each of the 10 classes."""
    labels = np.asarray(labels)
    picked = [np.flatnonzero(labels == k)[:per_class] for k in range(10)]
    short = [k for k, idx in enumerate(picked) if len(idx) < per_class]
    if short:
        raise ValueError(f"classes {short} have fewer than {per_class} examples")
    return np.sort(np.concatenate(picked))


def records(images, labels):
    """Bytes of the standard binary layout: per image, its label byte then its 3072 pixel bytes."""
    n = len(labels)
    out = np.empty((n, 3073), np.uint8)
    out[:, 0] = labels
    out[:, 1:] = images.reshape(n, 3072)
    return out.tobytes()


def write_gzip(raw, path):
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(raw)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minit2t.data.make_sample", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="the full CIFAR-10 (archive or folder, either layout)")
    parser.add_argument("--out", default=SAMPLE_DIR, help=f"folder to write (default: {SAMPLE_DIR})")
    args = parser.parse_args(argv)
    full = load_cifar10_splits(args.source, ("train", "test"), download_if_missing=False)
    os.makedirs(args.out, exist_ok=True)
    for split, (images, labels) in full.items():
        idx = choose(labels, SAMPLE_PER_CLASS[split])
        raw = records(images[idx], labels[idx])
        path = os.path.join(args.out, SAMPLE_FILES[split])
        write_gzip(raw, path)
        print(f"{path}: {len(idx)} {split} images, {os.path.getsize(path):,} bytes, "
              f"sha256 of the records {hashlib.sha256(raw).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
