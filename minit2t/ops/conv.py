"""unfold (im2col) and its adjoint fold (col2im), on the active backend.

Legend: B batch, C channels, H/W image size, k kernel, s stride,
p padding, L = Ho * Wo sliding windows. Semantics of torch.nn.functional
unfold/fold: <unfold(x), y> = <x, fold(y)>, so each is the other's backward.
"""
from minit2t.backends import get_backend
from minit2t.ops.function import Function


class Unfold(Function):
    """(B, C, H, W) -> (B, C*k*k, L)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=1, padding=0):
        ctx.args = x.shape[2:], kernel_size, stride, padding
        return get_backend().unfold(x, kernel_size, stride, padding)   # (B, C*k*k, L)

    @staticmethod
    def backward(ctx, g):
        size, k, s, p = ctx.args
        return (get_backend().fold(g, size, k, s, p),)                  # (B, C, H, W)


class Fold(Function):
    """(B, C*k*k, L) -> (B, C, H, W), overlapping windows summed."""

    @staticmethod
    def forward(ctx, cols, output_size, kernel_size, stride=1, padding=0):
        ctx.args = kernel_size, stride, padding
        return get_backend().fold(cols, tuple(output_size), kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, g):
        k, s, p = ctx.args
        return (get_backend().unfold(g, k, s, p),)                      # (B, C*k*k, L)
