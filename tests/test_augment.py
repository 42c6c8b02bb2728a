"""Reflect-padded crops and DeiT III's 3-Augment, against references written here in NumPy.

The references loop over images and pixels the plain way, in float64; the library vectorises over the
batch in float32, so uint8 results may differ by one where a value lands within rounding of a half.
"""
import numpy as np
import pytest

from minit2t.data import (DataLoader, augment, color_jitter, crop_at, flip_where, gaussian_blur, gaussian_kernel,
                          grayscale, normalize, random_crop, solarize, three_augment, three_augment_at)


def batch(B=6, seed=0, side=32):
    return np.random.default_rng(seed).integers(0, 256, (B, 3, side, side), dtype=np.uint8)


def zero_crop_reference(x, top, left, P):
    """The zero-padded crop as crop_at computed it before pad modes existed."""
    B, C, H, W = x.shape
    padded = np.zeros((B, C, H + 2 * P, W + 2 * P), dtype=x.dtype)
    padded[:, :, P:P + H, P:P + W] = x
    return np.stack([padded[b, :, top[b]:top[b] + H, left[b]:left[b] + W] for b in range(B)])


def old_augment(x, rng, padding=4):
    """The training transform as it was: zero-padded random crop, flip, normalisation."""
    top, left = rng.integers(0, 2 * padding + 1, size=(2, x.shape[0]))
    mask = rng.random(x.shape[0]) < 0.5
    return normalize(flip_where(zero_crop_reference(x, top, left, padding), mask))


# ---- crops ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("P", [1, 4, 7])
def test_reflect_crop_is_np_pad_reflect_then_slice(P):
    x = batch()
    r = np.random.default_rng(P)
    top, left = r.integers(0, 2 * P + 1, size=(2, 6))
    top[0], left[0], top[1], left[1] = 0, 0, 2 * P, 2 * P                  # the corners
    padded = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)), mode="reflect")
    want = np.stack([padded[b, :, top[b]:top[b] + 32, left[b]:left[b] + 32] for b in range(6)])
    got = crop_at(x, top, left, P, pad_mode="reflect")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want, strict=True)
    np.testing.assert_array_equal(got[0, :, 0, P:], x[0, :, P, :32 - P])   # mirrored: row P comes first, edge once
    np.testing.assert_array_equal(crop_at(x, top, left, P), zero_crop_reference(x, top, left, P), strict=True)
    np.testing.assert_array_equal(crop_at(x, top, left, P, "zero"), zero_crop_reference(x, top, left, P))


def test_reflect_random_crop_draws_like_the_zero_one():
    x = batch(8)
    r = np.random.default_rng(3)
    top, left = r.integers(0, 9, size=(2, 8))
    np.testing.assert_array_equal(random_crop(x, np.random.default_rng(3), 4, "reflect"),
                                  crop_at(x, top, left, 4, "reflect"))


def test_default_augment_and_loader_are_unchanged():
    x = batch(16, seed=1)
    want = old_augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(augment(x, np.random.default_rng(5), 4, "zero", False), want, strict=True)
    np.testing.assert_array_equal(augment(x, np.random.default_rng(5)), want, strict=True)
    labels = np.arange(16)
    explicit = DataLoader(x, labels, 6, shuffle=True, augment=True, seed=2, crop_padding=4, pad_mode="zero",
                          three_augment=False)
    implicit = DataLoader(x, labels, 6, shuffle=True, augment=True, seed=2)
    for epoch in (0, 3):
        rng = np.random.default_rng((2, epoch))
        order = rng.permutation(16)
        for i, ((a, y), (b, y2)) in enumerate(zip(explicit.iter_epoch(epoch), implicit.iter_epoch(epoch))):
            idx = order[6 * i:6 * i + 6]
            np.testing.assert_array_equal(a, old_augment(x[idx], rng), strict=True)
            np.testing.assert_array_equal(a, b, strict=True)
            np.testing.assert_array_equal(y, idx)
            np.testing.assert_array_equal(y2, idx)


# ---- the 3-Augment pieces ----------------------------------------------------------------------------------
def test_grayscale_and_solarize_exact():
    x = np.zeros((2, 3, 1, 3), np.uint8)
    x[0, :, 0, 0], x[0, :, 0, 1], x[0, :, 0, 2] = (100, 0, 0), (0, 100, 0), (0, 0, 100)
    x[1, :, 0, :] = [[255, 10, 128], [255, 20, 127], [255, 30, 0]]
    g = grayscale(x)
    assert g.dtype == np.float32 and g.shape == x.shape
    np.testing.assert_allclose(g[0], np.broadcast_to([29.9, 58.7, 11.4], (3, 1, 3)), rtol=1e-6)
    np.testing.assert_allclose(g[1, :, 0], np.broadcast_to([255.0, 0.299 * 10 + 0.587 * 20 + 0.114 * 30,
                                                            0.299 * 128 + 0.587 * 127], (3, 3)), rtol=1e-6)
    s = solarize(x)
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s[1, :, 0], [[0, 10, 127], [0, 20, 127], [0, 30, 0]])
    np.testing.assert_array_equal(s[0], x[0])                            # all below 128
    np.testing.assert_array_equal(solarize(np.array([127, 128, 129, 255], np.uint8).reshape(1, 1, 1, 4)
                                           .repeat(3, 1)), np.array([127, 127, 126, 0]).reshape(1, 1, 1, 4)
                                  .repeat(3, 1))


def blur_reference(x, sigma, size=5):
    """Direct 2-D convolution with the outer product of the 1-D Gaussian, reflect borders, float64."""
    r = size // 2
    out = np.zeros(x.shape)
    for b in range(len(x)):
        g = np.exp(-np.arange(-r, r + 1) ** 2 / (2.0 * sigma[b] ** 2))
        k = np.outer(g, g) / g.sum() ** 2                                 # (k, k), sums to 1
        padded = np.pad(x[b].astype(np.float64), ((0, 0), (r, r), (r, r)), mode="reflect")
        for i in range(size):
            for j in range(size):
                out[b] += k[i, j] * padded[:, i:i + x.shape[2], j:j + x.shape[3]]
    return out


@pytest.mark.parametrize("size", [3, 5])
def test_gaussian_blur(size):
    sigma = np.array([0.1, 0.5, 1.0, 2.0])
    w = gaussian_kernel(sigma, size)
    assert w.shape == (4, size) and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w, w[:, ::-1])                            # symmetric
    assert w[0, size // 2] > 0.999 and np.ptp(w[3]) < np.ptp(w[2])       # sigma 0.1 ~ identity, 2 flatter than 1
    const = np.full((4, 3, 8, 8), 77, np.uint8)
    np.testing.assert_allclose(gaussian_blur(const, sigma, size), 77.0, rtol=1e-6)
    x = batch(4, seed=7, side=9)[:, :, :, :7]                            # not square
    got = gaussian_blur(x, sigma, size)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, blur_reference(x, sigma, size), rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="gaussian_blur: sigma expects 4 finite numbers >= 1e-06"):
        gaussian_blur(x, sigma[:3], size)
    with pytest.raises(ValueError, match="5-tap kernel needs images larger than 2, got 2x2"):
        gaussian_blur(x[:, :, :2, :2], sigma)
    with pytest.raises(ValueError, match="odd int"):
        gaussian_kernel(sigma, 4)


def jitter_reference(x, fb, fc, fs):
    """torchvision ColorJitter's brightness, contrast, saturation in that order, per image, float64."""
    out = np.zeros(x.shape)
    for b in range(len(x)):
        v = np.clip(x[b].astype(np.float64) * fb[b], 0, 255)
        gray = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
        v = np.clip(fc[b] * v + (1 - fc[b]) * gray.mean(), 0, 255)
        gray = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
        out[b] = np.clip(fs[b] * v + (1 - fs[b]) * gray, 0, 255)
    return out


def test_color_jitter():
    x = batch(5, seed=3)
    ones = np.ones(5)
    np.testing.assert_array_equal(color_jitter(x, ones, ones, ones), x.astype(np.float32), strict=True)
    black = color_jitter(x, np.zeros(5), ones, ones)
    assert black.dtype == np.float32 and not black.any()
    f = np.random.default_rng(1).uniform(0.7, 1.3, (3, 5))
    f[:, 0] = (1.3, 1.3, 1.3)                                           # clipping at 255 in all three steps
    got = color_jitter(x, *f)
    assert got.min() >= 0 and got.max() <= 255
    np.testing.assert_allclose(got, jitter_reference(x, *f), rtol=1e-5, atol=1e-3)
    gray = grayscale(x)
    np.testing.assert_allclose(color_jitter(x, ones, ones, np.zeros(5)), gray, rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="color_jitter: contrast expects 5 finite numbers >= 0.0"):
        color_jitter(x, ones, -ones, ones)


def test_three_augment_is_one_branch_then_jitter():
    x = batch(48, seed=4)
    got = three_augment(x, np.random.default_rng(9))
    assert got.dtype == np.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got, three_augment(x, np.random.default_rng(9)))
    r = np.random.default_rng(9)                                         # the draws, in their documented order
    choice, sigma, factors = r.integers(0, 3, 48), r.uniform(0.1, 2.0, 48), r.uniform(0.7, 1.3, (3, 48))
    assert set(choice.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(got, three_augment_at(x, choice, sigma, *factors), strict=True)
    f = x.astype(np.float64)
    branches = [np.repeat((0.299 * f[:, :1] + 0.587 * f[:, 1:2] + 0.114 * f[:, 2:]), 3, axis=1),
                np.where(f >= 128, 255 - f, f), blur_reference(x, sigma)]
    want = np.clip(np.rint(jitter_reference(np.choose(choice[:, None, None, None], branches), *factors)), 0, 255)
    diff = np.abs(got.astype(np.int64) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    for b in np.flatnonzero(choice == 0):                                # gray stays gray through the jitter
        assert np.abs(np.ptp(got[b].astype(np.int64), axis=0)).max() <= 1


def test_three_augment_edge_cases():
    x = batch(3)
    one = np.ones(3)
    for k in range(3):                                                   # every image through the same branch
        out = three_augment_at(x, np.full(3, k), np.full(3, 0.1), one, one, one)
        ref = (grayscale(x), solarize(x), gaussian_blur(x, np.full(3, 0.1)))[k]
        np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    assert three_augment(x[:0], np.random.default_rng(0)).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match=r"three_augment expects uint8 images of shape \(B, 3, H, W\), got float32"):
        three_augment(x.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"got uint8 \(3, 32, 32\)"):
        three_augment(x[0], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"3 choices in \{0, 1, 2\}"):
        three_augment_at(x, np.array([0, 1, 3]), one, one, one, one)
    with pytest.raises(ValueError, match=r"grayscale expects real images of shape \(B, 3, H, W\), got list"):
        grayscale([[1, 2, 3]])


# ---- in the pipeline --------------------------------------------------------------------------------------
def test_augment_with_reflect_and_three_augment():
    x = batch(10, seed=6)
    got = augment(x, np.random.default_rng(1), 4, "reflect", three_augment=True)
    r = np.random.default_rng(1)                                         # crop, flip, then 3-Augment draws
    top, left = r.integers(0, 9, size=(2, 10))
    flipped = flip_where(crop_at(x, top, left, 4, "reflect"), r.random(10) < 0.5)
    np.testing.assert_array_equal(got, normalize(three_augment(flipped, r)), strict=True)


def test_loader_with_reflect_and_three_augment():
    x, labels = batch(10, seed=8), np.arange(10)
    loader = DataLoader(x, labels, 4, shuffle=True, augment=True, seed=5, pad_mode="reflect", three_augment=True)
    e0, e1 = list(loader.iter_epoch(0)), list(loader.iter_epoch(1))
    assert [a.shape for a, _ in e0] == [(4, 3, 32, 32)] * 2 + [(2, 3, 32, 32)]
    assert all(a.dtype == np.float32 for a, _ in e0)
    for (a, y), (b, y2) in zip(e0, loader.iter_epoch(0)):
        np.testing.assert_array_equal(a, b, strict=True)
        np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(e0[0][0], e1[0][0])
    rng = np.random.default_rng((5, 0))
    order = rng.permutation(10)
    for i, (a, y) in enumerate(e0):
        idx = order[4 * i:4 * i + 4]
        np.testing.assert_array_equal(y, idx)
        np.testing.assert_array_equal(a, augment(x[idx], rng, 4, "reflect", True), strict=True)
    plain = DataLoader(x, labels, 4, shuffle=True, augment=True, seed=5)
    assert not np.array_equal(e0[0][0], next(iter(plain.iter_epoch(0)))[0])
    assert loader.pad_mode == "reflect" and loader.three_augment is True


def test_bad_pad_mode_and_images_are_refused():
    x = batch(2)
    r = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^pad_mode must be 'zero' or 'reflect', got 'mirror'$"):
        DataLoader(x, np.arange(2), pad_mode="mirror")
    with pytest.raises(ValueError, match=r"augment: pad_mode must be 'zero' or 'reflect', got None"):
        augment(x, r, pad_mode=None)
    with pytest.raises(ValueError, match=r"random_crop: pad_mode must be 'zero' or 'reflect', got 'REFLECT'"):
        random_crop(x, r, pad_mode="REFLECT")
    with pytest.raises(ValueError, match=r"crop_at: pad_mode must be 'zero' or 'reflect', got 0"):
        crop_at(x, np.zeros(2, int), np.zeros(2, int), pad_mode=0)
    with pytest.raises(ValueError, match="reflect padding needs padding < H and W, got padding 32 for 32x32"):
        crop_at(x, np.zeros(2, int), np.zeros(2, int), 32, "reflect")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        augment(x[:, :2], r, pad_mode="reflect", three_augment=True)
    with pytest.raises(ValueError, match="uint8"):
        augment(x.astype(np.float32), r, padding=0, three_augment=True)
