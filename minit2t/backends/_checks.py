"""Argument checks of the backends' kernel functions (the C and OpenCL GEMM,
the C fused kernels); those of unfold and fold are the ops' own (ops.conv).

Each check raises TypeError (wrong kind: integer arrays) or ValueError (wrong
shape or value) naming what was expected and what was received, before any
kernel runs, so no kernel ever computes on arguments it cannot handle.

Legend: Bt matrices in a batch, M/K/N matrix sides.
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


# ---- the fused kernels (gelu, layer norm, softmax) ------------------------------
# Legend: "..." any leading dims, D the normalised (last) dim, N the softmax dim.

def check_same_shape(what, **arrays):
    """Floating-point arrays of one shape (at least 1-D): g and x of a backward."""
    shape = None
    for label, x in arrays.items():
        check_float(f"{what} {label}", x)
        if x.ndim == 0:
            raise ValueError(f"{what} expects arrays of at least one dim; got {label} of shape ()")
        if shape is not None and x.shape != shape:
            names = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
            raise ValueError(f"{what} expects arrays of one shape; got {names}")
        shape = x.shape


def check_layer_norm(x, weight, bias, eps):
    """x (..., D), weight (D,), bias (D,), eps a number >= 0."""
    check_same_shape("layer_norm", x=x)
    d = x.shape[-1]
    for label, p in (("weight", weight), ("bias", bias)):
        check_float(f"layer_norm {label}", p)
        if p.shape != (d,):
            raise ValueError(f"layer_norm expects {label} of shape ({d},) for x of shape "
                             f"{x.shape}; got {p.shape}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"layer_norm expects eps as a number >= 0; got {eps!r}")


def check_layer_norm_backward(g, x, weight, mean, rstd):
    """g, x (..., D), weight (D,), mean and rstd (...) as layer_norm_forward returned them."""
    check_same_shape("layer_norm_backward", g=g, x=x)
    check_layer_norm(x, weight, weight, 0.0)
    for label, s in (("mean", mean), ("rstd", rstd)):
        check_float(f"layer_norm_backward {label}", s)
        if s.shape != x.shape[:-1]:
            raise ValueError(f"layer_norm_backward expects {label} of shape {x.shape[:-1]} "
                             f"for x of shape {x.shape}; got {s.shape}")


def check_linear(x, weight, bias):
    """x (R, Din), weight (Dout, Din), bias (Dout,) or None -> (R, Dout)."""
    for label, a in (("x", x), ("weight", weight)):
        check_float(f"linear_forward {label}", a)
        if a.ndim != 2:
            raise ValueError(f"linear_forward expects 2-D x (R, Din) and weight (Dout, Din); "
                             f"got {label} of shape {a.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_forward: x {x.shape} has Din={x.shape[1]} but weight "
                         f"{weight.shape} has Din={weight.shape[1]}")
    if bias is not None:
        check_float("linear_forward bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear_forward expects bias of shape ({weight.shape[0]},); "
                             f"got {bias.shape}")
    return x.shape[0], weight.shape[0]


def check_copy(dst, src):
    """dst and src floating-point arrays of one shape; dst writeable."""
    check_float("copy_into dst", dst)
    check_float("copy_into src", src)
    if dst.shape != src.shape:
        raise ValueError(f"copy_into expects dst and src of one shape; got dst {dst.shape}, src {src.shape}")
    if not dst.flags.writeable:
        raise ValueError("copy_into expects a writeable dst")
