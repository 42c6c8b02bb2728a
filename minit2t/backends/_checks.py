"""Argument checks shared by every backend.

Each check raises TypeError (wrong kind: integer arrays, non-int kernel
sizes) or ValueError (wrong shape or value) naming what was expected and
what was received, before any kernel runs, so no backend ever computes on
arguments it cannot handle.

Legend: Bt matrices in a batch, M/K/N matrix sides, B batch, C channels,
H/W height/width, k kernel, s stride, p padding, Ho/Wo output grid,
L = Ho * Wo windows.
"""
import numbers



def check_float(name, x):
    """x must hold floating-point numbers (the engine uses float32/float64)."""
    if x.dtype.kind != "f":
        raise TypeError(f"{name} expects a floating-point array (float32 or "
                        f"float64); got dtype {x.dtype}")


def check_matmul(a, b):
    """a (M, K) or (Bt, M, K), b (K, N) or (Bt, K, N) -> the output shape."""
    for label, x in (("a", a), ("b", b)):
        if x.ndim not in (2, 3):
            raise ValueError(f"matmul expects 2-D (M, K) or 3-D (Bt, M, K) arrays; "
                             f"got {label} with shape {x.shape}")
        check_float(f"matmul {label}", x)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: a {a.shape} has "
                         f"K={a.shape[-1]} but b {b.shape} has K={b.shape[-2]}")
    m, n = a.shape[-2], b.shape[-1]
    if a.ndim == 2 and b.ndim == 2:
        return (m, n)
    bta = a.shape[0] if a.ndim == 3 else 1
    btb = b.shape[0] if b.ndim == 3 else 1
    if bta != btb and 1 not in (bta, btb):
        raise ValueError(f"matmul: batch sizes differ: a {a.shape} vs b {b.shape} "
                         f"(expected equal, or one of them 1)")
    return (max(bta, btb) if 0 not in (bta, btb) else 0, m, n)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r} "
                        f"({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
    return int(value)


def check_window(kernel_size, stride, padding):
    """k >= 1, s >= 1, p >= 0, all ints -> (k, s, p) as Python ints."""
    return (_check_int("kernel_size", kernel_size, 1),
            _check_int("stride", stride, 1),
            _check_int("padding", padding, 0))


def _out_grid(h, w, k, s, p):
    if h + 2 * p < k or w + 2 * p < k:
        raise ValueError(f"kernel_size {k} is larger than the padded input: "
                         f"(H+2p, W+2p) = ({h + 2 * p}, {w + 2 * p}) with p={p}")
    return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def check_unfold(x, kernel_size, stride, padding):
    """x (B, C, H, W) -> (k, s, p, Ho, Wo)."""
    k, s, p = check_window(kernel_size, stride, padding)
    if x.ndim != 4:
        raise ValueError(f"unfold expects x of shape (B, C, H, W); got shape {x.shape}")
    check_float("unfold x", x)
    return (k, s, p) + _out_grid(x.shape[2], x.shape[3], k, s, p)


def check_fold(cols, output_size, kernel_size, stride, padding):
    """cols (B, C*k*k, L), output_size (H, W) -> (k, s, p, H, W, C)."""
    k, s, p = check_window(kernel_size, stride, padding)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise TypeError(f"fold expects output_size as a pair (H, W); got {output_size!r}")
    h = _check_int("output_size[0]", output_size[0], 0)
    w = _check_int("output_size[1]", output_size[1], 0)
    if cols.ndim != 3:
        raise ValueError(f"fold expects cols of shape (B, C*k*k, L); got shape {cols.shape}")
    check_float("fold cols", cols)
    ho, wo = _out_grid(h, w, k, s, p)
    if cols.shape[1] % (k * k) != 0 or cols.shape[2] != ho * wo:
        raise ValueError(f"fold expects cols of shape (B, C*{k * k}, {ho * wo}) for "
                         f"output_size ({h}, {w}), k={k}, s={s}, p={p}; "
                         f"got {cols.shape}")
    return k, s, p, h, w, cols.shape[1] // (k * k)
