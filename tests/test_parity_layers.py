"""Layer-by-layer parity with an independent PyTorch implementation.

Each torch layer gets random weights (LayerNorm affine and biases moved
away from their init so they matter), its state_dict is loaded into the
minit2t layer, and `check_parity` compares, in eval mode, the forward
output, the input gradient and every parameter gradient under a random
upstream gradient. float64 must agree to ~1e-10; float32 to a tolerance
chosen per layer at the call site.

Shape legend: B batch, N tokens, D embed dim, E token dim, C channels,
H/W image height/width.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minit2t as mt                                   # noqa: E402
from minit2t.models import T2TModule, TokenPerformer, TokenTransformer  # noqa: E402
from minit2t.nn import Attention, Block, Mlp           # noqa: E402

import torch_t2t as ref                                # noqa: E402

F64_RTOL = 1e-10
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def rel_err(a, b):
    """Norm-wise relative error of a against the reference b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def perturb(module, seed=0, scale=0.1):
    """Move every LayerNorm affine and every bias away from its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif name.endswith("weight") and p.ndim == 1:                 # LayerNorm scale
                p.mul_(1 + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def load_into(mt_mod, torch_mod):
    """torch weights -> minit2t (strict); the minit2t state_dict must read them back exactly."""
    sd = {k: v.detach().numpy().copy() for k, v in torch_mod.state_dict().items()}
    mt_mod.load_state_dict(sd, strict=True)
    back = mt_mod.state_dict()
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def _torch_side(torch_mod, x, seed):
    xt = torch.tensor(x, requires_grad=True)
    out = torch_mod(xt)
    g = np.random.default_rng(seed + 1).standard_normal(tuple(out.shape)).astype(x.dtype)
    (out * torch.tensor(g)).sum().backward()
    grads = {n: (None if p.grad is None else p.grad.numpy()) for n, p in torch_mod.named_parameters()}
    return out.detach().numpy(), xt.grad.numpy(), grads, g


def _mt_side(mt_mod, x, g):
    xm = mt.tensor(x, requires_grad=True)
    out = mt_mod(xm)
    (out * mt.tensor(g)).sum().backward()
    grads = {n: p.grad for n, p in mt_mod.named_parameters()}
    return out.numpy(), xm.grad, grads


def check_parity(torch_mod, mt_mod, x, rtol, seed=0, train=False):
    """Forward + backward of torch_mod and mt_mod (weights copied over) agree to rtol.

    x is an ndarray whose dtype (float32/float64) both sides run in; the
    upstream gradient is random, so every output element matters.
    Returns the relative errors by name (output, input grad, parameters).
    """
    torch_mod.to(TORCH_DTYPE[x.dtype.type])
    mt_mod.to(x.dtype.type)                             # load_state_dict casts to the model's dtype
    load_into(mt_mod, torch_mod)
    torch_mod.train(train)
    if train:
        mt_mod.train()
    else:
        mt_mod.eval()
    torch_mod.zero_grad()
    mt_mod.zero_grad()
    t_out, t_dx, t_grads, g = _torch_side(torch_mod, x, seed)
    m_out, m_dx, m_grads = _mt_side(mt_mod, x, g)
    assert m_out.shape == t_out.shape and m_out.dtype == x.dtype, (m_out.shape, m_out.dtype)
    assert m_dx is not None and m_dx.shape == x.shape and m_dx.dtype == x.dtype
    errs = {"output": rel_err(m_out, t_out), "input grad": rel_err(m_dx, t_dx)}
    assert sorted(m_grads) == sorted(t_grads)
    for name, tg in t_grads.items():
        mg = m_grads[name]
        if tg is None:                                  # frozen: pos_embed, performer w
            assert mg is None, f"{name} should get no gradient"
            continue
        assert mg is not None and mg.shape == tg.shape and mg.dtype == x.dtype, name
        errs[name] = rel_err(mg, tg)
    bad = {k: e for k, e in errs.items() if not e <= rtol}
    assert not bad, f"relative error above {rtol:g}: {bad}"
    return errs


def randn(shape, dtype, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def tol(dtype, f32):
    return F64_RTOL if dtype == np.float64 else f32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, bias):
    torch.manual_seed(0)
    t = perturb(torch.nn.Linear(7, 5, bias=bias))
    check_parity(t, mt.nn.Linear(7, 5, bias=bias), randn((2, 3, 7), dtype), tol(dtype, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm(dtype):
    torch.manual_seed(0)
    t = perturb(torch.nn.LayerNorm(16))
    x = randn((2, 5, 16), dtype, scale=3.0) + 2.0                        # (B, N, D), off-centre
    check_parity(t, mt.nn.LayerNorm(16), x, tol(dtype, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_exact(dtype):
    x = randn((4, 50), dtype, scale=3.0)                                  # both tails and the bend
    check_parity(torch.nn.GELU(), mt.nn.GELU(), x, tol(dtype, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unfold(dtype):
    x = randn((2, 3, 9, 9), dtype)                                        # (B, C, H, W)
    check_parity(torch.nn.Unfold(3, padding=1, stride=2), mt.nn.Unfold(3, stride=2, padding=1), x,
                 tol(dtype, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp(dtype):
    torch.manual_seed(0)
    t = perturb(ref.Mlp(16, 24, 8))
    check_parity(t, Mlp(16, 24, 8), randn((2, 5, 16), dtype), tol(dtype, 2e-6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("qkv_bias,qk_scale", [(False, None), (True, 0.3)])
def test_attention(dtype, qkv_bias, qk_scale):
    torch.manual_seed(0)
    t = perturb(ref.Attention(32, num_heads=4, qkv_bias=qkv_bias, qk_scale=qk_scale))
    m = Attention(32, num_heads=4, qkv_bias=qkv_bias, qk_scale=qk_scale)
    check_parity(t, m, randn((2, 9, 32), dtype), tol(dtype, 3e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_block(dtype):
    torch.manual_seed(0)
    t = perturb(ref.Block(32, num_heads=4, mlp_ratio=2.0, qkv_bias=True))
    m = Block(32, num_heads=4, mlp_ratio=2.0, qkv_bias=True)
    check_parity(t, m, randn((2, 9, 32), dtype), tol(dtype, 5e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_transformer(dtype):
    torch.manual_seed(0)
    t = perturb(ref.Token_transformer(dim=27, in_dim=16, num_heads=1, mlp_ratio=1.0))
    m = TokenTransformer(dim=27, in_dim=16, num_heads=1, mlp_ratio=1.0)
    check_parity(t, m, randn((2, 16, 27), dtype), tol(dtype, 5e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_performer(dtype):
    torch.manual_seed(0)
    t = perturb(ref.Token_performer(dim=27, in_dim=16, kernel_ratio=0.5))
    m = TokenPerformer(dim=27, in_dim=16, kernel_ratio=0.5)
    assert m.state_dict()["w"].shape == (8, 16)                           # (m, E)
    check_parity(t, m, randn((2, 16, 27), dtype), tol(dtype, 5e-6))


SPLITS = [pytest.param(((7, 4, 2), (3, 2, 1), (3, 2, 1)), 32, id="release-32px"),
          pytest.param(((3, 2, 1), (3, 2, 1), (3, 2, 1)), 16, id="s2-16px")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens_type", ["performer", "transformer", "convolution"])
@pytest.mark.parametrize("soft_split,img", SPLITS)
def test_t2t_module(dtype, tokens_type, soft_split, img):
    torch.manual_seed(0)
    kw = dict(img_size=img, tokens_type=tokens_type, in_chans=3, embed_dim=32, token_dim=8,
              soft_split=soft_split)
    t = perturb(ref.T2T_module(**kw))
    m = T2TModule(**kw)
    assert m.num_patches == t.num_patches == 4
    check_parity(t, m, randn((2, 3, img, img), dtype), tol(dtype, 1e-5))
