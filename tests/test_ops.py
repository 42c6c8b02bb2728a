"""Every op's gradient: float64 against central finite differences, float64 against
torch (<= 1e-10 norm-wise), and one float32 case per op against torch.

Shapes are drawn small (sides <= 5), with size-1 and broadcast dims and
non-contiguous views. Legend: B batch, C channels/classes, H/W image size,
k kernel, s stride, p padding, L windows, M/K/N matmul sides, D features.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
TF = torch.nn.functional

import minit2t as mt                                          # noqa: E402
import minit2t.nn.functional as F                             # noqa: E402
import strategies as S                                        # noqa: E402
from helpers import F64, check_against_torch, numerical_grad_check  # noqa: E402


def both(mt_fn, torch_fn, arrays, grad_seed=0):
    """Finite differences, then torch, in float64 (the FD pass restores the arrays)."""
    numerical_grad_check(mt_fn, arrays, seed=grad_seed)
    check_against_torch(mt_fn, torch_fn, arrays, *F64, grad_out_seed=grad_seed)


# ---- elementwise: (mt, torch, low, high); low None = standard normal -------
UNARY = {
    "neg": (lambda x: -x, lambda x: -x, None, None),
    "exp": (lambda x: x.exp(), torch.exp, None, None),
    "log": (lambda x: x.log(), torch.log, 0.2, 4.0),
    "sqrt": (lambda x: x.sqrt(), torch.sqrt, 0.2, 4.0),
    "tanh": (lambda x: x.tanh(), torch.tanh, None, None),
    "erf": (lambda x: x.erf(), torch.erf, -6.0, 6.0),
    "gelu": (F.gelu, TF.gelu, -6.0, 6.0),
    "pow2": (lambda x: x ** 2, lambda x: x ** 2, None, None),
    "pow3": (lambda x: x ** 3, lambda x: x ** 3, None, None),
    "pow_half": (lambda x: x ** 0.5, lambda x: x ** 0.5, 0.2, 4.0),
    "pow_-1.5": (lambda x: x ** -1.5, lambda x: x ** -1.5, 0.5, 3.0),
    "pow_-2": (lambda x: x ** -2, lambda x: x ** -2, 0.5, 3.0),
    "rpow": (lambda x: 2.0 ** x, lambda x: 2.0 ** x, None, None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans())
def test_unary(name, shape, seed, nc):
    mt_fn, th_fn, low, high = UNARY[name]
    both(mt_fn, th_fn, [S.make_array(seed, shape, noncontiguous=nc, low=low, high=high)])


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=S.broadcastable_shapes(max_dims=3), seed=S.seeds, nc=st.tuples(st.booleans(), st.booleans()))
def test_binary_broadcast(name, shapes, seed, nc):
    a = S.make_array(seed, shapes[0], noncontiguous=nc[0])
    b = S.make_array(seed + 1, shapes[1], noncontiguous=nc[1], low=0.5, high=2.0)
    b *= np.where(S.make_array(seed + 2, shapes[1]) < 0, -1.0, 1.0)   # divisors in +-[0.5, 2]
    both(*BINARY[name], [a, b])


@pytest.mark.parametrize("mt_fn", [lambda x: 2.0 - x, lambda x: 1.5 / x, lambda x: 3.0 + x * 0.5])
def test_python_scalar_operands(mt_fn):
    x = S.make_array(0, (3, 4), low=0.5, high=2.0)
    both(mt_fn, mt_fn, [x])                        # the same expression is valid torch


@pytest.mark.parametrize("kind", S.MATMUL_KINDS)
@given(data=st.data(), seed=S.seeds, nc=st.tuples(st.booleans(), st.booleans()))
def test_matmul(kind, data, seed, nc):
    shapes = data.draw(S.matmul_shapes(kind))
    a = S.make_array(seed, shapes[0], noncontiguous=nc[0])
    b = S.make_array(seed + 1, shapes[1], noncontiguous=nc[1])
    both(lambda x, y: x @ y, torch.matmul, [a, b])


def test_matmul_transposed_weight_view():
    x, w = S.make_array(0, (2, 3, 4)), S.make_array(1, (5, 4))
    both(lambda a, b: a @ b.T, lambda a, b: a @ b.T, [x, w])          # (2, 3, 4) @ (4, 5)


# ---- reductions ------------------------------------------------------------
def _dims(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@given(data=st.data(), shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans(), keep=st.booleans())
def test_reductions(op, data, shape, seed, nc, keep):
    axis = data.draw(S.reduce_axes(len(shape)))
    x = (S.distinct_array(seed, shape, nc) if op == "max"           # no ties
         else S.make_array(seed, shape, noncontiguous=nc))
    th = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[op]
    both(lambda t: getattr(t, op)(axis=axis, keepdims=keep),
         lambda t: th(t, dim=_dims(axis, t.ndim), keepdim=keep), [x])


# ---- shapes ----------------------------------------------------------------
@given(data=st.data(), shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans())
def test_reshape(data, shape, seed, nc):
    target = data.draw(S.reshape_targets(shape))
    x = S.make_array(seed, shape, noncontiguous=nc)
    both(lambda t: t.reshape(target), lambda t: t.reshape(target), [x])


@given(data=st.data(), shape=S.shapes(max_dims=4), seed=S.seeds, nc=st.booleans())
def test_permute(data, shape, seed, nc):
    axes = data.draw(st.permutations(range(len(shape))))
    axes = tuple(a - len(shape) if data.draw(st.booleans()) else a for a in axes)
    both(lambda t: t.permute(axes), lambda t: t.permute(axes), [S.make_array(seed, shape, noncontiguous=nc)])


def _torch_take(index, shape):
    """torch has no negative-step slices: index the flat tensor with numpy's element map."""
    where = np.asarray(np.arange(int(np.prod(shape))).reshape(shape)[index])
    flat = torch.from_numpy(where.reshape(-1).copy())
    return lambda t: t.reshape(-1)[flat].reshape(where.shape)


@given(data=st.data(), shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans())
def test_getitem(data, shape, seed, nc):
    index = data.draw(S.getitem_indices(shape))
    both(lambda t: t[index], _torch_take(index, shape), [S.make_array(seed, shape, noncontiguous=nc)])


@pytest.mark.parametrize("index", [
    np.s_[::-1], np.s_[1, ::-2], np.s_[[0, 0, 2, -1]], np.s_[:, [1, 1, 0]], np.s_[-1],
    np.s_[..., 1:3], np.s_[None, 1], np.s_[[2, 0], :, [1, 1]], np.s_[1:, -1, ::-3]])
def test_getitem_cases(index):
    both(lambda t: t[index], _torch_take(index, (3, 4, 5)), [S.make_array(0, (3, 4, 5), noncontiguous=True)])


@given(case=S.concat_shapes(), seed=S.seeds, nc=st.booleans())
def test_concat(case, seed, nc):
    shapes, axis = case
    arrays = [S.make_array(seed + i, s, noncontiguous=nc and i == 0) for i, s in enumerate(shapes)]
    both(lambda *ts: mt.cat(ts, axis=axis), lambda *ts: torch.cat(ts, dim=axis), arrays)


def _weighted(pieces):
    """Each piece times its own weight, concatenated in reverse: every piece's gradient differs."""
    return [p * (i + 2.0) for i, p in enumerate(pieces)][::-1]


@given(case=S.split_cases(), seed=S.seeds, nc=st.booleans())
def test_split(case, seed, nc):
    shape, sizes, axis = case
    both(lambda t: mt.cat(_weighted(t.split(sizes, axis)), axis=axis),
         lambda t: torch.cat(_weighted(torch.split(t, sizes, dim=axis)), dim=axis),
         [S.make_array(seed, shape, noncontiguous=nc)])


@given(shape=S.shapes(1, 4), seed=S.seeds, nc=st.booleans(), data=st.data())
def test_unbind(shape, seed, nc, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    both(lambda t: mt.cat([p.reshape((1,) + p.shape) for p in _weighted(t.unbind(axis))], axis=0),
         lambda t: torch.stack(_weighted(torch.unbind(t, dim=axis)), dim=0),
         [S.make_array(seed, shape, noncontiguous=nc)])


@given(case=S.expand_shapes(), seed=S.seeds, nc=st.booleans())
def test_expand(case, seed, nc):
    shape, target = case
    x = S.make_array(seed, shape, noncontiguous=nc)
    both(lambda t: t.expand(target), lambda t: t.expand(target), [x])


# ---- softmax, layer norm ---------------------------------------------------
@pytest.mark.parametrize("log", [False, True])
@given(data=st.data(), shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans(),
       offset=st.sampled_from([0.0, 1000.0, -1000.0]))
def test_softmax(log, data, shape, seed, nc, offset):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = S.make_array(seed, shape, noncontiguous=nc)
    x += offset                                                     # stable at +-1000
    mt_fn = (lambda t: t.log_softmax(axis)) if log else (lambda t: t.softmax(axis))
    th_fn = (lambda t: torch.log_softmax(t, axis)) if log else (lambda t: torch.softmax(t, axis))
    assert np.all(np.isfinite(mt_fn(mt.tensor(x)).data))
    both(mt_fn, th_fn, [x])


@given(shape=S.shapes(max_dims=3), seed=S.seeds, nc=st.booleans())
def test_layer_norm(shape, seed, nc):
    D = shape[-1]
    x = S.make_array(seed, shape, noncontiguous=nc)
    w, b = S.make_array(seed + 1, (D,)), S.make_array(seed + 2, (D,))
    both(lambda t, w, b: F.layer_norm(t, w, b, eps=1e-5),
         lambda t, w, b: TF.layer_norm(t, (D,), w, b, eps=1e-5), [x, w, b])


# ---- unfold / fold -----------------------------------------------------------
@given(params=S.window_params(), seed=S.seeds, nc=st.booleans())
def test_unfold(params, seed, nc):
    B, C, H, W, k, s, p = params
    x = S.make_array(seed, (B, C, H, W), noncontiguous=nc)                  # (B, C, H, W)
    both(lambda t: F.unfold(t, k, s, p), lambda t: TF.unfold(t, k, padding=p, stride=s), [x])


@given(params=S.window_params(), seed=S.seeds, nc=st.booleans())
def test_fold(params, seed, nc):
    B, C, H, W, k, s, p = params
    L = S.window_count(H, k, s, p) * S.window_count(W, k, s, p)
    cols = S.make_array(seed, (B, C * k * k, L), noncontiguous=nc)         # (B, C*k*k, L)
    both(lambda t: F.fold(t, (H, W), k, s, p),
         lambda t: TF.fold(t, (H, W), k, padding=p, stride=s), [cols])


@given(params=S.window_params(), seed=S.seeds)
def test_unfold_fold_adjoint(params, seed):
    B, C, H, W, k, s, p = params
    x = S.make_array(seed, (B, C, H, W))
    cols = F.unfold(mt.tensor(x), k, s, p).data                            # (B, C*k*k, L)
    y = S.make_array(seed + 1, cols.shape)
    back = F.fold(mt.tensor(y), (H, W), k, s, p).data                      # (B, C, H, W)
    lhs, rhs = float(np.sum(cols * y)), float(np.sum(x * back))
    assert abs(lhs - rhs) <= 1e-12 * (np.linalg.norm(cols) * np.linalg.norm(y) + 1e-300)


# ---- cross-entropy -----------------------------------------------------------
@given(B=st.integers(1, 4), C=st.integers(1, 5), seed=S.seeds, soft=st.booleans(),
       smoothing=st.sampled_from([0.0, 0.1, 0.35]))
def test_cross_entropy(B, C, seed, soft, smoothing):
    logits = S.make_array(seed, (B, C)) * 3                                 # (B, C)
    r = np.random.default_rng(seed)
    if soft:
        target = r.dirichlet(np.ones(C), size=B)                            # (B, C) rows sum to 1
    else:
        target = r.integers(0, C, size=B)                                   # (B,)
    both(lambda t: F.cross_entropy(t, target, label_smoothing=smoothing),
         lambda t: TF.cross_entropy(t, torch.from_numpy(target), label_smoothing=smoothing), [logits])


# ---- dropout -----------------------------------------------------------------
@given(shape=S.shapes(max_dims=3), seed=S.seeds, p=st.sampled_from([0.1, 0.5, 0.8]))
def test_dropout_fixed_mask(shape, seed, p):
    x = S.make_array(seed, shape, low=0.5, high=2.0)                        # no zeros
    mt.manual_seed(seed)
    t = mt.tensor(x, requires_grad=True)
    out = F.dropout(t, p)
    kept = out.data != 0
    np.testing.assert_allclose(out.data, np.where(kept, x / (1 - p), 0.0), rtol=1e-15)
    g = S.make_array(seed + 1, shape)
    out.backward(g)
    np.testing.assert_allclose(t.grad, np.where(kept, g / (1 - p), 0.0), rtol=1e-15)
    mask = torch.from_numpy(kept / (1 - p))

    def fixed(u):
        mt.manual_seed(seed)                                                # the same mask every call
        return F.dropout(u, p)
    both(fixed, lambda u: u * mask, [x])


def test_dropout_identity_and_extremes():
    x = mt.tensor(S.make_array(0, (4, 5)), requires_grad=True)
    for y in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0), mt.nn.Dropout(0.5).eval()(x)):
        np.testing.assert_array_equal(y.data, x.data)
    y = F.dropout(x, 1.0)
    y.sum().backward()
    assert not np.any(y.data) and not np.any(x.grad)


def test_dropout_rate_statistics():
    mt.manual_seed(1)
    n, p = 200_000, 0.3
    out = F.dropout(mt.tensor(np.ones(n)), p).data
    frac = np.mean(out == 0)
    assert abs(frac - p) < 0.01                          # std of frac is ~0.001
    assert abs(out.mean() - 1.0) < 0.02                  # kept values scaled by 1/(1-p)


# ---- composites built on the ops --------------------------------------------
def test_linear_and_conv2d():
    x, w, b = S.make_array(0, (2, 3, 4)), S.make_array(1, (5, 4)), S.make_array(2, (5,))
    both(F.linear, TF.linear, [x, w, b])
    img, kern, kb = S.make_array(3, (2, 2, 5, 5)), S.make_array(4, (3, 2, 3, 3)), S.make_array(5, (3,))
    both(lambda a, b, c: F.conv2d(a, b, c, stride=2, padding=1),
         lambda a, b, c: TF.conv2d(a, b, c, stride=2, padding=1), [img, kern, kb])


# ---- float32: one case per op against torch, tolerance per op ----------------
def _f32(mt_fn, th_fn, shapes, rtol, atol=1e-7, low=None, high=None):
    arrays = [S.make_array(i, s, np.float32, low=low, high=high) for i, s in enumerate(shapes)]
    return mt_fn, th_fn, arrays, rtol, atol


_LABELS = np.array([0, 3, 1, 4])
FLOAT32 = {
    **{name: _f32(m, t, [(3, 4, 5)], 1e-6, low=lo, high=hi) for name, (m, t, lo, hi) in UNARY.items()},
    **{name: _f32(m, t, [(3, 1, 5), (4, 1)], 1e-6, low=0.5, high=2.0) for name, (m, t) in BINARY.items()},
    "matmul": _f32(lambda a, b: a @ b, torch.matmul, [(2, 1, 4, 5), (3, 5, 4)], 1e-6),
    "matmul_weight": _f32(lambda a, b: a @ b, torch.matmul, [(2, 3, 5), (5, 4)], 1e-6),
    "sum": _f32(lambda t: t.sum(axis=(0, -1)), lambda t: t.sum(dim=(0, -1)), [(3, 4, 5)], 1e-6),
    "mean": _f32(lambda t: t.mean(axis=1, keepdims=True), lambda t: t.mean(1, True), [(3, 4, 5)], 1e-6),
    "max": _f32(lambda t: t.max(axis=-1), lambda t: t.amax(-1), [(3, 4, 5)], 1e-7),
    "reshape": _f32(lambda t: t.reshape(5, -1), lambda t: t.reshape(5, -1), [(3, 4, 5)], 0.0),
    "permute": _f32(lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1), [(3, 4, 5)], 0.0),
    "getitem": _f32(lambda t: t[1:, [0, 2, 2]], lambda t: t[1:, [0, 2, 2]], [(3, 4, 5)], 1e-7),
    "concat": _f32(lambda a, b: mt.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1), [(3, 2), (3, 4)], 0.0),
    "expand": _f32(lambda t: t.expand(2, 4, 5), lambda t: t.expand(2, 4, 5), [(4, 1)], 1e-7),
    "softmax": _f32(lambda t: t.softmax(1), lambda t: t.softmax(1), [(3, 4, 5)], 1e-6),
    "log_softmax": _f32(lambda t: t.log_softmax(), lambda t: t.log_softmax(-1), [(3, 4, 5)], 1e-6),
    "layer_norm": _f32(lambda t, w, b: F.layer_norm(t, w, b), lambda t, w, b: TF.layer_norm(t, (5,), w, b),
                       [(3, 4, 5), (5,), (5,)], 1e-5),
    "unfold": _f32(lambda t: F.unfold(t, 3, 2, 1), lambda t: TF.unfold(t, 3, padding=1, stride=2),
                   [(2, 3, 5, 5)], 1e-7),
    "fold": _f32(lambda t: F.fold(t, (5, 5), 3, 2, 1), lambda t: TF.fold(t, (5, 5), 3, padding=1, stride=2),
                 [(2, 27, 9)], 1e-6),
    "cross_entropy": _f32(lambda t: F.cross_entropy(t, _LABELS, label_smoothing=0.1),
                          lambda t: TF.cross_entropy(t, torch.from_numpy(_LABELS), label_smoothing=0.1),
                          [(4, 6)], 1e-6),
}


@pytest.mark.parametrize("name", sorted(FLOAT32))
def test_float32_against_torch(name):
    mt_fn, th_fn, arrays, rtol, atol = FLOAT32[name]
    out = check_against_torch(mt_fn, th_fn, arrays, rtol, atol)
    assert out.dtype == np.float32


def test_pow_zero_exponent_at_zero():
    """d/dx x**0 = 0 everywhere, x = 0 included (as torch)."""
    both(lambda t: t ** 0, lambda t: t ** 0, [np.array([0.0, 1.5, -2.0])])
