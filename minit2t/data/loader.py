"""Batches of a dataset held in memory: shuffled from a seed, augmented, optionally mixed.

Legend: N dataset size, B batch, C=3 channels, H=W=32, K=10 classes.
Epoch e of a loader with seed s draws everything (order, crops, flips, 3-Augment, mixing) from
np.random.default_rng((s, e)), so a run restarted at epoch e sees the same batches.
"""
import numpy as np

from minit2t.data.transforms import augment as _augment
from minit2t.data.transforms import check_pad_mode, check_padding, mixup_cutmix, normalize


def subset(images, labels, n, seed=None):
    """The first n examples, or (seed given) n examples drawn without replacement, in dataset order."""
    N = len(images)
    if len(labels) != N:
        raise ValueError(f"subset: {N} images but {len(labels)} labels")
    if not (isinstance(n, (int, np.integer)) and 1 <= n <= N):
        raise ValueError(f"subset size must be an int in [1, {N}], got {n!r}")
    if seed is None:
        return images[:n], labels[:n]
    idx = np.sort(np.random.default_rng(seed).choice(N, size=n, replace=False))     # (n,)
    return images[idx], labels[idx]


class DataLoader:
    """Iterate over (images float32 (B, 3, H, W), targets) batches of uint8 images (N, 3, H, W).

    targets are the int64 labels (B,), or with `mixup` (True for the release's settings,
    or a dict of mixup_cutmix keyword arguments) soft targets (B, K) float32.
    augment: random crop (padding `crop_padding`, 0 for none, in `pad_mode` "zero" or "reflect") + flip,
    then DeiT III's 3-Augment when `three_augment`, before normalisation (training); else normalisation only.
    """

    def __init__(self, images, labels, batch_size=128, shuffle=False, drop_last=False, augment=False,
                 mixup=None, seed=0, crop_padding=4, pad_mode="zero", three_augment=False):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"DataLoader expects uint8 images (N, 3, H, W), got {images.dtype} {images.shape}")
        if labels.shape != images.shape[:1] or labels.dtype.kind not in "iu":
            raise ValueError(f"DataLoader expects int labels of shape ({len(images)},), got {labels.dtype} "
                             f"{labels.shape}")
        if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.augment, self.seed, self.epoch = bool(augment), int(seed), 0
        self.crop_padding = check_padding(crop_padding, "crop_padding")
        self.pad_mode, self.three_augment = check_pad_mode(pad_mode, "pad_mode"), bool(three_augment)
        self.mixup = None if mixup is None or mixup is False else ({} if mixup is True else dict(mixup))

    def __len__(self):
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch):
        """The epoch the next iteration draws from (iterating moves on to the next one)."""
        self.epoch = int(epoch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch):
        """The batches of epoch `epoch`, the same every time for the same seed."""
        rng = np.random.default_rng((self.seed, int(epoch)))
        N = len(self.images)
        order = rng.permutation(N) if self.shuffle else np.arange(N)               # (N,)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]             # (B,)
            x, y = self.images[idx], self.labels[idx]                              # (B, 3, H, W), (B,)
            x = (_augment(x, rng, self.crop_padding, self.pad_mode, self.three_augment) if self.augment
                 else normalize(x))                                                 # float32 (B, 3, H, W)
            if self.mixup is not None:
                x, y = mixup_cutmix(x, y, rng, **self.mixup)                       # y: (B, K)
            yield x, y
