"""A linear layer with its GELU as one op (ops.LinearGELU, F.linear_gelu) and the MLP that uses it.

The C kernels sgemm_bias_gelu / sgemm_bf16_gelu (the GEMM with GELU as its epilogue) at every
version this CPU runs, on fixed and drawn shapes: C exactly the plain GEMM's (sgemm_bias,
sgemm_bf16) and act exactly gelu_forward of it, kept apart or in place. The op on every backend
against torch is in test_backend_ops.py (float32 and float64) and test_amp.py (bf16); here the
model's MLP on its fused and step-by-step paths, the same values and gradients bit for bit, and
the speed policy (backends.fusion.may_fuse_linear_gelu) sending it the step-by-step way whenever
fc1 or its GELU is watched or replaced.

Legend: Bt matrices, M/K/N matrix sides (C (Bt, M, N) = A (Bt, M, K) @ B (Bt, K, N)), D/F the
MLP's widths.
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
from minit2t.backends.fusion import may_fuse_linear_gelu
from minit2t.nn.layers import GELU, Linear
from minit2t.nn.transformer import Mlp
from strategies import gemm_cases, make_array
from test_bf16_kernels import LEVELS, c, missing  # noqa: F401 (c: the fixture)

FP32_LEVELS = [("ref", 0), ("avx2", 1), ("avx512", 2)]


def _params(gemm, levels):
    """(gemm, level) for each version, skipped (saying why) where it cannot run."""
    return [pytest.param(gemm, name, id=f"{gemm}_{name}",
                         marks=pytest.mark.skipif(bool(missing(need)), reason=missing(need)))
            for name, need in levels]


def _call(c, name, a3, b3, bias, act=None):
    """The C function `name` on A (Bt or 1, M, K), B (Bt or 1, K, N) (batch 1 broadcast) into a
    NaN-filled C; with act "apart" a second NaN-filled output, "in place" act = C. -> (C, act)."""
    bt, m, k, n = max(a3.shape[0], b3.shape[0]), a3.shape[1], a3.shape[2], b3.shape[2]
    out = np.full((bt, m, n), np.nan, np.float32)
    sa = _cmem.strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = _cmem.strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    args = [bt, m, n, k, _cmem.ptr(a3), sa, _cmem.ptr(b3), sb,
            _cmem.ffi.NULL if bias is None else _cmem.ptr(np.ascontiguousarray(bias)),
            _cmem.ptr(out), _cmem.strides(out, (0, 1))]
    if act is None:
        if name.startswith("sgemm_bias") and bias is None:          # sgemm_bias takes no NULL bias
            name = name.replace("sgemm_bias", "sgemm")
            del args[8]
        getattr(c.lib, name)(*args)
        return out, None
    y = out if act == "in place" else np.full_like(out, np.nan)
    getattr(c.lib, name)(*args, _cmem.ptr(y), _cmem.strides(y, (0, 1)))
    return (None if act == "in place" else out), y


def _ck():
    from minit2t.backends import c_kernels
    return c_kernels


def _check(c, fused, plain, a, b, bias):
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    want_c, _ = _call(c, plain, a3, b3, bias)
    want_act = _ck().gelu_forward(want_c)                     # at the ISA level in force, as the epilogue's
    if fused.endswith("_ref"):                                  # ... but the reference's own loops
        want_act = np.empty_like(want_c)
        c.lib.gelu_forward_ref(_cmem.ptr(want_c), _cmem.ptr(want_act), want_c.size)
    for act in ("apart", "in place"):
        got_c, got_act = _call(c, fused, a3, b3, bias, act)
        if got_c is not None:
            assert np.array_equal(got_c, want_c, equal_nan=True), f"{fused} C ({act})"
        assert np.array_equal(got_act, want_act, equal_nan=True), f"{fused} act ({act})"


# Shapes around the blockings: tiny (the reference's), edges of every micro-tile, one and several K
# blocks (K > KC: the epilogue reads C after the last), a batch.
SHAPES = [(1, 3, 4, 5), (1, 65, 128, 256), (1, 131, 37, 70), (2, 50, 300, 33), (1, 300, 1100, 40),
          (1, 1000, 128, 1500)]


@pytest.mark.parametrize("bt, m, k, n", SHAPES)
@pytest.mark.parametrize("gemm, level", _params("sgemm_bias", FP32_LEVELS) + _params("sgemm_bf16", LEVELS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_each_version_is_the_gemm_then_gelu(c, gemm, level, bt, m, k, n, with_bias):
    a, b = make_array(1, (bt, m, k), np.float32), make_array(2, (bt, k, n), np.float32) * 0.3
    bias = make_array(3, (n,), np.float32) if with_bias else None
    _check(c, f"{gemm}_gelu_{level}", f"{gemm}_{level}", a, b, bias)


@given(case=gemm_cases(), with_bias=st.booleans())
def test_dispatchers_on_drawn_cases(c, case, with_bias):
    """The dispatchers (tiny products to the reference GEMM, with this ISA's GELU) on any layout
    and batch kind."""
    a, b = case
    bias = make_array(7, (b.shape[-1],), np.float32) if with_bias else None
    _check(c, "sgemm_bias_gelu", "sgemm_bias", a, b, bias)
    _check(c, "sgemm_bf16_gelu", "sgemm_bf16", a, b, bias)


def test_nan_and_inf_pass_through_the_epilogue(c):
    a = make_array(8, (1, 40, 64), np.float32)
    a[0, 3, 5], a[0, 7, :] = np.nan, np.inf
    b = make_array(9, (1, 64, 48), np.float32)
    with np.errstate(invalid="ignore"):
        _check(c, "sgemm_bias_gelu", "sgemm_bias", a, b, make_array(10, (48,), np.float32))
        _check(c, "sgemm_bf16_gelu", "sgemm_bf16", a, b, None)


@pytest.mark.parametrize("gemm, level", _params("gelu_backward_sum", FP32_LEVELS))
@pytest.mark.parametrize("r, d", [(1, 1), (33, 17), (100, 256), (8320, 40)])
def test_gelu_backward_sum_is_gelu_backward_then_sum_rows(c, gemm, level, r, d):
    """The backward of LinearGELU's GELU with the bias gradient summed as it goes: at each level
    gelu_backward's gx and sum_rows' sums of it, bit for bit (the reference's: to float32)."""
    g, h = make_array(20, (r, d), np.float32), make_array(21, (r, d), np.float32) * 3
    gx, sums = np.full((r, d), np.nan, np.float32), np.full(d, np.nan, np.float32)
    ptr = _cmem.ptr
    assert getattr(c.lib, f"gelu_backward_sum_{level}")(ptr(g), ptr(h), ptr(gx), ptr(sums), r, d) == 0
    want_gx = np.empty_like(gx)
    getattr(c.lib, f"gelu_backward_{level}")(ptr(g), ptr(h), ptr(want_gx), r * d)
    want = np.empty(d, np.float32)
    getattr(c.lib, f"sum_rows_{level}")(ptr(want_gx), d, ptr(want), r, d)
    assert np.array_equal(gx, want_gx)
    if level == "ref":
        np.testing.assert_allclose(sums, want_gx.astype(np.float64).sum(0), rtol=1e-6, atol=1e-6)
    else:
        assert np.array_equal(sums, want)


# ---- the MLP: fused and step-by-step paths --------------------------------------

def _mlp_run(mlp, x, g, bf16, fuse):
    """mlp(x) (fused or not), its gradients for upstream g: (y, gx, [param grads])."""
    original = Mlp.fused_layers
    try:
        if not fuse:
            Mlp.fused_layers = {**original, "fc1": type("NotLinear", (), {})}   # policy says no
        return layer_run(mlp, x, g, bf16)
    finally:
        Mlp.fused_layers = original


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("shape", [(2, 65, 128), (3, 7, 20)])
def test_mlp_fused_is_the_steps_bit_for_bit(c, shape, bf16):
    mt.manual_seed(0)
    mlp = Mlp(shape[-1], 2 * shape[-1])
    x = make_array(11, shape, np.float32)
    g = make_array(12, shape, np.float32)
    with on_backend("c"):
        assert may_fuse_linear_gelu(mlp)
        fused = _mlp_run(mlp, x, g, bf16, True)
        steps = _mlp_run(mlp, x, g, bf16, False)
        with mt.no_grad(), mt.autocast("bfloat16", enabled=bf16):
            inference = mlp(mt.tensor(x)).data                      # GELU in place over h
    assert np.array_equal(fused[0], steps[0]) and np.array_equal(inference, steps[0])
    assert np.array_equal(fused[1], steps[1])
    assert all(np.array_equal(p, q) for p, q in zip(fused[2], steps[2]))


def test_mlp_with_dropout_draws_the_same_masks(c):
    mt.manual_seed(0)
    mlp = Mlp(16, 32, drop=0.3)
    x, g = make_array(13, (2, 5, 16), np.float32), make_array(14, (2, 5, 16), np.float32)
    with on_backend("c"):
        mt.manual_seed(5)
        fused = _mlp_run(mlp, x, g, False, True)
        mt.manual_seed(5)
        steps = _mlp_run(mlp, x, g, False, False)
    assert np.array_equal(fused[0], steps[0]) and np.array_equal(fused[1], steps[1])


class _ScaledGELU(GELU):
    def forward(self, x):
        return super().forward(x * 2.0)


class _LoggingLinear(Linear):
    pass


def test_watched_or_replaced_layers_take_the_step_by_step_path(c):
    mlp = Mlp(8, 16)
    with on_backend("c"):
        assert may_fuse_linear_gelu(mlp)
        for module in (mlp.fc1, mlp.act):
            for register in (module.register_forward_hook, module.register_forward_pre_hook):
                seen = []
                handle = register(lambda *args: seen.append(1))
                assert not may_fuse_linear_gelu(mlp)
                mlp(mt.tensor(make_array(15, (2, 3, 8), np.float32)))
                assert seen, "the hook did not run: the fused op stood in for a watched layer"
                handle.remove()
                assert may_fuse_linear_gelu(mlp)
        mlp.act = _ScaledGELU()
        assert not may_fuse_linear_gelu(mlp)
        mlp.act = GELU()
        mlp.fc1 = _LoggingLinear(8, 16)
        assert not may_fuse_linear_gelu(mlp)


def test_a_backend_without_its_own_op_takes_the_steps():
    """The numpy backend has no LinearGELU of its own: the reference op would only stand in for
    the same two ops, so the policy keeps the steps; the op itself still gives their values."""
    mlp = Mlp(8, 16)
    x = mt.tensor(make_array(16, (2, 3, 8), np.float32))
    with on_backend("numpy"):
        assert not may_fuse_linear_gelu(mlp)
        fused = F.linear_gelu(x, mlp.fc1.weight, mlp.fc1.bias).data
        steps = F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)).data
    assert np.array_equal(fused, steps)
    assert ops.LinearGELU in get_backend("c").OPS if _cmem.lib is not None else True


def test_bad_input_is_refused_in_one_line():
    x = mt.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"linear_gelu expects weight as a \(Dout, Din\) Tensor, got \(3,\)"):
        F.linear_gelu(x, mt.tensor(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match=r"linear_gelu expects input of shape \(\.\.\., 4\), got \(2, 3\)"):
        F.linear_gelu(x, mt.tensor(np.ones((5, 4), np.float32)))
