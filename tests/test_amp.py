"""bf16 mixed precision (minit2t.amp): the rounding, the autocast switch, and every op that
runs its products in bf16, on every backend, against torch.

Two comparisons per op, forward and backward:
  - the rule, exactly: a float32 torch transcription that rounds the same operands at the
    same points (_r rounds a value, _rg the gradient passing back through it). Only the
    order of the float32 sums differs, so the tolerance is float32's; an op that forgot to
    round one operand is off by ~1e-3 and fails it.
  - torch.autocast("cpu", dtype=torch.bfloat16), the habit this replaces. torch also rounds
    each product's result to bf16 (minit2t keeps it float32): that alone moves each element by
    up to half a bf16 step, 2^-9 to 2^-8 of it, measured 1.6-1.9e-3 norm-wise for one product
    and its gradients, so 4e-3; where
    torch rounds an intermediate that minit2t keeps (the attention scores S before the
    softmax, its P @ V result) the errors compound, stated at the call.
"""
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minit2t as mt
import minit2t.nn.functional as F
import torch_approx as ta
from helpers import assert_close, on_backend, relative_error
from minit2t import ops
from minit2t.amp import to_bf16
from minit2t.ops.function import Context
from strategies import make_array

BACKENDS = ["numpy", "c", "opencl"]
RULE = (2e-5, 1e-6)            # (rtol, atol): the same roundings, float32 sums in another order
# The fused attention's gS = P (gP - rowsum) cancels, so its float32 round-off is large enough
# that a few elements round to the other side of a bf16 step (2^-8 of themselves): ~5e-5
# norm-wise in the gradient; forgetting a rounding costs 5e-3 to 1e-2 there (test_fused.py)
RULE_ATTENTION = (5e-4, 1e-6)
AUTOCAST = (4e-3, 1e-5)        # one more bf16 rounding, of each result, in torch


# ---- the rounding -----------------------------------------------------------------

def test_to_bf16_is_torchs_rounding_bit_for_bit():
    """Round to nearest, ties to even, over the whole exponent range, with the special values
    and exact ties (bf16 steps by 2^-7 at 1: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and goes
    to the even one, 1; 1 + 3 * 2^-8 goes up to 1 + 2^-6), and the largest float32 (past the largest bf16: inf, as torch)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000).astype(np.float32) * np.float32(2.0) ** rng.integers(-140, 120, 200_000)
    special = [0.0, -0.0, np.inf, -np.inf, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 3.4028235e38,
               1e-45, -1e-40, 2 ** -126, 65504.0]
    x = np.concatenate([x, np.array(special, np.float32)])
    want = torch.from_numpy(x).bfloat16().float().numpy()
    got = to_bf16(x)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert to_bf16(np.float32([1 + 2 ** -8]))[0] == 1.0 and to_bf16(np.float32([1 + 3 * 2 ** -8]))[0] == 1 + 2 ** -6
    nan = to_bf16(np.array([np.nan, -np.nan, np.float32(np.uint32(0x7F800001).view(np.float32))], np.float32))
    assert np.isnan(nan).all()                   # a NaN whose payload is in the low bits stays NaN
    assert np.array_equal(to_bf16(x[:7].reshape(1, 7)[:, ::2]), want[:7:2][None])   # a strided view


# ---- the switch -------------------------------------------------------------------

def _state():
    return Context(ops.Linear).bf16


def test_autocast_forms_nesting_and_threads():
    assert not _state()
    for form in (mt.autocast("bfloat16"), mt.autocast(dtype="bfloat16"), mt.autocast("cpu", dtype="bf16"),
                 mt.autocast("cpu", dtype=torch.bfloat16), mt.autocast()):
        with form:
            assert _state()
            with mt.autocast("bfloat16", enabled=False):
                assert not _state()                      # off inside, as torch's
            assert _state()
        assert not _state()
    with mt.autocast(enabled=False):
        assert not _state()
    seen = []
    with mt.autocast("bfloat16"):
        worker = threading.Thread(target=lambda: seen.append(_state()))
        worker.start()
        worker.join()
    assert seen == [False]                               # per thread, as no_grad

    @mt.autocast("bfloat16")
    def inside():
        return _state()
    assert inside() and not _state()


@pytest.mark.parametrize("args, kwargs, match", [
    (("cuda",), {"dtype": "bfloat16"}, "expected device_type 'cpu', got 'cuda'"),
    ((), {"dtype": "float16"}, "the supported dtype is 'bfloat16'; got 'float16'"),
    (("cpu",), {"dtype": torch.float16}, "got torch.float16"),
    ((), {"enabled": 1}, "enabled must be True or False; got 1"),
])
def test_autocast_refuses_in_one_line(args, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        mt.autocast(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_backward_follows_the_forward_wherever_it_runs():
    """An op run under autocast keeps its rule for backward() called outside it, and one run
    outside keeps float32 inside: what torch users expect of loss.backward() after the block."""
    x, w = make_array(1, (6, 20), np.float32), make_array(2, (5, 20), np.float32)
    g = make_array(3, (6, 5), np.float32)
    grads = {}
    for bf16 in (False, True):
        xt = mt.tensor(x, requires_grad=True)
        with mt.autocast("bfloat16", enabled=bf16):
            y = F.linear(xt, mt.tensor(w))
        with mt.autocast("bfloat16", enabled=not bf16):
            y.backward(g)
        grads[bf16] = xt.grad
    assert_close(grads[False], g @ w, 1e-6, 1e-7, "float32 backward")
    assert_close(grads[True], to_bf16(g) @ to_bf16(w), 1e-6, 1e-7, "bf16 backward")


def test_float64_is_never_rounded():
    x, w = make_array(1, (6, 20), np.float64), make_array(2, (5, 20), np.float64)
    with mt.autocast("bfloat16"):
        y = F.linear(mt.tensor(x), mt.tensor(w))
    assert np.array_equal(y.data, x @ w.T)


# ---- the ops against torch ----------------------------------------------------------

class _R(torch.autograd.Function):
    """The value rounded to bf16, the gradient passed back as it is."""
    @staticmethod
    def forward(ctx, x):
        return x.bfloat16().float()

    @staticmethod
    def backward(ctx, g):
        return g


class _RG(torch.autograd.Function):
    """The value as it is, the gradient rounded to bf16 on its way back."""
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.bfloat16().float()


class _SoftmaxBF16(torch.autograd.Function):
    """softmax over the last axis with its output rounded to bf16 and that P used by its backward."""
    @staticmethod
    def forward(ctx, s):
        p = s.softmax(-1).bfloat16().float()
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return p * (g - (g * p).sum(-1, keepdim=True))


def _product(fn):
    """fn on operands rounded to bf16, its result's gradient rounded on the way back."""
    return lambda *xs: _RG.apply(fn(*(_R.apply(x) for x in xs)))


def _attention_rule(qkv, h, scale):
    """The fused op's rule: qkv and g rounded, P rounded after the softmax, gS before its products
    (with a power-of-two scale, rounding gS * scale is rounding gS, then scaling)."""
    B, N, D3 = qkv.shape
    q, k, v = _R.apply(qkv).reshape(B, N, 3, h, D3 // (3 * h)).permute(2, 0, 3, 1, 4)   # (B, h, N, d)
    p = _SoftmaxBF16.apply(_RG.apply(q @ k.transpose(-2, -1)) * scale)                  # (B, h, N, N)
    return _RG.apply(p @ v).transpose(1, 2).reshape(B, N, D3 // 3)                      # (B, N, D)


def _attention_torch(qkv, h, scale):
    B, N, D3 = qkv.shape
    q, k, v = qkv.reshape(B, N, 3, h, D3 // (3 * h)).permute(2, 0, 3, 1, 4)
    return ta.exact(q, k, v, scale).transpose(1, 2).reshape(B, N, D3 // 3)


CASES = {   # name: (minit2t, the rule in torch, torch's own op, input shapes, tolerance against autocast)
    "linear": (F.linear, lambda x, w, b: _product(lambda x, w: x @ w.T)(x, w) + b, TF.linear,
               [(3, 5, 40), (24, 40), (24,)], AUTOCAST),
    "linear_no_bias": (F.linear, _product(lambda x, w: x @ w.T), TF.linear, [(130, 70), (33, 70)], AUTOCAST),
    # GELU in float32 on the float32 product; torch's autocast runs it on the bf16 product, in bf16:
    # measured 1.6e-3 forward, 2.0-2.6e-3 for the gradients, as the Linear alone
    "linear_gelu": (F.linear_gelu, lambda x, w, b: TF.gelu(_product(lambda x, w: x @ w.T)(x, w) + b),
                    lambda x, w, b: TF.gelu(TF.linear(x, w, b)), [(3, 50, 40), (70, 40), (70,)], AUTOCAST),
    # the sum with the residual in float32, on the float32 product; torch's autocast adds the bf16
    # product to the float32 residual (in float32): the product's rounding, as the Linear alone
    "linear_add": (F.linear_add, lambda x, w, b, r: r + (_product(lambda x, w: x @ w.T)(x, w) + b),
                   lambda x, w, b, r: r + TF.linear(x, w, b), [(3, 50, 40), (70, 40), (70,), (3, 50, 70)],
                   AUTOCAST),
    "matmul": (lambda a, b: a @ b, _product(torch.matmul), torch.matmul, [(2, 3, 17, 40), (2, 3, 40, 9)],
               AUTOCAST),
    "matmul_broadcast": (lambda a, b: a @ b, _product(torch.matmul), torch.matmul, [(2, 5, 40), (40, 9)],
                         AUTOCAST),
    "matmul_transposed": (lambda q, k: q @ k.transpose(-2, -1), _product(lambda q, k: q @ k.transpose(-2, -1)),
                          lambda q, k: q @ k.transpose(-2, -1), [(2, 3, 17, 32), (2, 3, 11, 32)], AUTOCAST),
    # torch rounds S = q k^T to bf16 before its softmax (|S| up to ~8 here: 2^-9 * 8 = 0.016
    # on a logit, ~1.6% on its probability) and P @ V after: measured 4-6e-3 norm-wise
    "attention": (lambda qkv: F.attention(qkv, 2, 0.25), lambda qkv: _attention_rule(qkv, 2, 0.25),
                  lambda qkv: _attention_torch(qkv, 2, 0.25), [(3, 19, 96)], (2e-2, 1e-5)),
    "band_dot": (lambda a, b: ops.BandDot.apply(a, b, window=5), _product(lambda a, b: ta.band_dot(a, b, 5)),
                 None, [(2, 11, 9), (2, 11, 9)], None),
    "band_mix": (ops.BandMix.apply, _product(ta.band_mix), None, [(2, 11, 4), (2, 11, 9)], None),
}


def _run(fn, arrays, g, torch_side, autocast):
    """fn's output and input gradients for upstream g, on minit2t or torch tensors."""
    if torch_side:
        xs = [torch.tensor(a, requires_grad=True) for a in arrays]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = fn(*xs)
        y.backward(torch.from_numpy(g).to(y.dtype))
        return y.detach().float().numpy(), [x.grad.float().numpy() for x in xs]
    xs = [mt.tensor(a, requires_grad=True) for a in arrays]
    with mt.autocast("bfloat16"):
        y = fn(*xs)
    y.backward(g)
    return y.data, [x.grad for x in xs]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_ops_against_torch(backend, name):
    mt_fn, rule_fn, torch_fn, shapes, tol = CASES[name]
    arrays = [make_array(7 + i, shape, np.float32, noncontiguous=len(shape) > 2) * 2
              for i, shape in enumerate(shapes)]
    with on_backend(backend):
        plain = mt_fn(*[mt.tensor(a) for a in arrays]).data                 # float32, no autocast
        g = np.random.default_rng(0).standard_normal(plain.shape).astype(np.float32)
        out, grads = _run(mt_fn, arrays, g, False, True)
    assert out.dtype == np.float32 and all(gr.dtype == np.float32 for gr in grads)
    want, want_grads = _run(rule_fn, arrays, g, True, False)
    rule = RULE_ATTENTION if name == "attention" else RULE
    assert_close(out, want, *rule, f"{name} forward (the rule)")
    for i, (got, ref) in enumerate(zip(grads, want_grads)):
        assert_close(got, ref, *rule, f"{name} gradient {i} (the rule)")
    assert relative_error(out, plain) > 1e-4, "no bf16 rounding happened"
    if torch_fn is not None:
        theirs, their_grads = _run(torch_fn, arrays, g, True, True)
        assert_close(out, theirs, *tol, f"{name} forward (torch autocast)")
        for i, (got, ref) in enumerate(zip(grads, their_grads)):
            assert_close(got, ref, *tol, f"{name} gradient {i} (torch autocast)")
