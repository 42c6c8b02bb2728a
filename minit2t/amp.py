"""Mixed precision: `with mt.autocast("bfloat16"): ...` runs the products in bfloat16.

bfloat16 (bf16) is float32 with the last 16 bits of the significand dropped: the same
8-bit exponent (so the same range, 1e-38 .. 3e38, no overflow where float32 has none) but
8 significant bits instead of 24, about 2.4 decimal digits. Rounding a float32 to bf16
(round to nearest, ties to even, as torch's .bfloat16() does) moves it by at most half a
bf16 step: a relative error of at most 2^-8 = 0.4%.

What runs in bf16 under autocast, and what does not:
  - The products: every operand of the matmul-like ops (Linear, MatMul, the fused
    attention's q k^T and P v and their backward products, the band products) is rounded
    to bf16; the multiply-adds accumulate in float32 and the result is float32. A product
    of two bf16 numbers is exact in float32 (8 x 8 significant bits fit in 24), so all the
    error is in the rounding of the operands, never in the sum: a sum of K terms in bf16
    would lose the small terms once the sum is 2^8 times larger than them.
  - Nothing else: layer norm, softmax, GELU, the residual adds, the loss, the gradients
    handed to the optimiser and the master weights stay float32. Their sums and
    differences (a mean, a variance, x - max, a weight plus a tiny update) are what bf16
    gets wrong: w + 1e-4 * w rounds back to w in bf16, so an update smaller than 2^-9 of
    its weight (half a step) would be lost at every step.
  - The backward of an op that ran under autocast follows the same rule (its ctx
    remembers it), wherever backward() is called.
  - float64 operands are never rounded (autocast casts float32 only, as torch's does).

The fused attention op also keeps its probabilities P in bf16 (rounded once after the
softmax, used by P v and by the backward), as torch's autocast does.

torch.autocast("cpu", dtype=torch.bfloat16) rounds the same operands but also hands each
product's result out in bf16; minit2t keeps results in float32, one rounding fewer.
"""
import functools
import threading

import numpy as np

_state = threading.local()
PRECISIONS = ("fp32", "bf16")          # the names train, eval and bench take: --precision NAME


def to_bf16(x):
    """float32 array -> float32 array of the nearest bf16 values (ties to even; NaN stays NaN).

    The bits of a float32: sign (1), exponent (8), significand (23). bf16 keeps the top
    16 bits. Adding 0x7FFF plus the lowest kept bit before cutting the low 16 bits rounds
    to nearest with ties to even; a carry out of the significand bumps the exponent, which
    is the right answer too (up to inf past the largest bf16)."""
    x = np.asarray(x, dtype=np.float32)
    bits = np.ascontiguousarray(x).view(np.uint32)
    up = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    up &= np.uint32(0xFFFF0000)
    return np.where(np.isnan(x), x, up.view(np.float32))


def bf16_enabled():
    """Whether ops started now run their products in bf16 (in this thread)."""
    return getattr(_state, "bf16", False)


def operands(ctx, *arrays):
    """The operands of a product in an op whose context is ctx: rounded to bf16 (the float32
    ones) when the op ran under autocast, else as they are."""
    if not ctx.bf16:
        return arrays if len(arrays) > 1 else arrays[0]
    out = tuple(to_bf16(a) if a.dtype == np.float32 else a for a in arrays)
    return out if len(out) > 1 else out[0]


def for_precision(name):
    """The autocast that --precision NAME asks for: bf16's, or one that does nothing (fp32)."""
    return autocast("bfloat16", enabled=name == "bf16")


def _dtype_name(dtype):
    """'bfloat16' for the ways a user names it: "bfloat16", "bf16", torch.bfloat16."""
    name = str(dtype).removeprefix("torch.").lower()
    return "bfloat16" if name in ("bfloat16", "bf16") else None


class autocast:
    """Context manager (and decorator): the products of the ops run inside it take bf16 operands.

        with mt.autocast("bfloat16"):          # also autocast(dtype="bfloat16"), or torch's
            loss = F.cross_entropy(model(x), y)   # autocast("cpu", dtype=torch.bfloat16)
        loss.backward()                         # the backward follows each op's forward

    enabled=False makes it a no-op (a flag a script can pass through). Per thread, as
    no_grad is; an inner autocast(enabled=False) turns it off inside an outer one."""

    def __init__(self, device_type="cpu", dtype=None, enabled=True):
        if dtype is None and _dtype_name(device_type):          # autocast("bfloat16")
            device_type, dtype = "cpu", device_type
        if device_type != "cpu":
            raise ValueError(f"autocast: minit2t runs on the CPU; expected device_type 'cpu', "
                             f"got {device_type!r}")
        if dtype is None:
            dtype = "bfloat16"
        if _dtype_name(dtype) is None:
            raise ValueError(f"autocast: the supported dtype is 'bfloat16'; got {dtype!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be True or False; got {enabled!r}")
        self.dtype, self.enabled = "bfloat16", enabled

    def __enter__(self):
        self._prev = bf16_enabled()
        _state.bf16 = self.enabled
        return self

    def __exit__(self, *exc):
        _state.bf16 = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(dtype=self.dtype, enabled=self.enabled):
                return fn(*args, **kwargs)
        return wrapper
