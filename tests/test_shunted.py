"""Shunted self-attention (minit2t.nn.shunted) in the backbone blocks: held to an independent PyTorch
transcription (torch_t2t.ShuntedAttention) forward and backward, alone and in whole models; its arguments
checked in one line; named as torch names it; saved, read back and counted; refused where a model needs
the standard attention (token reduction, attention maps).

Legend: B batch, N = 1 + S*S tokens (cls first), S the grid's side, D embed dim, h heads, r sr_ratio.
"""
import json

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub
from minit2t.analysis import attention_maps, capture
from minit2t.checkpoint import check_saved_model_config
from minit2t.options import Invalid
from minit2t.io import SHIPPED, LoadError
from minit2t.models.zoo import CIFAR_VARIANTS
from minit2t.nn import Attention, Block, DepthwiseConv2d, ShuntedAttention
from minit2t.reduction import reduce_tokens

NAME = "t2t_vit_cifar_shunted"
SMALL = dict(embed_dim=16, depth=2, num_heads=4, token_dim=8)       # a narrow t2t_vit_cifar_shunted
PARTS = ["q.weight", "sr1.weight", "sr1.bias", "norm1.weight", "norm1.bias", "kv1.weight", "local_conv1.weight",
         "local_conv1.bias", "sr2.weight", "sr2.bias", "norm2.weight", "norm2.bias", "kv2.weight",
         "local_conv2.weight", "local_conv2.bias", "proj.weight", "proj.bias"]


def _tokens(side, D=16, B=2, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((B, 1 + side * side, D)).astype(dtype)   # (B, N, D)


def _images(n=2, seed=0):
    return mt.tensor(np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32))


def _one_line(info, *words):
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


# ---- the layers alone, against torch --------------------------------------------------------------

@pytest.mark.parametrize("side", [4, 8])
@pytest.mark.parametrize("sr_ratio, qkv_bias", [(2, False), (4, True)])
def test_layer_matches_torch_float64(sr_ratio, qkv_bias, side):
    torch = pytest.importorskip("torch")
    import torch_t2t as ref
    from test_parity_layers import check_parity, perturb
    torch.manual_seed(0)
    t = perturb(ref.ShuntedAttention(16, 4, sr_ratio, qkv_bias=qkv_bias), scale=0.3)
    errs = check_parity(t, ShuntedAttention(16, 4, sr_ratio, qkv_bias=qkv_bias), _tokens(side), 1e-10)
    biases = ["q.bias", "kv1.bias", "kv2.bias"] if qkv_bias else []
    assert sorted(errs) == sorted(["output", "input grad"] + PARTS + biases)   # every parameter compared


def test_layer_matches_torch_float32_and_with_a_scale():
    torch = pytest.importorskip("torch")
    import torch_t2t as ref
    from test_parity_layers import check_parity, perturb
    torch.manual_seed(1)
    t = perturb(ref.ShuntedAttention(24, 6, 2, qk_scale=0.3), scale=0.3)
    check_parity(t, ShuntedAttention(24, 6, 2, qk_scale=0.3), _tokens(4, 24, dtype=np.float32), 1e-5)


def test_depthwise_conv_matches_torch():
    torch = pytest.importorskip("torch")
    from test_parity_layers import check_parity, perturb
    torch.manual_seed(0)
    t = perturb(torch.nn.Conv2d(6, 6, 3, padding=1, groups=6))
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 5))      # (B, C, H, W)
    check_parity(t, DepthwiseConv2d(6, 3, padding=1), x, 1e-10)
    assert DepthwiseConv2d(6).weight.shape == (6, 1, 3, 3) and DepthwiseConv2d(6).bias.shape == (6,)


def test_cls_token_is_an_unaggregated_key_and_an_unenhanced_value():
    """Each group's first key and value are kv(GELU(norm(cls))), whatever the convolutions hold."""
    attn = ShuntedAttention(8, 2, 4).double()
    x = _tokens(4, 8)                                                # (B, 17, 8)
    cls = mt.tensor(x[:, :1])                                        # (B, 1, D)
    image = mt.tensor(np.ascontiguousarray(x[:, 1:].transpose(0, 2, 1)).reshape(2, 8, 4, 4))   # (B, D, S, S)
    for sr, norm, kv, local_conv, _ in attn.groups():
        local_conv.weight.data = local_conv.weight.data + 5.0
        k, v = attn.keys_values(cls, image, sr, norm, kv, local_conv)   # (B, h/2, 1+M, d) each
        assert k.shape == (2, 1, 1 + (4 // sr.weight.shape[-1]) ** 2, 4)
        want = kv(attn.act(norm(cls))).data.reshape(2, 2, 4)         # (B, k|v, d), one head per group
        np.testing.assert_allclose(k.data[:, 0, 0], want[:, 0], rtol=1e-13)
        np.testing.assert_allclose(v.data[:, 0, 0], want[:, 1], rtol=1e-13)
    with capture([attn.softmax1, attn.softmax2]) as (p1, p2):
        assert attn(mt.tensor(x)).shape == x.shape
    assert p1[0].shape == (2, 1, 17, 1 + 1) and p2[0].shape == (2, 1, 17, 1 + 4)   # (B, h/2, N, 1+M)
    np.testing.assert_allclose(p2[0].data.sum(-1), 1.0, rtol=1e-12)


# ---- whole models, against torch ------------------------------------------------------------------

def _model_pair(name, seed=0, **kw):
    torch = pytest.importorskip("torch")
    import torch_t2t as ref
    from test_parity_layers import perturb
    torch.manual_seed(seed)
    t = perturb(ref.T2T_ViT(**{**CIFAR_VARIANTS[name], **kw}), seed, scale=0.05)
    return t, mt.create_model(name, **kw)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)], ids=["f64", "f32"])
def test_t2t_vit_cifar_shunted_matches_torch(dtype, rtol):
    from test_parity_layers import check_parity
    t, m = _model_pair(NAME, **SMALL)
    check_parity(t, m, np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(dtype), rtol)


@pytest.mark.parametrize("sr_ratio", [4, 8])
def test_coarser_ratios_match_torch(sr_ratio):
    from test_parity_layers import check_parity
    t, m = _model_pair(NAME, sr_ratio=sr_ratio, qkv_bias=True, **SMALL)
    check_parity(t, m, np.random.default_rng(1).standard_normal((2, 3, 32, 32)), 1e-10)


def test_vit_cifar_shunted_matches_torch():
    from test_parity_layers import check_parity
    t, m = _model_pair("vit_cifar", attention="shunted", sr_ratio=4, **SMALL)
    assert isinstance(m.blocks[1].attn, ShuntedAttention) and m.config["attention"] == "shunted"
    check_parity(t, m, np.random.default_rng(2).standard_normal((2, 3, 32, 32)), 1e-10)


# ---- the variant, its names and its size ----------------------------------------------------------

def test_variant_size_and_names():
    model = mt.create_model(NAME)
    assert mt.count_params(model) == 1_000_844
    assert abs(mt.count_params(model) / mt.count_params(mt.create_model("t2t_vit_cifar")) - 1) < 0.05
    assert (model.config["attention"], model.config["sr_ratio"], model.embed_dim) == ("shunted", 2, 100)
    names = [k for k in model.state_dict() if k.startswith("blocks.6.attn.")]
    assert names == [f"blocks.6.attn.{p}" for p in PARTS]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes["blocks.0.attn.sr1.weight"] == (100, 100, 2, 2)
    assert shapes["blocks.0.attn.sr2.weight"] == (100, 100, 1, 1)                  # r = 2: group 2 a 1x1 conv
    assert shapes["blocks.0.attn.local_conv1.weight"] == (50, 1, 3, 3)
    assert not any(k.startswith("tokens_to_token.") and ".sr" in k for k in shapes)   # the T2T module unchanged
    assert model(_images()).shape == (2, 10)


def test_standard_is_the_default_and_unchanged():
    plain, standard = mt.create_model("t2t_vit_cifar"), mt.create_model("t2t_vit_cifar", attention="standard")
    assert list(plain.state_dict()) == list(standard.state_dict())
    assert "blocks.0.attn.qkv.weight" in plain.state_dict() and type(plain.blocks[0].attn) is Attention
    assert (plain.config["attention"], plain.config["sr_ratio"]) == ("standard", 2)
    assert type(Block(8, 2).attn) is Attention


def test_count_macs_by_hand():
    """vit_cifar (4x4 patches: an 8x8 grid, N = 65), D = 16, one block, 2 heads, r = 4: groups at 2x2, 4x4."""
    D, N, S, r = 16, 65, 8, 4
    model = mt.create_model("vit_cifar", attention="shunted", sr_ratio=r, embed_dim=D, depth=1, num_heads=2)
    attention = 2 * N * D * D                                        # q, proj
    for rg in (r, r // 2):
        M = (S // rg) ** 2
        attention += M * D * (D * rg * rg)                           # srg: one D*rg*rg dot per output
        attention += (1 + M) * D * D                                 # kvg
        attention += M * (D // 2) * 9                                # local_convg, depthwise 3x3
        attention += 2 * N * (1 + M) * (D // 2)                      # q_g k_g^T and attn v_g, h/2 heads of d
    want = (S * S) * (3 * 4 * 4) * D + attention + N * D * (2 * D) * 2 + D * 10   # patches, block, head
    assert mt.count_macs(model, (3, 32, 32)) == want


# ---- bad arguments, one line each -----------------------------------------------------------------

@pytest.mark.parametrize("kw, words", [
    (dict(num_heads=3), ["even num_heads", "got 3"]),
    (dict(sr_ratio=3), ["sr_ratio an even int >= 2", "got 3"]),
    (dict(sr_ratio=0), ["sr_ratio an even int >= 2", "got 0"]),
    (dict(sr_ratio=True), ["sr_ratio an even int >= 2", "got True"]),
    (dict(sr_ratio=2.0), ["sr_ratio an even int >= 2", "got 2.0"]),
])
def test_bad_layer_arguments(kw, words):
    with pytest.raises(ValueError) as info:
        ShuntedAttention(**{"dim": 12, "num_heads": 2, **kw})
    _one_line(info, *words)


@pytest.mark.parametrize("n_tokens, sr_ratio, words", [
    (11, 2, ["1 + H*H tokens", "got 11"]),
    (1, 2, ["1 + H*H tokens", "got 1"]),
    (16, 2, ["1 + H*H tokens", "got 16"]),
    (1 + 36, 4, ["divisible by sr_ratio 4", "6x6"]),
])
def test_bad_tokens(n_tokens, sr_ratio, words):
    attn = ShuntedAttention(8, 2, sr_ratio)
    with pytest.raises(ValueError) as info:
        attn(mt.tensor(np.zeros((1, n_tokens, 8), np.float32)))
    _one_line(info, *words)


@pytest.mark.parametrize("kw, words", [
    (dict(sr_ratio=16), ["divisible by sr_ratio 16", "8x8"]),
    (dict(sr_ratio=6), ["divisible by sr_ratio 6", "8x8"]),
    (dict(num_heads=5, embed_dim=20), ["even num_heads", "got 5"]),
    (dict(attention="shifted"), ["attention must be one of ['standard', 'shunted']", "'shifted'"]),
    (dict(attention="standard", sr_ratio=3), ["sr_ratio must be an even whole number", "got 3"]),   # saved either way
])
def test_bad_model_arguments(kw, words):
    with pytest.raises(ValueError) as info:
        mt.create_model("t2t_vit_cifar", **{**SMALL, "attention": "shunted", **kw})
    _one_line(info, *words)


# ---- saved and read back --------------------------------------------------------------------------

def test_export_and_load_round_trip(tmp_path):
    model = mt.create_model(NAME, sr_ratio=4, **SMALL).eval()
    path = str(tmp_path / "shunted.npz")
    hub.export_pretrained(model, path)
    again, kind = hub.load_model(path)
    assert kind == SHIPPED and again.config == model.config and again.config["sr_ratio"] == 4
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v, err_msg=k)
    with mt.no_grad():
        np.testing.assert_array_equal(again.eval()(_images()).data, model(_images()).data)


def test_a_config_without_attention_is_standard():
    config = {k: v for k, v in mt.create_model("t2t_vit_cifar", **SMALL).config.items()
              if k not in ("attention", "sr_ratio")}
    checked = check_saved_model_config(config)
    assert (checked["attention"], checked["sr_ratio"]) == ("standard", 2)
    assert type(hub.model_from_config(config).blocks[0].attn) is Attention
    model = mt.pretrained("t2t_vit_cifar_8ep")                       # a file saved before the option
    assert model.config["attention"] == "standard" and type(model.blocks[0].attn) is Attention


@pytest.mark.parametrize("over, words", [
    (dict(attention="shifted"), "model config attention must be one of ['standard', 'shunted'], got 'shifted'"),
    (dict(sr_ratio=3), "model config sr_ratio must be an even whole number from 2 to 4096, got 3"),
    (dict(sr_ratio="2"), "model config sr_ratio must be an even whole number"),
    (dict(sr_ratio=16), "model config sr_ratio 16 does not divide the token grid's side 8"),
    (dict(num_heads=2, embed_dim=16), None),
    (dict(num_heads=1, embed_dim=16), "attention 'shunted' needs an even num_heads, got 1"),
    (dict(reduce="tome:r=2"), "model config reduce needs attention 'standard', got 'shunted'"),
])
def test_a_bad_saved_config_is_refused_in_one_line(over, words):
    config = {**mt.create_model(NAME, **SMALL).config, **over}
    if words is None:
        check_saved_model_config(config)
        return
    with pytest.raises(Invalid) as info:
        check_saved_model_config(config)
    _one_line(info, words)


def test_config_and_weights_must_agree_on_attention(tmp_path):
    path = str(tmp_path / "shunted.npz")
    hub.export_pretrained(mt.create_model(NAME, **SMALL), path)
    arrays = mt.load(path)
    arrays["config"] = np.array(json.dumps({**json.loads(str(arrays["config"])), "attention": "standard"}))
    mt.save(arrays, path)
    with pytest.raises(LoadError, match=r"gives blocks.1.attn.qkv.weight the shape \(48, 16\), the weights do not"):
        hub.load_model(path)


# ---- what needs the standard attention ------------------------------------------------------------

def test_reduce_tokens_refuses_a_shunted_model():
    model = mt.create_model(NAME, **SMALL)
    for spec in ("tome:r=2", "evit:keep=0.7", "mctf:r=2"):
        with pytest.raises(ValueError) as info:
            reduce_tokens(model, spec)
        _one_line(info, "reduce_tokens needs the standard attention", "ShuntedAttention in block 0",
                  "attention='shunted'")
    assert "reduce" not in model.config and reduce_tokens(model, "none") is model


def test_attention_maps_says_why_not_and_the_groups_can_be_hooked():
    model = mt.create_model(NAME, **SMALL)
    with pytest.raises(ValueError) as info:
        attention_maps(model, _images())
    _one_line(info, "ShuntedAttention in block 0", "attn.softmax1, attn.softmax2")
    blk = model.blocks[0].attn
    with capture([blk.softmax1, blk.softmax2]) as (p1, p2), mt.no_grad():
        model(_images())
    assert p1[0].shape == (2, 2, 65, 1 + 16) and p2[0].shape == (2, 2, 65, 1 + 64)   # (B, h/2, N, 1+M)


def test_t2t_attention_swap_still_works():
    from minit2t.approx import swap_t2t_attention
    model = mt.create_model(NAME, **SMALL).eval()
    with mt.no_grad():
        before = model(_images()).data
        swap_t2t_attention(model, "local:window=[9,9]")
        swapped = model(_images()).data
        swap_t2t_attention(model, "exact")
        np.testing.assert_array_equal(model(_images()).data, before)
    assert swapped.shape == before.shape and not np.array_equal(swapped, before)
