"""A linear layer with a residual added as one op (ops.LinearAdd, F.linear_add) and the Block that uses it.

The C kernels sgemm_bias_add / sgemm_bf16_add (the GEMM with the sum as its epilogue) at every
version this CPU runs, on fixed and drawn shapes: exactly the plain GEMM's C (sgemm_bias,
sgemm_bf16) plus R. The op on every backend against torch is in test_backend_ops.py (float32 and
float64) and test_amp.py (bf16); here the transformer Block on its fused and step-by-step paths, the
same values and gradients bit for bit, and the speed policy (backends.fusion.may_fuse_residual,
may_fuse_linear_add) keeping the steps whenever a branch is watched, replaced, scaled or dropped.

Legend: Bt matrices, M/K/N matrix sides (C (Bt, M, N) = A (Bt, M, K) @ B (Bt, K, N) + bias + R),
B/N/D a block's batch, tokens and width.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minit2t as mt
import minit2t.nn.functional as F
from helpers import layer_run, on_backend
from minit2t import ops
from minit2t.backends import _cmem, get_backend
from minit2t.backends.fusion import may_fuse_linear_add, may_fuse_residual
from minit2t.nn.layers import DropPath, Linear
from minit2t.nn.transformer import Attention, Block, Mlp
from strategies import gemm_cases, make_array
from test_bf16_kernels import LEVELS, c, missing  # noqa: F401 (c: the fixture)
from test_linear_gelu import FP32_LEVELS, SHAPES, _call, _params


def _call_add(c, name, a3, b3, bias, r3):
    """The C function `name` (an _add version) on A, B as test_linear_gelu._call, R (Bt, M, N) any
    row stride, into a NaN-filled C."""
    bt, m, n, k = r3.shape[0], a3.shape[1], b3.shape[2], a3.shape[2]
    out = np.full((bt, m, n), np.nan, np.float32)
    sa = _cmem.strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = _cmem.strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    getattr(c.lib, name)(bt, m, n, k, _cmem.ptr(a3), sa, _cmem.ptr(b3), sb,
                         _cmem.ffi.NULL if bias is None else _cmem.ptr(np.ascontiguousarray(bias)),
                         _cmem.ptr(r3), _cmem.strides(r3, (0, 1)), _cmem.ptr(out), _cmem.strides(out, (0, 1)))
    return out


def _check(c, fused, plain, a, b, bias, padded=False):
    """fused(A, B, bias, R) == plain(A, B, bias) + R, bit for bit; R's rows `padded` past N."""
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    bt, m, n = max(a3.shape[0], b3.shape[0]), a3.shape[1], b3.shape[2]
    r3 = make_array(30, (bt, m, n + 3 if padded else n), np.float32)[:, :, :n]
    want, _ = _call(c, plain, a3, b3, bias)
    got = _call_add(c, fused, a3, b3, bias, r3)
    assert np.array_equal(got, want + r3, equal_nan=True), fused


# SHAPES (test_linear_gelu: the blockings' edges, one and several K blocks) and a weight gradient's
# long K (the split-K plan: K > KC and K >= 8 max(M, N)), and K = 0 (C = bias + R)
ADD_SHAPES = SHAPES + [(1, 40, 5000, 24), (1, 9, 0, 7)]


@pytest.mark.parametrize("bt, m, k, n", ADD_SHAPES)
@pytest.mark.parametrize("gemm, level", _params("sgemm_bias", FP32_LEVELS) + _params("sgemm_bf16", LEVELS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_each_version_is_the_gemm_then_the_sum(c, gemm, level, bt, m, k, n, with_bias):
    a, b = make_array(1, (bt, m, k), np.float32), make_array(2, (bt, k, n), np.float32) * 0.3
    bias = make_array(3, (n,), np.float32) if with_bias else None
    _check(c, f"{gemm}_add_{level}", f"{gemm}_{level}", a, b, bias, padded=bt == 1)


@given(case=gemm_cases(), with_bias=st.booleans(), padded=st.booleans())
def test_dispatchers_on_drawn_cases(c, case, with_bias, padded):
    """The dispatchers (tiny products to the reference GEMM, with this ISA's sum) on any layout of
    A and B, any batch kind, R's rows contiguous or padded."""
    a, b = case
    bias = make_array(7, (b.shape[-1],), np.float32) if with_bias else None
    _check(c, "sgemm_bias_add", "sgemm_bias", a, b, bias, padded)
    _check(c, "sgemm_bf16_add", "sgemm_bf16", a, b, bias, padded)


def test_nan_and_inf_pass_through_the_epilogue(c):
    a = make_array(8, (1, 40, 64), np.float32)
    a[0, 3, 5], a[0, 7, :] = np.nan, np.inf
    b = make_array(9, (1, 64, 48), np.float32)
    with np.errstate(invalid="ignore"):
        _check(c, "sgemm_bias_add", "sgemm_bias", a, b, make_array(10, (48,), np.float32))
        _check(c, "sgemm_bf16_add", "sgemm_bf16", a, b, None)


# ---- the Block: fused and step-by-step paths -------------------------------------

def _block_run(block, x, g, bf16, fuse):
    """block(x) (its residual sums fused or not), its gradients for upstream g: (y, gx, [param grads])."""
    original = Block.fused_layers
    try:
        if not fuse:
            Block.fused_layers = {**original, "attn": type("NotAttention", (), {})}   # policy says no
        return layer_run(block, x, g, bf16)
    finally:
        Block.fused_layers = original


def _same(a, b):
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert all(np.array_equal(p, q) for p, q in zip(a[2], b[2]))


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("shape", [(2, 65, 128), (3, 7, 20)])
def test_block_fused_is_the_steps_bit_for_bit(c, shape, bf16):
    mt.manual_seed(0)
    block = Block(shape[-1], num_heads=4)
    x, g = make_array(11, shape, np.float32), make_array(12, shape, np.float32)
    with on_backend("c"):
        assert may_fuse_residual(block) and may_fuse_linear_add(block.attn) and may_fuse_linear_add(block.mlp)
        fused = _block_run(block, x, g, bf16, True)
        steps = _block_run(block, x, g, bf16, False)
        with mt.no_grad(), mt.autocast("bfloat16", enabled=bf16):
            inference = block(mt.tensor(x)).data
    _same(fused, steps)
    assert np.array_equal(inference, steps[0])


@pytest.mark.parametrize("bf16", [False, True])
def test_t2t_layer_fused_is_the_steps_bit_for_bit(c, bf16, monkeypatch):
    """The T2T layer: its value skip v + proj(...) and its x + mlp(...) each in the product before."""
    import minit2t.models.token_transformer as tt
    mt.manual_seed(0)
    layer = tt.TokenTransformer(27, 32, mlp_ratio=2.0)
    x, g = make_array(31, (3, 64, 27), np.float32), make_array(32, (3, 64, 32), np.float32)
    with on_backend("c"):
        assert may_fuse_residual(layer) and may_fuse_linear_add(layer.attn) and may_fuse_linear_add(layer.mlp)
        fused = layer_run(layer, x, g, bf16)
        monkeypatch.setattr(tt, "may_fuse_residual", lambda block: False)
        monkeypatch.setattr(tt, "linear_out", lambda layer, linear, drop, x, r: r + drop(linear(x)))
        steps = layer_run(layer, x, g, bf16)
    _same(fused, steps)


def test_block_with_dropout_draws_the_same_masks(c):
    """Dropout acting after proj and fc2: the branches add the residual after it, as the steps do."""
    mt.manual_seed(0)
    block = Block(16, num_heads=2, drop=0.3)
    x, g = make_array(13, (2, 5, 16), np.float32), make_array(14, (2, 5, 16), np.float32)
    with on_backend("c"):
        assert may_fuse_residual(block) and not may_fuse_linear_add(block.mlp)
        mt.manual_seed(5)
        fused = _block_run(block, x, g, False, True)
        mt.manual_seed(5)
        steps = _block_run(block, x, g, False, False)
    _same(fused, steps)


class _LoggingLinear(Linear):
    pass


def test_watched_scaled_or_dropped_branches_take_the_steps(c):
    block = Block(8, num_heads=2)
    x = mt.tensor(make_array(15, (2, 3, 8), np.float32))
    with on_backend("c"):
        assert may_fuse_residual(block)
        for module in (block.attn, block.mlp, block.drop_path):
            for register in (module.register_forward_hook, module.register_forward_pre_hook):
                seen = []
                handle = register(lambda *args: seen.append(1))
                assert not may_fuse_residual(block)
                block(x)
                assert seen, "the hook did not run: the fused sum stood in for a watched branch"
                handle.remove()
        for layer, name in ((block.attn, "proj"), (block.mlp, "fc2")):
            handle = getattr(layer, name).register_forward_hook(lambda *args: seen.append(name))
            assert may_fuse_residual(block) and not may_fuse_linear_add(layer)
            block(x)
            assert seen[-1] == name
            handle.remove()
        block.mlp.fc2 = _LoggingLinear(8, 8)
        assert not may_fuse_linear_add(block.mlp)
        scaled = Block(8, num_heads=2, layer_scale_init=1e-5)
        assert not may_fuse_residual(scaled)
        dropped = Block(8, num_heads=2, drop_path=0.5)
        assert not may_fuse_residual(dropped)
        dropped.eval()
        assert may_fuse_residual(dropped)
        shunted = Block(8, num_heads=2, attention="shunted")
        assert not may_fuse_residual(shunted)


def test_a_subclass_of_the_branches_takes_the_steps(c):
    class MyAttention(Attention):
        pass
    block = Block(8, num_heads=2)
    block.attn = MyAttention(8, 2)
    with on_backend("c"):
        assert not may_fuse_residual(block)
    block = Block(8, num_heads=2)
    block.mlp = type("MyMlp", (Mlp,), {})(8, 16)
    with on_backend("c"):
        assert not may_fuse_residual(block)


def test_a_backend_without_its_own_op_takes_the_steps():
    """The numpy backend has no LinearAdd of its own: the Block keeps the paper's sums; the op itself
    still gives their values."""
    block = Block(8, num_heads=2)
    x = mt.tensor(make_array(16, (2, 3, 8), np.float32))
    r = mt.tensor(make_array(17, (2, 3, 8), np.float32))
    with on_backend("numpy"):
        assert not may_fuse_residual(block) and not may_fuse_linear_add(block.mlp)
        fused = F.linear_add(x, block.mlp.fc2.weight[:, :8], block.mlp.fc2.bias, r).data
        steps = (r + F.linear(x, block.mlp.fc2.weight[:, :8], block.mlp.fc2.bias)).data
    assert np.array_equal(fused, steps)
    assert ops.LinearAdd in get_backend("c").OPS if _cmem.lib is not None else True


def test_a_branch_given_a_residual_adds_it_on_any_path():
    """attn(x, residual=r) and mlp(x, residual=r) are r + the branch, fused or not, on any backend."""
    mt.manual_seed(1)
    block = Block(8, num_heads=2)
    x = mt.tensor(make_array(18, (2, 3, 8), np.float32))
    r = mt.tensor(make_array(19, (2, 3, 8), np.float32))
    for backend in ("numpy",) + (("c",) if _cmem.lib is not None else ()):
        with on_backend(backend):
            for branch in (block.attn, block.mlp):
                np.testing.assert_allclose(branch(x, residual=r).data, (r + branch(x)).data, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_bad_input_is_refused_in_one_line(backend):
    if backend == "c" and _cmem.lib is None:
        pytest.skip("the C extension is not built")
    x = mt.tensor(np.ones((2, 3), np.float32))
    w, b = mt.tensor(np.ones((5, 3), np.float32)), mt.tensor(np.ones(5, np.float32))
    with on_backend(backend):
        with pytest.raises(ValueError, match=r"linear_add: residual must be \(2, 5\) for x \(2, 3\) and "
                                             r"weight \(5, 3\), got \(2, 4\)"):
            F.linear_add(x, w, b, mt.tensor(np.ones((2, 4), np.float32)))
        with pytest.raises(TypeError, match="linear_add expects bias and residual as Tensors, got NoneType"):
            F.linear_add(x, w, None, mt.tensor(np.ones((2, 5), np.float32)))
        with pytest.raises(ValueError, match=r"linear_add expects input of shape \(\.\.\., 4\), got \(2, 3\)"):
            F.linear_add(x, mt.tensor(np.ones((5, 4), np.float32)), b, mt.tensor(np.ones((2, 5), np.float32)))
