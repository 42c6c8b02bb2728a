"""The layers' specification, as properties checked on configurations hypothesis draws.

Parity. Every layer, the T2T module and a whole small T2T-ViT compute what the
independent PyTorch transcription (tests/torch_t2t.py) computes with the same
weights: output, input gradient and every parameter gradient agree in float64
to the project's tolerance (helpers.F64), for any width, head count, token
count, soft split (kernel, stride, padding) and batch size, 1 included.

Properties. Five facts about the layers, each stated as one test:
  * attention has no notion of position: permuting the tokens of the input
    permutes the output the same way (Attention, Block and both T2T layers);
  * after the three soft splits the token grid has side
    (side + 2p - k) // s + 1, applied once per split;
  * a T2T layer whose attention projection and last MLP linear are zero
    returns v, its value projection of the normalised input (the value skip);
  * dropout and stochastic depth at rate 0 change nothing in training mode;
  * the images of a batch never meet: image i's output does not change, and
    gets no gradient, when image j changes.

Hypothesis runs under the suite's profile (tests/conftest.py) with no deadline;
each test's example count below is scaled by the profile's max_examples / 25,
so `HYPOTHESIS_PROFILE=thorough` draws twelve times as many.

Shape legend: B batch, N/T tokens, D embed dim, h heads, Din input width of a
T2T layer, E its width (token_dim), C channels, k/s/p kernel/stride/padding.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minit2t as mt                                                    # noqa: E402
from minit2t import random as mt_random                                 # noqa: E402
from minit2t.models import T2T_ViT, T2TModule, TokenPerformer, TokenTransformer  # noqa: E402
from minit2t.models.t2t import split_sizes                              # noqa: E402
from minit2t.nn import Attention, Block, Mlp                            # noqa: E402
from minit2t.nn.layers import Dropout, DropPath                         # noqa: E402

import torch_t2t as ref                                                 # noqa: E402
from helpers import F64, assert_close                                   # noqa: E402
from strategies import (make_array, seeds, shapes, soft_splits,        # noqa: E402
                        t2t_layer_shapes, t2t_vit_configs, token_batches)
from test_parity_layers import _mt_side, _torch_side, load_into, perturb  # noqa: E402

RTOL, ATOL = F64
T2T_LAYERS = {"transformer": TokenTransformer, "performer": TokenPerformer}


def examples(n):
    """No deadline; n examples under the default profile, proportionally more under a larger one."""
    return settings(deadline=None, max_examples=n * max(1, settings.default.max_examples // 25))


def torch_pair(torch_layer, mt_layer, seed, scale=0.1):
    """The same layer in torch (seeded init, biases and LayerNorm affine perturbed) and minit2t."""
    torch.manual_seed(seed)
    return perturb(torch_layer(), seed, scale), mt_layer()


def check_parity(torch_mod, mt_mod, x, seed=0):
    """test_parity_layers' comparison in float64, each array held to helpers.F64 (rtol and atol):
    weights copied torch -> minit2t, eval mode, then output, input gradient and every parameter
    gradient under one random upstream gradient. The atol matters only where a gradient is itself
    rounding noise (one token: the attention weights are all 1 and q, k get ~1e-16)."""
    torch_mod.double()
    mt_mod.to(np.float64)
    load_into(mt_mod, torch_mod)
    torch_mod.eval()
    mt_mod.eval()
    t_out, t_dx, t_grads, g = _torch_side(torch_mod, x, seed)
    m_out, m_dx, m_grads = _mt_side(mt_mod, x, g)
    assert_close(m_out, t_out, RTOL, ATOL, "output")
    assert_close(m_dx, t_dx, RTOL, ATOL, "input gradient")
    assert sorted(m_grads) == sorted(t_grads)
    for name, tg in t_grads.items():
        if tg is None:                                              # frozen: pos_embed, performer w
            assert m_grads[name] is None, f"{name} should get no gradient"
        else:
            assert_close(m_grads[name], tg, RTOL, ATOL, f"gradient of {name}")


def randomized(factory, seed):
    """factory()'s module, built with minit2t's generator seeded (the performer's fixed w; the
    generator's state is restored after), in float64, every trainable parameter redrawn at a
    scale where each one matters."""
    state = mt_random.get_state()
    mt.manual_seed(seed)
    try:
        module = factory().to(np.float64)
    finally:
        mt_random.set_state(state)
    rng = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        if not p.requires_grad:                                     # pos_embed, performer w: fixed
            continue
        if p.ndim >= 2:
            p.data = rng.standard_normal(p.shape) / np.sqrt(np.prod(p.shape[1:]))
        elif name.endswith("weight"):                               # LayerNorm scale
            p.data = 1.0 + 0.3 * rng.standard_normal(p.shape)
        else:
            p.data = 0.3 * rng.standard_normal(p.shape)
    return module


def run(module, x):
    """module(x) as an ndarray, no graph."""
    with mt.no_grad():
        return module(mt.tensor(x)).numpy()


# ---- parity with the PyTorch transcription --------------------------------------

@examples(25)
@given(shapes(1, 3, max_side=4), st.integers(1, 7), st.integers(1, 7), st.booleans(), seeds)
def test_linear_matches_torch(lead, d_in, d_out, bias, seed):
    """Linear maps (..., in) to (..., out) as torch.nn.Linear does, with or without bias."""
    t, m = torch_pair(lambda: torch.nn.Linear(d_in, d_out, bias=bias),
                      lambda: mt.nn.Linear(d_in, d_out, bias=bias), seed)
    check_parity(t, m, make_array(seed, lead + (d_in,)))


@examples(25)
@given(shapes(1, 3, max_side=4), st.integers(2, 9), seeds)
def test_layernorm_matches_torch(lead, dim, seed):
    """LayerNorm normalises the last axis and applies its affine as torch.nn.LayerNorm does."""
    t, m = torch_pair(lambda: torch.nn.LayerNorm(dim), lambda: mt.nn.LayerNorm(dim), seed)
    x = 3.0 * make_array(seed, lead + (dim,)) + 2.0                    # off-centre, wide
    check_parity(t, m, x)


@examples(25)
@given(token_batches(), st.integers(1, 9), st.integers(1, 6), seeds)
def test_mlp_matches_torch(bnd, hidden, d_out, seed):
    """Mlp is fc1, exact GELU, fc2, for any input, hidden and output width."""
    B, N, D, _ = bnd
    t, m = torch_pair(lambda: ref.Mlp(D, hidden, d_out), lambda: Mlp(D, hidden, d_out), seed)
    check_parity(t, m, make_array(seed, (B, N, D)))


@examples(25)
@given(token_batches(), st.booleans(), st.sampled_from([None, 0.3]), seeds)
def test_attention_matches_torch(bnd, qkv_bias, qk_scale, seed):
    """Attention with h heads dividing D is softmax(q k^T * scale) v per head, then a projection."""
    B, N, D, h = bnd
    kw = dict(num_heads=h, qkv_bias=qkv_bias, qk_scale=qk_scale)
    t, m = torch_pair(lambda: ref.Attention(D, **kw), lambda: Attention(D, **kw), seed)
    check_parity(t, m, make_array(seed, (B, N, D)))


@examples(25)
@given(token_batches(), st.sampled_from([1.0, 2.0, 3.0]), st.booleans(), seeds)
def test_block_matches_torch(bnd, mlp_ratio, qkv_bias, seed):
    """A Block is x + attn(norm1(x)), then x + mlp(norm2(x)), as in the release."""
    B, N, D, h = bnd
    kw = dict(num_heads=h, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
    t, m = torch_pair(lambda: ref.Block(D, **kw), lambda: Block(D, **kw), seed)
    check_parity(t, m, make_array(seed, (B, N, D)))


@examples(25)
@given(t2t_layer_shapes(), st.booleans(), seeds)
def test_token_transformer_matches_torch(btde, qkv_bias, seed):
    """The T2T transformer maps (B, T, Din) to (B, T, E) with one head and the value skip."""
    B, T, Din, E = btde
    t, m = torch_pair(lambda: ref.Token_transformer(Din, E, num_heads=1, qkv_bias=qkv_bias),
                      lambda: TokenTransformer(Din, E, num_heads=1, qkv_bias=qkv_bias), seed)
    check_parity(t, m, make_array(seed, (B, T, Din)))


@examples(25)
@given(t2t_layer_shapes(), seeds)
def test_token_performer_matches_torch(btde, seed):
    """The T2T performer, given torch's random features w, computes torch's output and gradients."""
    B, T, Din, E = btde
    t, m = torch_pair(lambda: ref.Token_performer(Din, E), lambda: TokenPerformer(Din, E), seed)
    assert not np.array_equal(m.w.numpy(), t.w.detach().numpy())      # drawn independently ...
    check_parity(t, m, make_array(seed, (B, T, Din)))                   # ... and copied over here
    np.testing.assert_array_equal(m.w.numpy(), t.w.detach().numpy())


@examples(20)
@given(soft_splits(), st.sampled_from(["performer", "transformer", "convolution"]), st.integers(2, 3),
       st.integers(2, 5), st.integers(1, 6), st.integers(1, 3), seeds)
def test_t2t_module_matches_torch(img_splits, tokens_type, C, E, D, B, seed):
    """The T2T module (any tokens type, any valid soft splits) turns images into torch's tokens."""
    img, splits = img_splits
    kw = dict(img_size=img, tokens_type=tokens_type, in_chans=C, embed_dim=D, token_dim=E, soft_split=splits)
    t, m = torch_pair(lambda: ref.T2T_module(**kw), lambda: T2TModule(**kw), seed)
    assert m.num_patches == t.num_patches
    check_parity(t, m, make_array(seed, (B, C, img, img)))


@examples(15)
@given(t2t_vit_configs(), seeds)
def test_t2t_vit_matches_torch(cfg, seed):
    """A whole T2T-ViT (depth 1-2, any valid soft splits, batch 1 included) gives torch's logits and gradients."""
    kw, B = cfg
    t, m = torch_pair(lambda: ref.T2T_ViT(**kw), lambda: T2T_ViT(**kw), seed, scale=0.02)
    check_parity(t, m, make_array(seed, (B, kw["in_chans"], kw["img_size"], kw["img_size"])))


# ---- properties -----------------------------------------------------------------

def _token_layers(D, h, Din, E):
    """The layers that mix tokens without positions, each as a factory with the width it reads."""
    return [(lambda: Attention(D, h, qkv_bias=True), D), (lambda: Block(D, h, qkv_bias=True), D),
            (lambda: TokenTransformer(Din, E), Din), (lambda: TokenPerformer(Din, E), Din)]


@examples(25)
@given(token_batches(), st.integers(2, 9), st.integers(2, 5), seeds, st.data())
def test_attention_is_permutation_equivariant(bnd, Din, E, seed, data):
    """Without positions, attention treats tokens as a set: permuting the input's tokens permutes the output's."""
    B, N, D, h = bnd
    perm = np.array(data.draw(st.permutations(range(N)), label="perm"))
    for factory, width in _token_layers(D, h, Din, E):
        layer = randomized(factory, seed).eval()                    # the performer's dropouts off
        x = make_array(seed + 1, (B, N, width))
        out, out_of_permuted = run(layer, x), run(layer, x[:, perm])
        assert_close(out_of_permuted, out[:, perm], RTOL, ATOL, type(layer).__name__)


def soft_split_sides(img, splits):
    """The side of the token grid after each soft split, by the convolution output-size formula."""
    sides, side = [], img
    for k, s, p in splits:
        side = (side + 2 * p - k) // s + 1
        sides.append(side)
    return sides


@examples(25)
@given(soft_splits(), st.sampled_from(["performer", "transformer", "convolution"]), st.integers(1, 3),
       st.integers(2, 4), st.integers(1, 5), st.integers(1, 2))
def test_t2t_token_count_follows_soft_split_formula(img_splits, tokens_type, C, E, D, B):
    """Each soft split (k, s, p) takes a side-S grid to one of side (S + 2p - k) // s + 1, so N = side_2 ** 2."""
    img, splits = img_splits
    sides = soft_split_sides(img, splits)
    assert split_sizes(img, splits) == sides
    m = T2TModule(img, tokens_type, C, D, E, splits).to(np.float64)
    seen = {}
    watched = ["soft_split0", "soft_split1"] if tokens_type == "convolution" else ["attention1", "attention2"]
    for name in watched:
        getattr(m, name).register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: out.shape}))
    out = run(m, make_array(0, (B, C, img, img)))
    assert m.num_patches == sides[2] ** 2
    assert out.shape == (B, sides[2] ** 2, D)
    if tokens_type == "convolution":                                # (B, E, side, side) feature maps
        assert [seen[n] for n in watched] == [(B, E, sides[0], sides[0]), (B, E, sides[1], sides[1])]
    else:                                                           # (B, side ** 2, E) tokens
        assert [seen[n] for n in watched] == [(B, sides[0] ** 2, E), (B, sides[1] ** 2, E)]


def layer_norm(x, weight, bias, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight + bias


@examples(25)
@given(t2t_layer_shapes(), st.sampled_from(["transformer", "performer"]), seeds)
def test_t2t_layer_with_attention_and_mlp_zeroed_returns_v(btde, kind, seed):
    """With the attention's output projection and the MLP's last linear zeroed, a T2T layer returns v."""
    B, T, Din, E = btde
    layer = randomized(lambda: T2T_LAYERS[kind](Din, E), seed).eval()
    x = make_array(seed + 1, (B, T, Din))
    if kind == "transformer":                                       # qkv rows: q, k, v
        zeroed, values = [layer.attn.proj, layer.mlp.fc2], layer.attn.qkv
    else:                                                           # kqv rows: k, q, v
        zeroed, values = [layer.proj, layer.mlp[2]], layer.kqv
    n1 = layer.norm1
    v = layer_norm(x, n1.weight.numpy(), n1.bias.numpy(), n1.eps) @ values.weight.numpy()[2 * E:].T
    if values.bias is not None:
        v = v + values.bias.numpy()[2 * E:]
    assert relative_gap(run(layer, x), v) > 1e-3                    # attention and MLP do matter ...
    for lin in zeroed:
        lin.weight.data = np.zeros_like(lin.weight.data)
        lin.bias.data = np.zeros_like(lin.bias.data)
    assert_close(run(layer, x), v, RTOL, ATOL, f"{kind} layer vs its v")  # ... until they are zeroed


def relative_gap(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def train_and_eval(module, x, grad=False):
    """module's output (and input gradient, for a random upstream gradient) in train mode, then eval mode."""
    results = []
    for mode in (True, False):
        module.train(mode)
        xt = mt.tensor(x, requires_grad=grad)
        out = module(xt)
        if grad:
            out.backward(make_array(1, out.shape))
        results.append((out.numpy(), xt.grad if grad else None))
    return results


@examples(25)
@given(shapes(1, 4, max_side=4), seeds)
def test_dropout_and_drop_path_at_zero_are_identity_in_train_mode(shape, seed):
    """Dropout(0) and DropPath(0) return their input unchanged in training mode, as in eval mode."""
    x = make_array(seed, shape)
    for layer in (Dropout(0.0), DropPath(0.0)):
        (train_out, _), (eval_out, _) = train_and_eval(layer, x)
        np.testing.assert_array_equal(train_out, eval_out)
        np.testing.assert_array_equal(train_out, x)


@examples(15)
@given(token_batches(), t2t_vit_configs(tokens_types=("transformer", "convolution")), seeds)
def test_block_and_model_with_zero_drop_rates_train_as_they_evaluate(bnd, cfg, seed):
    """A Block and a T2T-ViT built with every drop rate 0 compute the same in train mode as in eval mode."""
    B, N, D, h = bnd
    block = randomized(lambda: Block(D, h, drop=0.0, attn_drop=0.0, drop_path=0.0), seed)
    (out_t, dx_t), (out_e, dx_e) = train_and_eval(block, make_array(seed, (B, N, D)), grad=True)
    np.testing.assert_array_equal(out_t, out_e)
    np.testing.assert_array_equal(dx_t, dx_e)
    kw, B = cfg                                       # the performer's own dropouts (0.1) are not rates: left out
    model = randomized(lambda: T2T_ViT(**kw, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0), seed)
    x = make_array(seed, (B, kw["in_chans"], kw["img_size"], kw["img_size"]))
    (out_t, dx_t), (out_e, dx_e) = train_and_eval(model, x, grad=True)
    np.testing.assert_array_equal(out_t, out_e)
    np.testing.assert_array_equal(dx_t, dx_e)


def check_batch_independence(module, x, seed, data):
    """Change image j: row i of the output stays put, row j moves; row i's gradient never reaches image j."""
    B = x.shape[0]
    i = data.draw(st.integers(0, B - 1), label="i")
    j = data.draw(st.sampled_from([b for b in range(B) if b != i]), label="j")
    x2 = x.copy()
    x2[j] = make_array(seed + 7, x.shape[1:])
    out, out2 = run(module, x), run(module, x2)
    np.testing.assert_allclose(out2[i], out[i], rtol=0, atol=1e-12)
    assert not np.array_equal(out2[j], out[j]), "changing image j should change its own output"
    xt = mt.tensor(x, requires_grad=True)
    y = module(xt)
    g = np.zeros(y.shape)
    g[i] = make_array(seed + 8, y.shape[1:])
    y.backward(g)
    assert np.any(xt.grad[i] != 0)
    np.testing.assert_array_equal(xt.grad[j], 0.0)


@examples(25)
@given(token_batches(min_batch=2), seeds, st.data())
def test_block_output_for_one_image_ignores_the_others(bnd, seed, data):
    """A Block's output for image i neither changes nor sends gradient when image j of the batch changes."""
    B, N, D, h = bnd
    block = randomized(lambda: Block(D, h, qkv_bias=True), seed).eval()
    check_batch_independence(block, make_array(seed, (B, N, D)), seed, data)


@examples(15)
@given(t2t_vit_configs(min_batch=2), seeds, st.data())
def test_model_output_for_one_image_ignores_the_others(cfg, seed, data):
    """A T2T-ViT's logits for image i neither change nor send gradient when image j of the batch changes."""
    kw, B = cfg
    model = randomized(lambda: T2T_ViT(**kw), seed).eval()
    check_batch_independence(model, make_array(seed, (B, kw["in_chans"], kw["img_size"], kw["img_size"])),
                             seed, data)
