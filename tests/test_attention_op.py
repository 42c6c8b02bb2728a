"""The fused attention op (ops.Attention, F.attention) and the layers that use it.

The op against a torch transcription of the formula (forward and the gradient of the packed qkv,
float64 and float32) and float64 finite differences; bad input refused in one line; nn's
Attention and the T2T layer's TokenAttention giving the same output and gradients on their fused
and step-by-step paths, and the speed policy (backends.fusion.may_fuse_attention) sending them the
step-by-step way whenever the probabilities are watched or changed.

Legend: B batch, N tokens, h heads, d head dim, D = h * d, Din / E the T2T layer's widths.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minit2t as mt                                          # noqa: E402
import minit2t.nn.functional as F                             # noqa: E402
import strategies as S                                        # noqa: E402
from helpers import F64, assert_close, check_against_torch, numerical_grad_check  # noqa: E402
from minit2t import ops                                       # noqa: E402
from minit2t.backends.fusion import may_fuse_attention        # noqa: E402
from minit2t.models.token_transformer import TokenAttention  # noqa: E402
from minit2t.nn.layers import Softmax                         # noqa: E402
from minit2t.nn.transformer import Attention                  # noqa: E402


def attention_t(qkv, num_heads, scale, key_bias=None):
    """The formula in torch: q, k, v from the packed qkv, softmax(q k^T * scale + key_bias) v,
    heads side by side."""
    B, N, D3 = qkv.shape
    q, k, v = qkv.reshape(B, N, 3, num_heads, D3 // (3 * num_heads)).permute(2, 0, 3, 1, 4)  # (B, h, N, d)
    s = q @ k.transpose(-2, -1) * scale                               # (B, h, N, N)
    if key_bias is not None:
        s = s + key_bias[:, None, None, :]                            # every query's score of key j
    p = torch.softmax(s, dim=-1)                                      # (B, h, N, N)
    return (p @ v).transpose(1, 2).reshape(B, N, D3 // 3)             # (B, N, D)


def _check(B, N, h, d, scale, dtype, seed=0, noncontiguous=False):
    qkv = S.make_array(seed, (B, N, 3 * h * d), dtype, noncontiguous=noncontiguous)
    rtol, atol = F64 if dtype == np.float64 else (1e-5, 1e-6)       # float32: a few roundings per entry
    out = check_against_torch(lambda t: F.attention(t, h, scale), lambda t: attention_t(t, h, scale),
                              [qkv], rtol, atol)
    assert out.dtype == dtype and out.shape == (B, N, h * d)


SHAPES = [(2, 5, 2, 3), (1, 1, 1, 1), (3, 1, 2, 4), (2, 4, 1, 6), (2, 6, 3, 1), (2, 65, 3, 2), (1, 17, 4, 32)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, N, h, d", SHAPES)
def test_against_torch(B, N, h, d, dtype):
    _check(B, N, h, d, d ** -0.5, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_strided_input_and_large_scores(dtype):
    """A strided qkv, and a scale large enough that the unshifted exponentials would overflow."""
    _check(2, 7, 2, 4, 0.3, dtype, seed=3, noncontiguous=True)
    _check(2, 7, 2, 4, 60.0, dtype, seed=4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, N, h, d", [(2, 5, 2, 3), (1, 1, 1, 1), (2, 65, 4, 8)])
def test_key_bias_against_torch(B, N, h, d, dtype):
    """ToMe's proportional attention: log(size_j) added to every query's score of key j; a constant."""
    qkv = S.make_array(1, (B, N, 3 * h * d), dtype)
    bias = np.log(np.random.default_rng(2).integers(1, 6, (B, N))).astype(dtype)
    rtol, atol = F64 if dtype == np.float64 else (1e-5, 1e-6)
    check_against_torch(lambda t: F.attention(t, h, 0.4, key_bias=bias),
                        lambda t: attention_t(t, h, 0.4, torch.from_numpy(bias)), [qkv], rtol, atol)


@given(S.token_batches(max_tokens=5), st.sampled_from([0.2, 0.7, 1.5]), S.seeds, st.booleans())
def test_finite_differences_and_torch(batch, scale, seed, nc):
    B, N, D, h = batch
    qkv = S.make_array(seed, (B, N, 3 * D), noncontiguous=nc)
    fn = lambda t: F.attention(t, h, scale)                          # noqa: E731
    numerical_grad_check(fn, [qkv], seed=seed)
    check_against_torch(fn, lambda t: attention_t(t, h, scale), [qkv], *F64, grad_out_seed=seed)


def test_scale_of_any_real_type_keeps_float32():
    x = mt.tensor(S.make_array(1, (2, 3, 12), np.float32), requires_grad=True)
    for scale in (np.float64(0.3), np.float32(0.3), 1, 0.0, -0.5):
        y = F.attention(x, 2, scale)
        y.sum().backward()
        assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_saves_qkv_and_probabilities():
    qkv = S.make_array(2, (2, 3, 12))
    ctx = ops.Context(ops.Attention)
    ops.Attention.forward(ctx, qkv, 2, 0.5)
    saved_qkv, p = ctx.saved
    assert saved_qkv is qkv and p.shape == (2, 2, 3, 3) and (ctx.num_heads, ctx.scale) == (2, 0.5)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-14)


ONES = np.ones((2, 5, 30), np.float32)


@pytest.mark.parametrize("qkv, num_heads, scale, message", [
    (ONES, 4, 0.5, "attention expects qkv of shape (B, N, 3*D) with D divisible by num_heads=4, got (2, 5, 30)"),
    (ONES[0], 2, 0.5, "attention expects qkv of shape (B, N, 3*D) with D divisible by num_heads=2, got (5, 30)"),
    (np.ones((2, 5, 31)), 1, 0.5, "attention expects qkv of shape (B, N, 3*D) with D divisible by num_heads=1, "
                                  "got (2, 5, 31)"),
    (ONES, 0, 0.5, "attention expects num_heads a positive int, got 0"),
    (ONES, 2.0, 0.5, "attention expects num_heads a positive int, got 2.0"),
    (ONES, True, 0.5, "attention expects num_heads a positive int, got True"),
    (ONES, 2, float("nan"), "attention expects scale a finite real number, got nan"),
    (ONES, 2, float("inf"), "attention expects scale a finite real number, got inf"),
    (ONES, 2, "0.5", "attention expects scale a finite real number, got '0.5'"),
    (ONES, 2, None, "attention expects scale a finite real number, got None"),
    (np.ones((2, 5, 30), np.int64), 2, 0.5, "attention expects a floating-point qkv, got dtype int64"),
])
def test_bad_input_is_one_line(qkv, num_heads, scale, message):
    with pytest.raises(ValueError) as info:
        F.attention(mt.tensor(qkv), num_heads, scale)
    assert str(info.value) == message and "\n" not in message


@pytest.mark.parametrize("bias, message", [
    (np.zeros((2, 4), np.float32), "got float32 (2, 4)"),
    (np.zeros((2, 5), np.float64), "got float64 (2, 5)"),
    ([0.0] * 5, "got list"),
])
@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_bad_key_bias_is_one_line(bias, message, backend):
    before = mt.get_backend().name
    try:
        mt.set_backend(backend)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(ValueError) as info:
            F.attention(mt.tensor(ONES), 2, 0.5, key_bias=bias)
    finally:
        mt.set_backend(before)
    assert str(info.value) == f"attention expects key_bias a float32 array of shape (2, 5), {message}"


# ---- the layers: fused and step-by-step agree; the probabilities are seen when watched ----------

def _run(layer, x, g):
    """Output, input gradient and parameter gradients of one forward and backward."""
    layer.zero_grad()
    xt = mt.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(g)
    return [y.data, xt.grad] + [p.grad for p in layer.parameters()]


def _count_fused(monkeypatch):
    calls, real = [], F.attention
    monkeypatch.setattr(F, "attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


LAYERS = {
    "Attention": (lambda: Attention(12, num_heads=3, qkv_bias=True), (2, 7, 12)),
    "TokenAttention": (lambda: TokenAttention(10, in_dim=6, qkv_bias=True), (2, 9, 10)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_paths_agree(name, monkeypatch):
    make, shape = LAYERS[name]
    layer = make().to(np.float64)
    x = S.make_array(5, shape)
    g = S.make_array(6, shape[:2] + (layer.proj.weight.shape[0],))
    calls = _count_fused(monkeypatch)
    fused = _run(layer, x, g)
    assert len(calls) == 1
    seen = []
    handle = layer.softmax.register_forward_hook(lambda m, inputs, out: seen.append(out.data))
    stepwise = _run(layer, x, g)
    handle.remove()
    assert len(calls) == 1 and len(seen) == 1                       # the hook saw the probabilities
    np.testing.assert_allclose(seen[0].sum(-1), 1.0, rtol=1e-13)
    for i, (a, b) in enumerate(zip(fused, stepwise)):
        assert_close(a, b, 1e-12, 1e-14, f"{name}: output, input gradient, parameter gradients [{i}]")


class _OwnProbabilities(Attention):
    def probabilities(self, q, k, size=None):
        return super().probabilities(q, k, size)


class _SameSteps(Attention):
    """A subclass that keeps Attention's steps: the fused op still stands for them."""


class _ScaledSoftmax(Softmax):
    def forward(self, x):
        return super().forward(x * 2.0)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_watched_probabilities_take_the_step_by_step_path(name):
    layer = LAYERS[name][0]()
    assert may_fuse_attention(layer)
    for module in (layer.softmax, layer.attn_drop):
        for register in (module.register_forward_hook, module.register_forward_pre_hook):
            handle = register(lambda *args: None)
            assert not may_fuse_attention(layer)
            handle.remove()
            assert may_fuse_attention(layer)
    layer.attn_drop.p = 0.1
    assert not may_fuse_attention(layer)                             # dropout on the probabilities
    layer.eval()
    assert may_fuse_attention(layer)                                 # ... only while training
    layer.softmax = _ScaledSoftmax(axis=-1)                          # a softmax of another kind
    assert not may_fuse_attention(layer)


def test_attention_size_and_subclasses_take_the_step_by_step_path():
    layer = Attention(8, num_heads=2)
    assert may_fuse_attention(layer) and may_fuse_attention(layer, None)
    assert not may_fuse_attention(layer, np.ones((1, 3)))
    assert not may_fuse_attention(_OwnProbabilities(8, num_heads=2))
    assert may_fuse_attention(_SameSteps(8, num_heads=2))
    layer.mix = lambda attn, v: None                                 # an instance's own step
    assert not may_fuse_attention(layer)
