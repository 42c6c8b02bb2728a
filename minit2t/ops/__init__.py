"""Every autograd op: one class each, its NumPy forward and backward side by side.

These are the reference; a backend may replace a whole op with a faster one
(minit2t.backends: the one seam, consulted by Function.apply)."""
from minit2t.ops.activation import GELU, Dropout, LogSoftmax, Softmax
from minit2t.ops.attention import Attention
from minit2t.ops.band import BandDot, BandMix
from minit2t.ops.conv import Fold, Unfold
from minit2t.ops.elementwise import Add, Cast, Div, Erf, Exp, Log, Mul, Neg, Pow, Sqrt, Sub, Tanh
from minit2t.ops.function import Context, Function, unbroadcast
from minit2t.ops.linear import Linear, LinearAdd, LinearGELU
from minit2t.ops.match import ToMeMatch
from minit2t.ops.matmul import MatMul
from minit2t.ops.norm import LayerNorm
from minit2t.ops.reduce import Max, Mean, Sum
from minit2t.ops.shape import Concat, Expand, GetItem, Permute, Reshape, Split

__all__ = ["Add", "Attention", "BandDot", "BandMix", "Cast", "Concat", "Context", "Div", "Dropout", "Erf", "Exp",
           "Expand", "Fold", "Function", "GELU", "GetItem", "LayerNorm", "Linear", "LinearAdd", "LinearGELU", "Log", "LogSoftmax", "MatMul",
           "Max", "Mean", "Mul", "Neg", "Permute", "Pow", "Reshape", "Softmax", "Split", "Sqrt", "Sub", "Sum", "Tanh",
           "ToMeMatch", "Unfold", "unbroadcast"]
