"""Counting parameters and multiply-accumulates (MACs), per layer, as the paper's table does.

MACs are counted in one forward pass of a single image on a shape-only backend:
each matmul — linear layers, attention's q k^T and attn v (also inside the fused
attention op), the performer's products, convolutions as unfold + matmul — adds
M*K*N (times its batch); elementwise work (softmax, LayerNorm, GELU, exp) is not
counted, as in the paper. The shape-only backend (see minit2t.backends: a table
of the ops it replaces) swaps MatMul, Linear and Attention for versions that
return zeros, so the pass costs little beyond NumPy's elementwise ops.
"""
import numpy as np

from minit2t import backends, ops
from minit2t.grad_mode import no_grad
from minit2t.tensor import Tensor


def _matmul_shape(a, b):
    """Shape and MACs of a @ b (torch.matmul's broadcasting; 1-D operands dropped from the result)."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    M, K, N = (a.shape[-2] if a.ndim > 1 else 1), a.shape[-1], (b.shape[-1] if b.ndim > 1 else 1)
    shape = batch + (M,) * (a.ndim > 1) + (N,) * (b.ndim > 1)
    return shape, int(np.prod(batch, dtype=np.int64)) * M * K * N


class _CountingBackend:
    """A backend whose MatMul, Linear and Attention only compute shapes and tally MACs in self.macs."""

    name = "count"

    def __init__(self):
        self.macs, counter = 0, self

        class MatMul(ops.MatMul):
            @staticmethod
            def forward(ctx, a, b):
                shape, macs = _matmul_shape(a, b)
                counter.macs += macs
                return np.zeros(shape, np.result_type(a, b))

        class Linear(ops.Linear):
            @staticmethod
            def forward(ctx, x, weight, bias=None):
                rows = int(np.prod(x.shape[:-1], dtype=np.int64))
                counter.macs += rows * weight.size                   # R * Din * Dout
                return np.zeros(x.shape[:-1] + weight.shape[:1], np.result_type(x, weight))

        class Attention(ops.Attention):
            @staticmethod
            def forward(ctx, qkv, num_heads, scale, key_bias=None):
                B, N, D3 = qkv.shape
                counter.macs += 2 * B * N * N * (D3 // 3)            # q k^T and attn v: 2 * N*d*N per head
                return np.zeros((B, N, D3 // 3), qkv.dtype)

        self.OPS = {ops.MatMul: MatMul, ops.Linear: Linear, ops.Attention: Attention}


class _Recorder:
    """Forward hooks on the table's modules: output shape and MACs spent inside each."""

    def __init__(self, counter):
        self.counter = counter
        self.stack, self.rows = [], {}

    def watch(self, name, module):
        """Hook `module` as row `name`; returns the two handles."""
        return [module.register_forward_pre_hook(lambda m, inputs: self.stack.append(self.counter.macs)),
                module.register_forward_hook(lambda m, inputs, out: self._record(name, out))]

    def _record(self, name, out):
        spent = self.counter.macs - self.stack.pop()
        shape = tuple(out.shape) if isinstance(out, Tensor) else None
        self.rows[name] = (shape, self.rows.get(name, (shape, 0))[1] + spent)


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
    recorder = _Recorder(counter)
    handles = [h for name, m in table for h in recorder.watch(name, m)]
    prev_backend, backends._active = backends._active, counter
    try:
        with no_grad():
            model(Tensor(np.zeros((1,) + tuple(input_size), dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
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
