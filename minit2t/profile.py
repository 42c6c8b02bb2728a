"""Counting parameters and multiply-accumulates (MACs), per layer, as the paper's table does.

MACs are counted in one forward pass of a single image on a shape-only backend:
each matmul — linear layers, attention's q k^T and attn v, the performer's
products, convolutions as unfold + matmul — adds M*K*N (times its batch);
elementwise work (softmax, LayerNorm, GELU, exp) is not counted, as in the paper.
The shape-only backend returns zeros, so the pass costs little beyond NumPy's
elementwise ops.
"""
import numpy as np

from minit2t import backends
from minit2t.grad_mode import no_grad
from minit2t.nn import module as module_mod
from minit2t.tensor import Tensor


class _CountingBackend:
    """Backend interface that only computes shapes and tallies MACs."""

    name = "count"

    def __init__(self):
        self.macs = 0

    def matmul(self, a, b):
        *batch, M, K = a.shape
        N = b.shape[-1]
        self.macs += int(np.prod(batch, dtype=np.int64)) * M * K * N
        return np.zeros(tuple(batch) + (M, N), dtype=np.result_type(a, b))

    def unfold(self, x, kernel_size, stride, padding):
        B, C, H, W = x.shape
        side = lambda n: (n + 2 * padding - kernel_size) // stride + 1
        return np.zeros((B, C * kernel_size ** 2, side(H) * side(W)), dtype=x.dtype)

    def fold(self, cols, output_size, kernel_size, stride, padding):
        B, Ckk, _ = cols.shape
        return np.zeros((B, Ckk // kernel_size ** 2) + tuple(output_size), dtype=cols.dtype)


class _Recorder:
    """A module-call observer: output shape and MACs spent inside each module."""

    def __init__(self, counter, names):
        self.counter, self.names = counter, names
        self.stack, self.rows = [], {}

    def enter(self, m):
        self.stack.append(self.counter.macs)

    def exit(self, m, out):
        start = self.stack.pop()
        name = self.names.get(id(m))
        if name is not None:
            shape = tuple(out.shape) if isinstance(out, Tensor) else None
            prev = self.rows.get(name, (shape, 0))[1]
            self.rows[name] = (shape, prev + self.counter.macs - start)


def _table_modules(model):
    """The rows of the summary: each top-level child, containers opened one level."""
    rows = []
    for name, child in model.named_children():
        grandchildren = list(child.named_children())
        if grandchildren and not child._parameters:
            rows += [(f"{name}.{sub}", m) for sub, m in grandchildren]
        else:
            rows.append((name, child))
    return rows


def profile(model, input_size):
    """[(name, layer type, output shape, params, MACs)] for one image of `input_size` (C, H, W)."""
    counter = _CountingBackend()
    table = _table_modules(model)
    recorder = _Recorder(counter, {id(m): n for n, m in table})
    prev_backend, backends._active = backends._active, counter
    module_mod._call_hooks.append(recorder)
    try:
        with no_grad():
            model(Tensor(np.zeros((1,) + tuple(input_size), dtype=np.float32)))
    finally:
        module_mod._call_hooks.remove(recorder)
        backends._active = prev_backend
    rows = []
    for name, m in table:
        shape, macs = recorder.rows.get(name, (None, 0))
        rows.append((name, type(m).__name__, shape, sum(p.size for p in m.parameters()), macs))
    own = sum(p.size for p in model._parameters.values())
    if own:
        rows.insert(0, ("(" + ", ".join(model._parameters) + ")", "Parameter", None, own, 0))
    return rows, counter.macs


def count_macs(model, input_size):
    """MACs of one forward pass of a single image of `input_size` (C, H, W)."""
    return profile(model, input_size)[1]


def summary(model, input_size):
    """A per-layer table (output shape, params, MACs) as text, with the totals."""
    rows, total_macs = profile(model, input_size)
    lines = [f"{'layer':<34}{'type':<18}{'output shape':<20}{'params':>12}{'MACs':>16}", "-" * 100]
    for name, kind, shape, params, macs in rows:
        shape = str(shape) if shape is not None else ""
        lines.append(f"{name:<34}{kind:<18}{shape:<20}{params:>12,}{macs:>16,}")
    total_params = sum(p.size for p in model.parameters())
    lines += ["-" * 100, f"{'total':<72}{total_params:>12,}{total_macs:>16,}",
              f"params: {total_params / 1e6:.1f}M   MACs: {total_macs / 1e9:.1f}G"]
    return "\n".join(lines)
