"""3-Augment, the data augmentation of DeiT III (Touvron et al. 2022), vectorised over a batch.

Legend: B batch, C=3 channels (R, G, B), H, W image sides, k blur kernel size, r = k // 2.
Pixel values are 0..255 throughout; the helpers compute in float32 and return float32,
three_augment takes uint8 and rounds (half to even) and clips back to uint8, so normalize applies after it.

    grayscale      L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2 luma) in all three channels
    solarize       pixels >= threshold (128) become 255 - pixel
    gaussian_blur  a separable Gaussian of standard deviation sigma[b] per image, k taps, reflect borders
    color_jitter   brightness, then contrast, then saturation, one factor per image each, clipped to [0, 255]
                   after each step (torchvision ColorJitter's definitions, in a fixed order)
    three_augment  per image, one of grayscale / solarize / blur chosen uniformly, then colour jitter

The blur uses k = 5 taps (BLUR_SIZE, radius 2 pixels): a 5x5 footprint is already a sixth of a 32-pixel
side, a strong blur at this size, and it holds the Gaussian out to three sigma for sigma <= 0.67. The kernel
is exp(-x^2 / (2 sigma^2)) for x = -2..2 normalised to sum 1 (torchvision's kernel), so for sigma near 2 it
is cut at one sigma and close to a 5-tap box. Reflect borders mirror without repeating the edge pixel
(np.pad mode "reflect", torchvision's gaussian_blur border).
"""
import numpy as np

LUMA = (0.299, 0.587, 0.114)
SOLARIZE_THRESHOLD = 128
BLUR_SIZE = 5
BLUR_SIGMA = (0.1, 2.0)
JITTER = 0.3                                   # brightness, contrast, saturation factors in [0.7, 1.3]
BRANCHES = ("grayscale", "solarize", "gaussian_blur")


def _as_float(images, what):
    """images as float32 (B, 3, H, W); ValueError naming `what` unless a real array of that shape."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3 or \
            images.dtype.kind not in "uif":
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{what} expects real images of shape (B, 3, H, W), got {got}")
    return images.astype(np.float32, copy=False)


def _check_uint8(images, what):
    """ValueError naming `what` unless images is a uint8 array (B, 3, H, W)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{what} expects uint8 images of shape (B, 3, H, W), got {got}")


def _per_image(values, B, what, low):
    """values as float32 (B,); ValueError naming `what` unless B finite numbers >= low."""
    v = np.asarray(values)
    if v.shape != (B,) or v.dtype.kind not in "uif" or not np.isfinite(v).all() or (B and v.min() < low):
        raise ValueError(f"{what} expects {B} finite numbers >= {low} (one per image), got {v.dtype} {v.shape}")
    return v.astype(np.float32)


def luma(images):
    """(B, 3, H, W) -> float32 (B, 1, H, W): 0.299 R + 0.587 G + 0.114 B."""
    x = _as_float(images, "luma")
    w = np.asarray(LUMA, dtype=np.float32)
    return np.einsum("bchw,c->bhw", x, w)[:, None]                               # (B, 1, H, W)


def grayscale(images):
    """(B, 3, H, W) -> float32 (B, 3, H, W): the luma in each channel."""
    x = _as_float(images, "grayscale")
    return np.repeat(luma(x), 3, axis=1)                                         # (B, 3, H, W)


def solarize(images, threshold=SOLARIZE_THRESHOLD):
    """(B, 3, H, W) -> float32: 255 - x where x >= threshold, x elsewhere."""
    x = _as_float(images, "solarize")
    return np.where(x >= threshold, np.float32(255) - x, x)


def gaussian_kernel(sigma, size=BLUR_SIZE):
    """(B,) standard deviations -> float32 (B, k) normalised 1-D Gaussian weights over x = -r..r."""
    if not (isinstance(size, (int, np.integer)) and size >= 1 and size % 2 == 1):
        raise ValueError(f"gaussian_kernel: size must be an odd int >= 1, got {size!r}")
    sigma = _per_image(sigma, np.size(sigma), "gaussian_kernel: sigma", 1e-6)      # (B,)
    x = np.arange(size, dtype=np.float32) - size // 2                            # (k,)
    w = np.exp(-x[None] ** 2 / (2 * sigma[:, None] ** 2))                        # (B, k)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def gaussian_blur(images, sigma, size=BLUR_SIZE):
    """(B, 3, H, W) -> float32: each image blurred by a separable Gaussian of std sigma[b], reflect borders."""
    x = _as_float(images, "gaussian_blur")
    B, C, H, W = x.shape
    if B and size // 2 >= min(H, W):
        raise ValueError(f"gaussian_blur: a {size}-tap kernel needs images larger than {size // 2}, got {H}x{W}")
    w = gaussian_kernel(_per_image(sigma, B, "gaussian_blur: sigma", 1e-6), size)   # (B, k)
    for axis in (2, 3):                                                          # rows, then columns
        pad = [(0, 0)] * 4
        pad[axis] = (size // 2, size // 2)
        padded = np.pad(x, pad, mode="reflect")                                  # (B, C, H+2r, W) or (.., W+2r)
        windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=axis)  # (B, C, H, W, k)
        x = np.einsum("bchwk,bk->bchw", windows, w)                              # (B, C, H, W)
    return x.astype(np.float32, copy=False)


def color_jitter(images, brightness, contrast, saturation):
    """(B, 3, H, W) -> float32 in [0, 255], per-image factors (B,) each, applied in this order:
    brightness x * f; contrast f * x + (1 - f) * mean(luma(x)); saturation f * x + (1 - f) * luma(x)."""
    x = _as_float(images, "color_jitter")
    B = x.shape[0]
    f_b, f_c, f_s = (_per_image(f, B, f"color_jitter: {name}", 0.0)[:, None, None, None]   # (B, 1, 1, 1)
                     for f, name in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation")))
    x = np.clip(x * f_b, 0, 255)
    mean = luma(x).mean(axis=(1, 2, 3), keepdims=True)                           # (B, 1, 1, 1)
    x = np.clip(f_c * x + (1 - f_c) * mean, 0, 255)
    x = np.clip(f_s * x + (1 - f_s) * luma(x), 0, 255)
    return x.astype(np.float32, copy=False)


def three_augment_at(images, choice, sigma, brightness, contrast, saturation):
    """uint8 (B, 3, H, W) -> uint8: image b goes through BRANCHES[choice[b]] (the blur with sigma[b]),
    then color_jitter with its three factors; rounded and clipped back to uint8."""
    _check_uint8(images, "three_augment")
    x = images.astype(np.float32)                                                # (B, 3, H, W)
    choice = np.asarray(choice)
    if choice.shape != x.shape[:1] or choice.dtype.kind not in "iu" or (choice.size and
                                                                       (choice.min() < 0 or choice.max() > 2)):
        raise ValueError(f"three_augment expects {x.shape[0]} choices in {{0, 1, 2}}, got {choice.dtype} "
                         f"{choice.shape}")
    sigma = _per_image(sigma, x.shape[0], "three_augment: sigma", 1e-6)           # (B,)
    gray, sol, blur = (choice == k for k in range(3))                            # (B,) masks
    out = np.empty_like(x)
    out[gray], out[sol] = grayscale(x[gray]), solarize(x[sol])
    out[blur] = gaussian_blur(x[blur], sigma[blur])
    out = color_jitter(out, brightness, contrast, saturation)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def three_augment(images, rng, jitter=JITTER):
    """3-Augment of uint8 images (B, 3, H, W) with everything drawn from `rng`, in this order:
    choice (B,) uniform in {0, 1, 2}, sigma (B,) uniform in [0.1, 2.0] (drawn for every image),
    factors (3, B) uniform in [1 - jitter, 1 + jitter] (brightness, contrast, saturation)."""
    _check_uint8(images, "three_augment")
    B = images.shape[0]
    choice = rng.integers(0, 3, size=B)                                          # (B,)
    sigma = rng.uniform(*BLUR_SIGMA, size=B)                                     # (B,)
    factors = rng.uniform(1 - jitter, 1 + jitter, size=(3, B))                   # (3, B)
    return three_augment_at(images, choice, sigma, *factors)
