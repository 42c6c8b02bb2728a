"""The linear layer as one op: y = x @ weight^T + bias, matmul and bias add fused.

Legend: "..." any leading dims, R their product (rows), Din input features,
Dout output features. weight is (Dout, Din) as in torch. The forward is the
backend's linear_forward when it has one (the C backend adds the bias inside
its GEMM), else its matmul plus the bias; the backward's products go through
the backend's GEMM, the transposes as strides:
    gx = g @ weight          (R, Dout) @ (Dout, Din)
    gw = g^T @ x             (Dout, R) @ (R, Din)
    gb = sum of g's rows
"""
from minit2t.backends import get_backend
from minit2t.ops.function import Function, reshape


def _add_bias(y, bias):
    if y.dtype == bias.dtype:
        y += bias                                                         # in place
        return y
    return y + bias                                                       # promotes


class Linear(Function):
    """x (..., Din), weight (Dout, Din), bias (Dout,) or absent -> (..., Dout)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: expected x (..., Din) and weight (Dout, Din), "
                             f"got {x.shape} and {weight.shape}")
        Dout = weight.shape[0]
        if bias is not None and bias.shape != (Dout,):
            raise ValueError(f"linear: bias must be ({Dout},) for weight {weight.shape}, got {bias.shape}")
        x2 = reshape(x, (-1, x.shape[-1]))                                # (R, Din)
        be = get_backend()
        if hasattr(be, "linear_forward"):                                 # bias added in the GEMM
            y = be.linear_forward(x2, weight, bias)                       # (R, Dout)
        else:
            y = be.matmul(x2, weight.T)                                   # (R, Dout), a new array
            if bias is not None:
                y = _add_bias(y, bias)
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        return y.reshape(x.shape[:-1] + (Dout,))                         # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved
        g2 = reshape(g, (-1, weight.shape[0]))                           # (R, Dout)
        be = get_backend()
        gx = be.matmul(g2, weight).reshape(ctx.shape) if ctx.needs_input_grad(0) else None
        gw = be.matmul(g2.T, x2) if ctx.needs_input_grad(1) else None     # (Dout, Din)
        gb = g2.sum(axis=0) if ctx.needs_input_grad(2) else None          # (Dout,)
        return gx, gw, gb
