"""Looking inside a model: forward hooks, the T2T module's stages, every block's attention maps
(from two threads at once), predictions, and the summary of the CIFAR model at its own size."""
import threading

import numpy as np
import pytest

import minit2t as mt
from minit2t import analysis, train
from minit2t.cli import main as cli_main

SMALL = dict(embed_dim=32, depth=2, num_heads=2, token_dim=8)


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def _no_hooks(model):
    return all(m._forward_hooks == () and m._forward_pre_hooks == () for m in model.modules())


def test_forward_hooks_see_each_call_until_removed():
    layer, seen = mt.nn.Linear(4, 3), []
    pre = layer.register_forward_pre_hook(lambda m, inputs: seen.append(("pre", m, inputs)))
    post = layer.register_forward_hook(lambda m, inputs, out: seen.append(("post", m, inputs, out)))
    x = mt.tensor(np.ones((2, 4), np.float32))
    y = layer(x)
    assert [s[0] for s in seen] == ["pre", "post"] and seen[0][1] is layer and seen[0][2][0] is x
    assert seen[1][1] is layer and seen[1][2][0] is x and seen[1][3] is y
    pre.remove()
    post.remove()
    post.remove()                                                   # a second remove does nothing
    layer(x)
    assert len(seen) == 2 and _no_hooks(layer)


def test_forward_hooks_run_in_order_and_are_removed_one_by_one():
    layer, seen = mt.nn.GELU(), []
    log = lambda m, inputs, out: seen.append(len(seen))
    first, second = layer.register_forward_hook(log), layer.register_forward_hook(log)   # one fn, twice
    layer(mt.tensor(np.zeros(3, np.float32)))
    first.remove()
    layer(mt.tensor(np.zeros(3, np.float32)))
    assert seen == [0, 1, 2]
    with second:                                                    # a handle is a context manager too
        pass
    assert _no_hooks(layer)


def test_the_softmax_modules_add_no_state():
    model = mt.create_model("t2t_vit_cifar", **SMALL)
    assert isinstance(model.blocks[0].attn.softmax, mt.nn.Softmax)
    assert not [k for k in model.state_dict() if "softmax" in k]


@pytest.mark.parametrize("tokens_type", ["performer", "transformer", "convolution"])
def test_t2t_stages_end_with_the_module_output(tokens_type):
    model = mt.create_model("t2t_vit_cifar", tokens_type=tokens_type, **SMALL).eval()
    t2t, x = model.tokens_to_token, mt.tensor(_images(2))
    with mt.no_grad():
        stages = analysis.t2t_stages(t2t, x)
        out = t2t(x)
        if tokens_type != "convolution":                            # image 1 by hand
            image1 = t2t.attention1(t2t.soft_split0(x).transpose(1, 2)).transpose(1, 2).reshape(2, 8, 16, 16)
            np.testing.assert_array_equal(stages[0].data, image1.data)
    assert [s.shape for s in stages] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 64, 32)]
    np.testing.assert_array_equal(stages[-1].data, out.data)
    assert _no_hooks(model)


def _attention_by_hand(model, x):
    """Block 0's softmax(q k^T * scale) of its normalised input, in NumPy: (B, h, N+1, N+1)."""
    B = x.shape[0]
    with mt.no_grad():
        tokens = model.tokens_to_token(x)                                      # (B, N, D)
        cls = np.broadcast_to(model.cls_token.data, (B, 1, 32))
        h = np.concatenate([cls, tokens.data], axis=1) + model.pos_embed.data  # (B, N+1, D)
        qkv = model.blocks[0].attn.qkv(model.blocks[0].norm1(mt.tensor(h))).data
    qkv = qkv.reshape(B, 65, 3, 2, 16).transpose(2, 0, 3, 1, 4)                 # (3, B, h, N+1, d)
    logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * 16 ** -0.5
    want = np.exp(logits - logits.max(-1, keepdims=True))
    return want / want.sum(-1, keepdims=True)


def test_attention_maps_are_each_blocks_softmax():
    model = mt.create_model("t2t_vit_cifar", **SMALL).eval()
    x = mt.tensor(_images(3))
    with mt.no_grad():
        maps = analysis.attention_maps(model, x)
    assert [m.shape for m in maps] == [(3, 2, 65, 65)] * 2
    for m in maps:
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(maps[0], _attention_by_hand(model, x), rtol=1e-4, atol=1e-6)
    assert _no_hooks(model)


def test_attention_maps_leave_the_model_as_it_was():
    model = mt.create_model("t2t_vit_cifar", **SMALL).train()
    analysis.attention_maps(model, mt.tensor(_images(1)))
    assert model.training and _no_hooks(model)
    x = mt.tensor(_images(1), requires_grad=True)
    model(x).sum().backward()                                 # the graph is built as before
    assert x.grad is not None


def test_attention_maps_from_two_threads_at_once_are_each_their_own():
    model = mt.create_model("t2t_vit_cifar", **SMALL).eval()
    inputs = [mt.tensor(_images(2, seed)) for seed in (1, 2)]
    want = [analysis.attention_maps(model, x) for x in inputs]
    both_inside = threading.Barrier(2, timeout=30)
    meet = model.blocks[0].register_forward_pre_hook(lambda m, inputs: both_inside.wait())
    got, errors = [None, None], []

    def inspect(i):
        try:
            got[i] = analysis.attention_maps(model, inputs[i])
        except Exception as exc:                                  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=inspect, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meet.remove()
    assert not errors and _no_hooks(model)
    for g, w in zip(got, want):
        assert len(g) == len(w) == 2
        for a, b in zip(g, w):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got[0][0], got[1][0])


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
