"""Looking inside a model: the T2T module's stages, every block's attention maps, predictions,
and the summary of the CIFAR model at its own size."""
import numpy as np
import pytest

import minit2t as mt
from minit2t import train
from minit2t.cli import main as cli_main

SMALL = dict(embed_dim=32, depth=2, num_heads=2, token_dim=8)


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("tokens_type", ["performer", "transformer", "convolution"])
def test_stages_end_with_the_module_output(tokens_type):
    model = mt.create_model("t2t_vit_cifar", tokens_type=tokens_type, **SMALL).eval()
    x = mt.tensor(_images(2))
    with mt.no_grad():
        stages = model.tokens_to_token.stages(x)
        out = model.tokens_to_token(x)
    assert [s.shape for s in stages] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 64, 32)]
    np.testing.assert_array_equal(stages[-1].data, out.data)


def test_attention_maps_are_each_blocks_softmax():
    model = mt.create_model("t2t_vit_cifar", **SMALL).eval()
    x = mt.tensor(_images(3))
    maps = model.attention_maps(x)
    assert [m.shape for m in maps] == [(3, 2, 65, 65)] * 2
    for m in maps:
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, rtol=1e-5)
    # block 0 by hand: softmax(q k^T * scale) of its normalised input
    with mt.no_grad():
        tokens = model.tokens_to_token(x)                                      # (B, N, D)
        cls = np.broadcast_to(model.cls_token.data, (3, 1, 32))
        h = np.concatenate([cls, tokens.data], axis=1) + model.pos_embed.data  # (B, N+1, D)
        qkv = model.blocks[0].attn.qkv(model.blocks[0].norm1(mt.tensor(h))).data
    qkv = qkv.reshape(3, 65, 3, 2, 16).transpose(2, 0, 3, 1, 4)                 # (3, B, h, N+1, d)
    logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * 16 ** -0.5
    want = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(maps[0], want / want.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert all(not b.attn.keep_attn and b.attn.last_attn is None for b in model.blocks)


def test_attention_maps_leave_the_model_as_it_was():
    model = mt.create_model("t2t_vit_cifar", **SMALL).train()
    model.attention_maps(mt.tensor(_images(1)))
    assert model.training
    x = mt.tensor(_images(1), requires_grad=True)
    model(x).sum().backward()                                 # the graph is built again afterwards
    assert x.grad is not None


def test_predict_matches_the_model_on_normalised_images():
    model = mt.create_model("t2t_vit_cifar", **SMALL).train()
    images = np.random.default_rng(1).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    logits = train.predict(model, images, batch_size=2)
    assert logits.shape == (5, 10) and model.training
    model.eval()
    with mt.no_grad():
        want = model(mt.tensor(mt.data.normalize(images))).data
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    labels = want.argmax(axis=1)
    assert train.evaluate(model, images, labels) == 1.0
    assert train.evaluate(model, images[:0], labels[:0]) == 0.0


def test_summary_of_the_cifar_model_is_at_32(capsys):
    assert cli_main(["summary", "t2t_vit_cifar"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("t2t_vit_cifar at 32x32") and "(1, 10)" in out


def test_confusion_matrix():
    from minit2t.analysis import confusion_matrix
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="one length"):
        confusion_matrix([0, 1], [0], 3)


def test_cls_attention_and_rollout():
    from minit2t.analysis import attention_rollout, cls_attention
    rng = np.random.default_rng(0)
    maps = [rng.random((2, 3, 5, 5)) for _ in range(2)]
    maps = [m / m.sum(-1, keepdims=True) for m in maps]
    grid = cls_attention(maps[-1])
    assert grid.shape == (2, 2, 2)
    np.testing.assert_allclose(grid.reshape(2, 4), maps[-1][:, :, 0, 1:].mean(axis=1))
    # rollout by hand for two blocks
    a = [(m.mean(axis=1) + np.eye(5)) / 2 for m in maps]
    want = (a[1] @ a[0])[:, 0, 1:]
    np.testing.assert_allclose(attention_rollout(maps).reshape(2, 4), want / want.sum(-1, keepdims=True))
    with pytest.raises(ValueError, match="square grid"):
        cls_attention(rng.random((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="at least one block"):
        attention_rollout([])
