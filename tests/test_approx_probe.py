"""minit2t.approx.probe: a T2T layer's attention inputs, one-layer specs, implied matrices, errors.

The inputs are checked against the layer's own computation (norm1, then qkv, split in three),
the implied matrix of exact attention against softmax(tau q k^T), and each spec's function
against the approximation it names."""
import numpy as np
import pytest

import minit2t as mt
from minit2t.approx import (AttentionSpecError, attention_fn, attention_inputs, exact, implied_attention, local,
                            relative_error, swap_t2t_attention)
from test_approx import tiny_model


def images(n=2, side=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, side, side)).astype(np.float32)


def test_attention_inputs_are_the_layers_own_q_k_v():
    model, x = tiny_model().eval(), images()
    t2t = model.tokens_to_token
    q, k, v, tau = attention_inputs(model, x)
    layer = t2t.attention1
    with mt.no_grad():
        tokens = t2t.soft_split0(mt.tensor(x)).transpose(1, 2)                 # (B, T, C*k*k)
        qkv = layer.attn.qkv(layer.norm1(tokens)).numpy()                      # (B, T, 3E)
    E = layer.attn.in_dim
    for got, i in zip((q, k, v), range(3)):
        np.testing.assert_array_equal(got, qkv[..., i * E:(i + 1) * E])
    assert tau == layer.attn.scale and q.shape == (2, 64, E)
    q2, _, _, tau2 = attention_inputs(model, x, "attention2")
    assert q2.shape == (2, 16, E) and tau2 == t2t.attention2.attn.scale


def test_attention_inputs_of_a_swapped_layer_and_of_larger_images():
    model, x = tiny_model().eval(), images()
    before = attention_inputs(model, x)
    swap_t2t_attention(model, "local:window=4")
    after = attention_inputs(model, x)
    for a, b in zip(before[:3], after[:3]):
        np.testing.assert_array_equal(a, b)                          # the same qkv module
    q, _, _, _ = attention_inputs(model, images(1, side=32))         # attention1 at any size
    assert q.shape[1] == 256
    with pytest.raises(ValueError, match="expects images of shape"):
        attention_inputs(model, images(1, side=32), "attention2")
    with pytest.raises(ValueError, match="attention1"):
        attention_inputs(model, x, "attention3")


def test_attention_inputs_refuses_a_model_without_t2t_attention():
    mt.manual_seed(0)
    vit = mt.create_model("vit_cifar", embed_dim=16, depth=1, num_heads=2, img_size=16)
    with pytest.raises(ValueError, match="transformer T2T layers"):
        attention_inputs(vit, images())


def test_implied_attention_of_exact_is_the_softmax_and_specs_give_their_method():
    r = np.random.default_rng(1)
    q, k, v = r.standard_normal((2, 9, 4)), r.standard_normal((2, 9, 4)), r.standard_normal((2, 9, 3))
    A = implied_attention(attention_fn("exact", 4), q, k, 0.5)
    s = 0.5 * q @ k.transpose(0, 2, 1)
    want = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(A, want / want.sum(-1, keepdims=True), rtol=1e-12)
    with mt.no_grad():
        y = attention_fn("local:window=3", 4)(mt.tensor(q), mt.tensor(k), mt.tensor(v), 0.5).numpy()
        ref = local(mt.tensor(q), mt.tensor(k), mt.tensor(v), 0.5, 3).numpy()
        full = exact(mt.tensor(q), mt.tensor(k), mt.tensor(v), 0.5).numpy()
    np.testing.assert_array_equal(y, ref)
    L = implied_attention(attention_fn("local:window=3", 4), q, k, 0.5)
    np.testing.assert_allclose(L @ v, y, rtol=1e-12)                 # the matrix it applies
    assert relative_error(full, full) == 0.0
    assert relative_error(y, full) == pytest.approx(np.linalg.norm(y - full) / np.linalg.norm(full))
    with pytest.raises(AttentionSpecError, match="one value per layer"):
        attention_fn("local:window=[3,2]", 4)
