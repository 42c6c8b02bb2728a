"""Whole-model parity: minit2t vs an independent PyTorch T2T-ViT with identical weights.

The torch model is randomly initialised as released (biases and
LayerNorm affine then moved off their init), its state_dict is loaded
strictly into minit2t, and logits, input gradient and every parameter
gradient must agree to a norm-wise relative error of 1e-4 in float32.

Shape legend: B batch, N tokens, D embed dim, H/W image height/width.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minit2t as mt                                         # noqa: E402
from minit2t.models import T2T_ViT                            # noqa: E402

import torch_t2t as ref                                      # noqa: E402
from test_parity_layers import check_parity, perturb, randn, rel_err  # noqa: E402

RTOL = 1e-4
CIFAR_A = ((3, 1, 1), (3, 2, 1), (3, 2, 1))                  # 32 -> 32 -> 16 -> 8: N = 64
CIFAR_B = ((3, 2, 1), (3, 2, 1), (3, 2, 1))                  # 32 -> 16 -> 8 -> 4: N = 16
SMALL = ["t2t_vit_7", "t2t_vit_10", "t2t_vit_12"]


def make_pair(name, seed=0, **kw):
    """The same variant in torch (random init, perturbed) and minit2t."""
    torch.manual_seed(seed)
    return perturb(ref.create_model(name, **kw), seed, scale=0.02), mt.create_model(name, **kw)


def make_vit7_pair(tokens_type, seed=0, **kw):
    """t2t_vit_7's backbone (D 256, depth 7, 4 heads, mlp 2) on either T2T layer, built from the classes."""
    kw = dict(tokens_type=tokens_type, embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, **kw)
    torch.manual_seed(seed)
    return perturb(ref.T2T_ViT(**kw), seed, scale=0.02), T2T_ViT(**kw)


def test_t2t_vit_7_224():
    t, m = make_pair("t2t_vit_7")
    x = randn((2, 3, 224, 224), np.float32)                  # (B, 3, H, W)
    check_parity(t, m, x, RTOL)


@pytest.mark.parametrize("soft_split,n", [(CIFAR_A, 64), (CIFAR_B, 16)], ids=["s1", "s2"])
@pytest.mark.parametrize("tokens_type", ["performer", "transformer"])
def test_cifar_configs(tokens_type, soft_split, n):
    kw = dict(img_size=32, num_classes=10, token_dim=32, soft_split=soft_split)
    t, m = make_vit7_pair(tokens_type, **kw)
    assert m.state_dict()["pos_embed"].shape == (1, n + 1, 256)           # (1, N+1, D)
    x = randn((2, 3, 32, 32), np.float32)
    check_parity(t, m, x, RTOL)


@pytest.mark.parametrize("tokens_type", ["performer", "transformer"])
def test_cifar_float64(tokens_type):
    """The same arithmetic in float64: agreement to rounding, not just to 1e-4."""
    t, m = make_vit7_pair(tokens_type, img_size=32, num_classes=10, token_dim=16, soft_split=CIFAR_B)
    check_parity(t, m, randn((2, 3, 32, 32), np.float64), 1e-10)


def test_layer_scale_float64():
    """LayerScale on both branches of every block (its gammas perturbed off their init like every weight)."""
    t, m = make_vit7_pair("transformer", img_size=32, num_classes=10, token_dim=16, soft_split=CIFAR_B,
                          layer_scale_init=0.1, drop_path_uniform=True)
    assert "blocks.6.ls2.gamma" in m.state_dict()
    check_parity(t, m, randn((2, 3, 32, 32), np.float64), 1e-10)


def test_transformer_tokens_train_mode():
    """No dropout anywhere (rates 0, transformer tokens): train mode must match too."""
    t, m = make_vit7_pair("transformer", img_size=32, num_classes=10, token_dim=16, soft_split=CIFAR_B)
    check_parity(t, m, randn((2, 3, 32, 32), np.float32), RTOL, train=True)


def test_convolution_tokens_and_eval_ignores_dropout():
    """tokens_type 'convolution', qkv_bias and qk_scale, every dropout rate > 0 (off in eval)."""
    kw = dict(img_size=32, tokens_type="convolution", num_classes=10, embed_dim=64, depth=2, num_heads=4,
              mlp_ratio=2.0, qkv_bias=True, qk_scale=0.2, drop_rate=0.1, attn_drop_rate=0.1,
              drop_path_rate=0.1, token_dim=16, soft_split=CIFAR_B)
    torch.manual_seed(0)
    t = perturb(ref.T2T_ViT(**kw), scale=0.02)
    check_parity(t, T2T_ViT(**kw), randn((2, 3, 32, 32), np.float32), RTOL)


def test_release_key_shapes_t2t_vit_7():
    sd = mt.create_model("t2t_vit_7").state_dict()
    assert sd["tokens_to_token.attention1.kqv.weight"].shape == (192, 147)
    assert sd["tokens_to_token.attention1.w"].shape == (32, 64)
    assert sd["tokens_to_token.attention2.kqv.weight"].shape == (192, 576)
    assert sd["tokens_to_token.project.weight"].shape == (256, 576)
    assert sd["pos_embed"].shape == (1, 197, 256)
    assert sd["head.weight"].shape == (1000, 256)
    expected = ref.get_sinusoid_encoding(197, 256).numpy()
    assert rel_err(sd["pos_embed"], expected) < 1e-6


@pytest.mark.parametrize("name", list(ref.VARIANTS))
def test_variant_state_dict_matches_release(name):
    """Keys and shapes of every variant at 224, without running either model."""
    with torch.device("meta"):                                # shapes, no storage or init cost
        t_shapes = {k: tuple(v.shape) for k, v in ref.create_model(name).state_dict().items()}
    m_shapes = {k: v.shape for k, v in mt.create_model(name).state_dict().items()}
    assert sorted(m_shapes) == sorted(t_shapes)
    assert m_shapes == t_shapes


@pytest.mark.parametrize("name", list(ref.VARIANTS))
def test_variant_parity_64px(name):
    t, m = make_pair(name, img_size=64, num_classes=10)
    x = randn((1 if name not in SMALL else 2, 3, 64, 64), np.float32)
    check_parity(t, m, x, RTOL)


def _strict_error(model, sd):
    with pytest.raises((ValueError, KeyError, RuntimeError)) as info:
        model.load_state_dict(sd, strict=True)
    return re.sub(r"\s", "", str(info.value))


def test_strict_load_errors_name_key_and_shapes():
    m = mt.create_model("t2t_vit_7", img_size=32, num_classes=10, token_dim=8, soft_split=CIFAR_B)
    good = m.state_dict()
    sd = dict(good)
    del sd["blocks.3.mlp.fc1.bias"]
    assert "blocks.3.mlp.fc1.bias" in _strict_error(m, sd)
    sd = dict(good, **{"blocks.9.attn.qkv.weight": np.zeros((3, 3), np.float32)})
    assert "blocks.9.attn.qkv.weight" in _strict_error(m, sd)
    sd = dict(good, **{"head.weight": np.zeros((11, 256), np.float32)})
    msg = _strict_error(m, sd)
    assert "head.weight" in msg and "11,256" in msg and "10,256" in msg
    m.load_state_dict(good, strict=True)                      # the failed loads left it usable


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(dtype, smoothing):
    logits = randn((6, 10), dtype, scale=3.0)                 # (B, classes)
    labels = np.array([0, 9, 3, 3, 7, 1])
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    want.backward()
    lm = mt.tensor(logits, requires_grad=True)
    got = mt.nn.functional.cross_entropy(lm, labels, label_smoothing=smoothing)
    got.backward()
    f_tol = 1e-12 if dtype == np.float64 else 1e-6
    assert rel_err(got.numpy(), want.detach().numpy()) < f_tol
    assert lm.grad.dtype == dtype and rel_err(lm.grad, lt.grad.numpy()) < f_tol


def test_import_minit2t_does_not_import_torch():
    code = "import sys, minit2t; m = minit2t.create_model('t2t_vit_7', img_size=32); " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
