"""The basic layers, PyTorch-style. Each composes the functional forms.

Legend: B batch, N tokens, D features, C channels, k kernel, s stride, p padding.
"""
import numpy as np

from minit2t.nn import functional as F
from minit2t.nn import init
from minit2t.nn.module import Module, Parameter


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b; weight (out, in) as in torch. Init as the release: trunc normal(.02), zero bias."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.trunc_normal((out_features, in_features), std=0.02))
        self.bias = Parameter(init.zeros(out_features)) if bias else None

    def forward(self, x):                                            # (..., in)
        return F.linear(x, self.weight, self.bias)                   # (..., out)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(init.ones(dim))
        self.bias = Parameter(init.zeros(dim))

    def forward(self, x):                                            # (..., D)
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class GELU(Module):
    def forward(self, x):
        return F.gelu(x)


class Softmax(Module):
    """softmax along `axis`; a module so that a forward hook can see attention probabilities."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class DropPath(Module):
    """Stochastic depth on a residual branch (per sample)."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return F.drop_path(x, self.drop_prob, self.training)

    def extra_repr(self):
        return f"drop_prob={self.drop_prob}"


class Sequential(Module):
    """Runs its modules in order; they are named "0", "1", … as in torch."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)


class Unfold(Module):
    """The soft split: (B, C, H, W) -> (B, C*k*k, L), overlapping k x k windows."""

    def __init__(self, kernel_size, stride=1, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _int(kernel_size), _int(stride), _int(padding)

    def forward(self, x):
        return F.unfold(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Conv2d(Module):
    """A square convolution as unfold + matmul (the paper's 'convolution' tokens)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        k = _int(kernel_size)
        self.stride, self.padding = _int(stride), _int(padding)
        fan_in = in_channels * k * k
        bound = 1.0 / np.sqrt(fan_in)                                # torch's default init
        self.weight = Parameter(init.uniform((out_channels, in_channels, k, k), -bound, bound))
        self.bias = Parameter(init.uniform((out_channels,), -bound, bound)) if bias else None

    def forward(self, x):                                            # (B, Ci, H, W)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)  # (B, Co, Ho, Wo)

    def extra_repr(self):
        co, ci, k, _ = self.weight.shape
        return f"{ci}, {co}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


def _int(v):
    """An int from an int or a pair of equal ints (torch accepts both)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"only square kernels/strides/paddings are supported, got {v}")
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"expected an int, got {v!r}")
    return int(v)
