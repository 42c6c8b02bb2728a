"""The linear layer as one op: y = x @ weight^T + bias.

Legend: "..." any leading dims, R their product (rows), Din input features,
Dout output features. weight is (Dout, Din) as in torch.
    y  = x @ weight^T + bias     (R, Din) @ (Din, Dout) + (Dout,)
    gx = g @ weight              (R, Dout) @ (Dout, Din)
    gw = g^T @ x                 (Dout, R) @ (R, Din)
    gb = sum of g's rows         (Dout,)
Under autocast (minit2t.amp) x, weight and g are rounded to bf16 before each product.

LinearGELU is the layer and the GELU after it as one op, a = gelu(x @ weight^T + bias)
(a transformer MLP's first half): the same math as the two ops in turn, which lets a
backend apply GELU to each block of the product while it is still in cache.
    h  = x @ weight^T + bias     (R, Dout), kept for the backward
    a  = h * Phi(h)              (R, Dout)
    gh = ga * (Phi(h) + h phi(h)), then Linear's backward on gh

LinearAdd is the layer with a residual stream added to its output, y = r + (x @ weight^T
+ bias) (a transformer block's x + proj(...)): the same math as Linear then Add, which lets
a backend add r to each block of the product while it is still in cache.
    gr = g,  then Linear's backward on g
A backend may replace these ops with faster ones (minit2t.backends).
"""
from minit2t.amp import operands
from minit2t.ops.activation import gelu, gelu_grad
from minit2t.ops.function import Function


def check(x, weight, bias):
    """x (..., Din), weight (Dout, Din), bias (Dout,) or None (shared with the backends)."""
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: expected x (..., Din) and weight (Dout, Din), "
                         f"got {x.shape} and {weight.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must be ({weight.shape[0]},) for weight {weight.shape}, got {bias.shape}")


def check_residual(residual, x, weight):
    """residual (..., Dout) for x (..., Din) and weight (Dout, Din) (shared with the backends)."""
    shape = x.shape[:-1] + (weight.shape[0],)
    if residual.shape != shape:
        raise ValueError(f"linear_add: residual must be {shape} for x {x.shape} and weight "
                         f"{weight.shape}, got {residual.shape}")


class Linear(Function):
    """x (..., Din), weight (Dout, Din), bias (Dout,) or absent -> (..., Dout)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        check(x, weight, bias)
        x2 = x.reshape(-1, x.shape[-1])                                   # (R, Din)
        x2, weight = operands(ctx, x2, weight)                            # bf16 under autocast
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        y = x2 @ weight.T if bias is None else x2 @ weight.T + bias       # (R, Dout)
        return y.reshape(x.shape[:-1] + (weight.shape[0],))               # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved
        g2 = g.reshape(-1, weight.shape[0])                               # (R, Dout)
        gb = g2.sum(axis=0) if ctx.needs_input_grad(2) else None          # (Dout,)
        g2 = operands(ctx, g2)                                            # bf16 under autocast
        gx = (g2 @ weight).reshape(ctx.shape) if ctx.needs_input_grad(0) else None   # (..., Din)
        gw = g2.T @ x2 if ctx.needs_input_grad(1) else None               # (Dout, Din)
        return gx, gw, gb


class LinearGELU(Function):
    """x (..., Din), weight (Dout, Din), bias (Dout,) or absent -> gelu(linear(x)) (..., Dout)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        h = Linear.forward(ctx, x, weight, bias)                          # (..., Dout)
        ctx.h = h
        return gelu(h)                                                    # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        return Linear.backward(ctx, gelu_grad(g, ctx.h))                  # gx, gw, gb


class LinearAdd(Function):
    """x (..., Din), weight (Dout, Din), bias (Dout,), residual (..., Dout) -> residual + linear(x)
    (..., Dout)."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        y = Linear.forward(ctx, x, weight, bias)                          # (..., Dout)
        check_residual(residual, x, weight)
        return residual + y                                               # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        return Linear.backward(ctx, g) + (g,)                             # gx, gw, gb, gr
