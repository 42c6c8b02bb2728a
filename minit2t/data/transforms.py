"""The CIFAR-10 training input pipeline, vectorised over a batch of uint8 images.

Legend: B batch, C=3 channels, H=W=32 image side, P padding, K=10 classes.
    random_crop   pad by P (zeros, or mirrored pixels with pad_mode="reflect"), take a 32x32 window at a
                  random offset per image
    random_flip   mirror left-right with probability 1/2 per image
    normalize     uint8 -> float32 (x / 255 - mean) / std per channel
    augment       crop -> flip -> (optionally) 3-Augment (minit2t.data.augment3) -> normalize
    mixup_cutmix  the release's batch mixing (timm Mixup): soft targets (B, K) float32
"""
import numpy as np

from minit2t.data.augment3 import three_augment as _three_augment

PAD_MODES = ("zero", "reflect")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_images(images, what):
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3:
        got = images.shape if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{what} expects images of shape (B, 3, H, W), got {got}")


def check_padding(padding, what):
    """The crop padding as an int; ValueError naming `what` unless it is an int >= 0."""
    if not (isinstance(padding, (int, np.integer)) and padding >= 0):
        raise ValueError(f"{what} must be an int >= 0, got {padding!r}")
    return int(padding)


def check_pad_mode(pad_mode, what):
    """The crop padding mode; ValueError naming `what` unless it is "zero" or "reflect"."""
    if not (isinstance(pad_mode, str) and pad_mode in PAD_MODES):
        raise ValueError(f"{what} must be 'zero' or 'reflect', got {pad_mode!r}")
    return pad_mode


def crop_at(images, top, left, padding=4, pad_mode="zero"):
    """Window (top, left) of each padded image: out[b] = pad(images[b])[:, top[b]:+H, left[b]:+W].
    pad_mode "zero" pads with zeros, "reflect" mirrors without repeating the edge (np.pad mode "reflect",
    torchvision's padding_mode="reflect"; needs padding < H and W)."""
    _check_images(images, "crop_at")
    B, C, H, W = images.shape
    P = check_padding(padding, "crop_at: padding")
    check_pad_mode(pad_mode, "crop_at: pad_mode")
    if pad_mode == "reflect" and P >= min(H, W):
        raise ValueError(f"crop_at: reflect padding needs padding < H and W, got padding {P} for {H}x{W} images")
    top, left = np.asarray(top), np.asarray(left)
    for name, off in (("top", top), ("left", left)):
        if off.shape != (B,) or off.dtype.kind not in "iu" or (B and (off.min() < 0 or off.max() > 2 * P)):
            raise ValueError(f"crop_at expects {name} offsets: {B} ints in [0, {2 * P}], got {off.dtype} "
                             f"{off.shape}")
    if pad_mode == "reflect":
        padded = np.pad(images, ((0, 0), (0, 0), (P, P), (P, P)), mode="reflect")  # (B, C, H+2P, W+2P)
    else:
        padded = np.zeros((B, C, H + 2 * P, W + 2 * P), dtype=images.dtype)    # (B, C, H+2P, W+2P)
        padded[:, :, P:P + H, P:P + W] = images
    windows = np.lib.stride_tricks.sliding_window_view(padded, (H, W), axis=(2, 3))  # (B, C, 2P+1, 2P+1, H, W)
    return windows[np.arange(B), :, top, left]                                 # (B, C, H, W)


def random_crop(images, rng, padding=4, pad_mode="zero"):
    """Random crop with zero (or reflect) padding, one offset per image drawn from `rng`."""
    _check_images(images, "random_crop")
    padding = check_padding(padding, "random_crop: padding")
    check_pad_mode(pad_mode, "random_crop: pad_mode")
    top, left = rng.integers(0, 2 * padding + 1, size=(2, images.shape[0]))    # (B,) each
    return crop_at(images, top, left, padding, pad_mode)


def flip_where(images, mask):
    """Images with those where mask (B,) is True mirrored left-right (a new array)."""
    _check_images(images, "flip_where")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != images.shape[:1]:
        raise ValueError(f"flip_where expects a mask of shape ({images.shape[0]},), got {mask.shape}")
    out = images.copy()
    out[mask] = images[mask][..., ::-1]
    return out


def random_flip(images, rng):
    _check_images(images, "random_flip")
    return flip_where(images, rng.random(images.shape[0]) < 0.5)


def normalize(images, mean=CIFAR10_MEAN, std=CIFAR10_STD):
    """uint8 (B, 3, H, W) -> float32 (B, 3, H, W): (x / 255 - mean) / std per channel."""
    _check_images(images, "normalize")
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float64))).astype(np.float32)   # (3,)
    shift = (-np.asarray(mean, dtype=np.float64) / np.asarray(std)).astype(np.float32)
    return images * scale[:, None, None] + shift[:, None, None]                # (B, 3, H, W) float32


def augment(images, rng, padding=4, pad_mode="zero", three_augment=False):
    """The training transform of uint8 (B, 3, H, W) -> float32: random crop (padding by `padding` in
    `pad_mode`; none when padding is 0), random flip, DeiT III's 3-Augment when `three_augment`,
    normalisation. Draws from `rng` in that order (the defaults draw exactly crop then flip)."""
    padding = check_padding(padding, "augment: padding")
    check_pad_mode(pad_mode, "augment: pad_mode")
    cropped = random_crop(images, rng, padding, pad_mode) if padding else images
    flipped = random_flip(cropped, rng)                                        # (B, 3, H, W) uint8
    return normalize(_three_augment(flipped, rng) if three_augment else flipped)


# ---- batch mixing --------------------------------------------------------------------------------
def smooth_one_hot(labels, num_classes=10, smoothing=0.0):
    """(B,) ints -> (B, K) float32: 1 - smoothing + smoothing/K on the label, smoothing/K elsewhere."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and
                                                             (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"expected int labels of shape (B,) in [0, {num_classes}), got {labels.dtype} "
                         f"{labels.shape}")
    off = smoothing / num_classes
    out = np.full((labels.shape[0], num_classes), off, dtype=np.float32)      # (B, K)
    out[np.arange(labels.shape[0]), labels] = 1.0 - smoothing + off
    return out


def mixup(images, labels, lam, num_classes=10, smoothing=0.0):
    """Blend each image with the batch reversed: lam * x + (1 - lam) * x[::-1]; targets alike."""
    x = images * np.float32(lam) + images[::-1] * np.float32(1.0 - lam)       # (B, C, H, W)
    return x.astype(np.float32, copy=False), _mix_targets(labels, lam, num_classes, smoothing)


def cutmix(images, labels, lam, rng, num_classes=10, smoothing=0.0):
    """Paste a box of area ~(1 - lam) from the batch reversed; lam corrected to the box kept."""
    _check_images(images, "cutmix")
    B, C, H, W = images.shape
    ratio = np.sqrt(1.0 - lam)
    ch, cw = int(H * ratio), int(W * ratio)
    cy, cx = rng.integers(0, H), rng.integers(0, W)
    y0, y1 = np.clip(cy - ch // 2, 0, H), np.clip(cy + ch // 2, 0, H)
    x0, x1 = np.clip(cx - cw // 2, 0, W), np.clip(cx + cw // 2, 0, W)
    out = np.array(images, dtype=np.float32, copy=True)
    out[:, :, y0:y1, x0:x1] = images[::-1, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)
    return out, _mix_targets(labels, lam, num_classes, smoothing)


def mixup_cutmix(images, labels, rng, num_classes=10, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5,
                 label_smoothing=0.1):
    """The release's recipe: per batch, cutmix (lam ~ Beta(1, 1)) with probability switch_prob, else
    mixup (lam ~ Beta(0.8, 0.8)). Returns float32 images and soft targets (B, K), smoothing included
    (train with cross_entropy(logits, targets) and label_smoothing=0)."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("mixup_cutmix needs mixup_alpha > 0 or cutmix_alpha > 0")
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if use_cutmix:
        return cutmix(images, labels, lam, rng, num_classes, label_smoothing)
    return mixup(images, labels, lam, num_classes, label_smoothing)


def _mix_targets(labels, lam, num_classes, smoothing):
    y = smooth_one_hot(labels, num_classes, smoothing)                          # (B, K)
    return (y * np.float32(lam) + y[::-1] * np.float32(1.0 - lam)).astype(np.float32)
