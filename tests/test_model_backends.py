"""The whole model gives the same logits and gradients on every backend as on the NumPy reference."""
import numpy as np
import pytest

import minit2t as mt
from minit2t.backends import get_backend, set_backend

BACKENDS = ["c", "opencl"]


def _run(model, x, labels):
    model.zero_grad()
    xt = mt.tensor(x, requires_grad=True)
    logits = model(xt)
    loss = mt.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    grads = {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}
    return logits.numpy().copy(), xt.grad.copy(), grads


def _rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.mark.parametrize("tokens_type", ["performer", "transformer"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_same_on_backend(backend, tokens_type):
    try:
        get_backend(backend)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"backend {backend!r} unavailable: {exc}")
    mt.manual_seed(0)
    model = mt.create_model("t2t_vit_7", img_size=32, num_classes=10, token_dim=16, tokens_type=tokens_type,
                            soft_split=((3, 2, 1), (3, 2, 1), (3, 2, 1))).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 4)
    previous = get_backend()
    try:
        set_backend("numpy")
        ref = _run(model, x, labels)
        set_backend(backend)
        got = _run(model, x, labels)
    finally:
        set_backend(previous.name)
    assert _rel(got[0], ref[0]) < 1e-5
    assert _rel(got[1], ref[1]) < 1e-4
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:
        assert _rel(got[2][name], ref[2][name]) < 1e-4, name
