"""CIFAR-10 and its input pipeline.

    train_x, train_y = mt.data.load_cifar10(split="train")       # uint8 (50000, 3, 32, 32), int64
                                        # (the 2,000-image sample shipped with minit2t when none is found)
    loader = mt.data.DataLoader(train_x, train_y, 128, shuffle=True, augment=True, seed=0)
    for x, y in loader: ...                                        # float32 (128, 3, 32, 32), (128,)
"""
from minit2t.data.augment3 import (color_jitter, gaussian_blur, gaussian_kernel, grayscale, luma, solarize,
                                   three_augment, three_augment_at)
from minit2t.data.cifar import CLASSES, SAMPLE_DIR, is_sample, load_cifar10, load_cifar10_splits, resolve_path
from minit2t.data.download import CIFAR10_MD5, CIFAR10_URL, cache_dir, download_cifar10
from minit2t.data.loader import DataLoader, subset
from minit2t.data.safe_pickle import RestrictedUnpickler, safe_loads
from minit2t.data.transforms import (CIFAR10_MEAN, CIFAR10_STD, PAD_MODES, augment, crop_at, cutmix, flip_where,
                                     mixup, mixup_cutmix, normalize, random_crop, random_flip, smooth_one_hot)

__all__ = ["CIFAR10_MD5", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_URL", "CLASSES", "DataLoader", "PAD_MODES",
           "RestrictedUnpickler", "SAMPLE_DIR", "augment", "cache_dir", "color_jitter", "crop_at", "cutmix",
           "download_cifar10", "flip_where", "gaussian_blur", "gaussian_kernel", "grayscale", "is_sample",
           "load_cifar10", "load_cifar10_splits", "luma", "mixup", "mixup_cutmix", "normalize", "random_crop",
           "random_flip", "resolve_path", "safe_loads", "smooth_one_hot", "solarize", "subset", "three_augment",
           "three_augment_at"]
