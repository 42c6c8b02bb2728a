"""The C backend's ToMe matching (ops.ToMeMatch), the same decision as minit2t/ops/match.py on the
kernel of cext/match.c: one call for the batch, where the reference makes a dozen NumPy calls.

Legend: B batch, h heads, N tokens, d head dim. float32 keys whose strides are whole floats, the
last 1 (a view into the packed qkv passes as it is), run in C; anything else runs the reference.
The kernel's dot products are float32 vectors where the reference's are the backend's GEMM, so
two near-equal similarities may rank the other way round: the slots agree wherever the scores are
further apart than float32 rounding.
"""
import numpy as np

from minit2t import ops
from minit2t.backends._cmem import ffi, lib
from minit2t.ops.match import check_match


def tome_match(k, r):
    """k (B, h, N, d) float32, last stride 1 -> slot (B, N) int64 (cext/match.c)."""
    check_match(k, r)
    B, h, N, d = k.shape
    item = k.itemsize
    sb, sh, sn, _ = (s // item for s in k.strides)           # the last is 1 (_in_c)
    slot = np.empty((B, N), np.int64)
    if k.size:
        base = ffi.cast("float *", k.ctypes.data)
        out = ffi.cast("int64_t *", slot.ctypes.data)
        if lib.tome_match(base, out, B, h, N, d, sb, sh, sn, r) != 0:
            raise MemoryError(f"tome_match: no memory for the scratch of {N} tokens of width {d}")
    return slot


def _in_c(k):
    return (k.dtype == np.float32 and k.ndim == 4 and k.strides[-1] == k.itemsize
            and all(s % k.itemsize == 0 for s in k.strides) and k.flags.aligned)


class ToMeMatch(ops.ToMeMatch):
    @staticmethod
    def forward(ctx, k, r):
        if not _in_c(k):
            return ops.ToMeMatch.forward(ctx, k, r)
        return tome_match(k, r)                                      # (B, N)
