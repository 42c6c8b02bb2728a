"""The engine's behaviour: gradient accumulation, graph shapes, no_grad, retain_graph,
dtype rules, error messages on bad shapes, deep graphs, and mt.save / mt.load.

Legend: B batch, C classes, D features.
"""
import os

import numpy as np
import pytest

import minit2t as mt
import minit2t.nn.functional as F
from minit2t import grad_mode


def leaf(*shape, seed=0, dtype=np.float64):
    return mt.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


# ---- gradients -----------------------------------------------------------------
def test_gradients_accumulate_across_backward_calls():
    x = leaf(3)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 5.0))


def test_tensor_used_twice_gets_summed_gradient():
    x = leaf(4)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1, rtol=1e-15)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_large_float32_tensor_used_twice_gets_summed_gradient(backend):
    """The second use's gradient is summed by the Add op on the active backend (the C backend's
    kernel from 2^16 elements), into a new array: neither gradient is changed in place."""
    previous = mt.get_backend().name
    try:
        mt.set_backend(backend)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))
    try:
        x = leaf(300, 300, dtype=np.float32)
        y = x * 2.0
        (y + y + x).sum().backward()                     # y reached twice, x twice
        np.testing.assert_array_equal(x.grad, np.full((300, 300), 5.0, np.float32))
        assert x.grad.dtype == np.float32
    finally:
        mt.set_backend(previous)


def test_diamond_graph_is_walked_in_topological_order():
    x = leaf(3)
    y = x * 2.0                                          # reached by three paths
    (y * y + y.exp() + y).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * (2 * y.data + np.exp(y.data) + 1), rtol=1e-14)


def test_broadcast_gradients_are_reduced_to_each_input_shape():
    a, b, c = leaf(2, 1, 4), leaf(3, 1, seed=1), leaf(seed=2)          # c is 0-d
    (a * b + c).sum().backward()                                        # (2, 3, 4)
    assert a.grad.shape == (2, 1, 4) and b.grad.shape == (3, 1) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad, np.broadcast_to(b.data.sum(), (2, 1, 4)), rtol=1e-14)
    np.testing.assert_allclose(b.grad, np.full((3, 1), a.data.sum()), rtol=1e-14)
    assert c.grad == 24.0


def test_only_leaves_that_require_grad_get_grad():
    x, const = leaf(3), mt.tensor(np.ones(3))
    y = x * const
    y.sum().backward()
    assert const.grad is None and y.grad is None and x.grad is not None


def test_backward_errors():
    x = leaf(2, 3)
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (x * 2.0).backward()                                             # not a scalar
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones((3, 2)))
    with pytest.raises(RuntimeError):
        mt.tensor(np.ones(3)).sum().backward()                           # nothing requires grad


def test_retain_graph():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data, rtol=1e-15)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()                                                     # freed by the last call


def test_deep_chain_has_no_recursion_limit():
    x = leaf(2)
    y = x
    for _ in range(5000):
        y = y + x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(2, 5001.0))


def test_op_with_several_outputs_gets_every_gradient_once():
    """Split's pieces used at different depths, one twice, one not at all: the op's
    backward runs once, after all of them (an unused piece counts as zero)."""
    x = mt.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    a, b, c = x.split([1, 2, 1], axis=1)                      # (3, 1), (3, 2), (3, 1)
    deep = ((a * 2).exp().log() * 3).sum()                    # a at depth 4: d/da = 6
    loss = deep + (b * b).sum() + b.sum()                     # b twice: 2b + 1; c unused
    loss.backward()
    want = np.concatenate([np.full((3, 1), 6.0), 2 * x.data[:, 1:3] + 1, np.zeros((3, 1))], axis=1)
    np.testing.assert_allclose(x.grad, want, rtol=1e-12)


def test_several_outputs_under_no_grad_and_retain_graph():
    x = mt.tensor(np.ones((2, 3)), requires_grad=True)
    with mt.no_grad():
        q, k = x.split(1, axis=0)[:2]
    assert not q.requires_grad and q._ctx is None
    q, k = x.unbind(0)[:2]
    y = (q * k).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * np.ones((2, 3)))
    with pytest.raises(ValueError, match="do not add up"):
        x.split([1, 1], axis=1)


def test_detach():
    x = leaf(3)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.data, 2 * x.data)
    (x * d).sum().backward()                                             # d is a constant here
    np.testing.assert_allclose(x.grad, d.data, rtol=1e-15)


def test_astype_keeps_the_graph():
    x = leaf(3, dtype=np.float32)
    y = x.astype(np.float64)
    (y * y).sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 2 * x.data, rtol=1e-6)


# ---- no_grad ---------------------------------------------------------------------
def test_no_grad_builds_no_graph_and_restores():
    x = leaf(3)
    with mt.no_grad():
        y = x * 2.0 + 1.0
        with mt.no_grad():
            z = y.exp()
        w = z.sum()
        assert not grad_mode.is_enabled()
        with mt.enable_grad():
            v = x * 3.0
        assert not grad_mode.is_enabled()
    assert grad_mode.is_enabled()
    assert not (y.requires_grad or z.requires_grad or w.requires_grad)
    assert y._ctx is None and z._ctx is None
    assert v.requires_grad and v._ctx is not None
    with pytest.raises(RuntimeError):
        w.backward()


def test_no_grad_restores_after_an_exception():
    with pytest.raises(KeyError):
        with mt.no_grad():
            raise KeyError
    assert grad_mode.is_enabled()


def test_grad_mode_decorators():
    x = leaf(3)

    @mt.no_grad()
    def off(t):
        return t * 2.0

    @mt.enable_grad()
    def on(t):
        return t * 2.0

    assert not off(x).requires_grad and grad_mode.is_enabled()
    with mt.no_grad():
        assert on(x).requires_grad
        assert not grad_mode.is_enabled()


def _mlp_grads(model, x):
    for p in model.parameters():
        p.grad = None
    model(x).sum().backward()
    return [p.grad for p in model.parameters()]


def test_grad_mode_is_per_thread():
    """Inference under no_grad in one thread while another trains: the trainer's graph is
    recorded and every parameter gets its gradient; the no_grad block stays in its thread."""
    import threading
    mt.manual_seed(0)
    model = mt.nn.Sequential(mt.nn.Linear(5, 7), mt.nn.GELU(), mt.nn.Linear(7, 3))
    x = mt.tensor(np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32))
    want = [g.copy() for g in _mlp_grads(model, x)]
    inside, trained, seen = threading.Event(), threading.Event(), {}

    def infer():
        with mt.no_grad():
            inside.set()
            trained.wait(30)
            seen["inference"] = model(x).requires_grad
        seen["after"] = grad_mode.is_enabled()

    thread = threading.Thread(target=infer)
    thread.start()
    assert inside.wait(30)
    got = _mlp_grads(model, x)                              # while the other thread is in no_grad
    trained.set()
    thread.join(30)
    assert grad_mode.is_enabled() and seen == {"inference": False, "after": True}
    assert len(got) == len(want) and all(g is not None for g in got)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# ---- dtypes --------------------------------------------------------------------
def test_dtype_rules():
    assert mt.tensor([1.0]).dtype == np.float32
    assert mt.tensor(1.5).dtype == np.float32
    assert mt.tensor(np.ones(2)).dtype == np.float64
    assert mt.tensor(np.ones(2, np.float32)).dtype == np.float32
    assert mt.tensor([1, 2]).dtype.kind == "i"
    x = mt.tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (x * 0.5, 0.5 * x, x + 1, 2 - x, x / 3.0, 1.0 / x, x ** 2, 2.0 ** x, x @ np.ones(3)):
        assert y.dtype == np.float32, y
    x64 = mt.tensor(np.ones(3), requires_grad=True)
    (x64 * 0.5).sum().backward()
    assert x64.grad.dtype == np.float64


def test_int_tensor_with_float_scalar_is_not_truncated():
    i = mt.tensor([1, 2, 3])
    np.testing.assert_allclose((i * 0.5).data, [0.5, 1.0, 1.5])
    np.testing.assert_allclose((i + 0.25).data, [1.25, 2.25, 3.25])


def test_requires_grad_on_int_is_a_type_error():
    with pytest.raises(TypeError, match="int64"):
        mt.tensor([1, 2], requires_grad=True)


# ---- bad shapes: a ValueError naming both shapes ----------------------------
BAD_SHAPES = {
    "matmul": (lambda: leaf(2, 3) @ leaf(4, 5), ["(2, 3)", "(4, 5)"]),
    "matmul_batch": (lambda: leaf(2, 3, 4) @ leaf(3, 4, 5), ["(2, 3, 4)", "(3, 4, 5)"]),
    "matmul_vectors": (lambda: leaf(3) @ leaf(4), ["(3,)", "(4,)"]),
    "reshape": (lambda: leaf(6).reshape(4, 2), ["(6,)", "(4, 2)"]),
    "concat": (lambda: mt.cat([leaf(2, 3), leaf(3, 4)], axis=1), ["(2, 3)", "(3, 4)"]),
    "concat_axis": (lambda: mt.cat([leaf(2, 3), leaf(2, 3)], axis=2), ["2"]),
    "expand": (lambda: leaf(2, 3).expand(4, 3), ["(2, 3)", "(4, 3)"]),
    "add": (lambda: leaf(2, 3) + leaf(4), ["(2, 3)", "(4,)"]),
    "ce_labels_range": (lambda: F.cross_entropy(leaf(2, 3), np.array([0, 3])), ["3"]),
    "ce_labels_shape": (lambda: F.cross_entropy(leaf(2, 3), np.array([0, 1, 2])), ["(2,)", "(3,)"]),
    "linear": (lambda: mt.nn.Linear(4, 3)(leaf(2, 5)), ["4", "(2, 5)"]),
    "layer_norm": (lambda: mt.nn.LayerNorm(4)(leaf(2, 5)), ["4", "(2, 5)"]),
    "conv2d": (lambda: mt.nn.Conv2d(3, 2, 3)(leaf(1, 2, 5, 5)), ["3", "(1, 2, 5, 5)"]),
}


@pytest.mark.parametrize("name", sorted(BAD_SHAPES))
def test_bad_shapes_raise_value_error_naming_them(name):
    fn, parts = BAD_SHAPES[name]
    with pytest.raises(ValueError) as err:
        fn()
    message = str(err.value).replace(" ", "")                       # NumPy writes (2,3)
    for part in parts:
        assert part.replace(" ", "") in message, f"{part!r} not in {str(err.value)!r}"


def test_apply_rejects_non_tensors():
    with pytest.raises(TypeError, match="ndarray"):
        mt.ops.Exp.apply(np.ones(3))


# ---- save / load -----------------------------------------------------------------
def test_save_load_roundtrip(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3),
             "n": np.array([1, 2], np.int64), "t": mt.tensor(np.full((2, 2), 0.5))}
    path = tmp_path / "model.npz"
    mt.save(state, path)
    back = mt.load(path)
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        want = value.numpy() if isinstance(value, mt.Tensor) else value
        assert back[key].dtype == want.dtype
        np.testing.assert_array_equal(back[key], want)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    mt.save({"a": np.ones(3)}, path)
    mt.save({"a": np.zeros(3)}, path)                                   # overwrite in place
    assert os.listdir(tmp_path) == ["model.npz"]

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        mt.save({"a": np.full(3, 7.0)}, path)
    assert os.listdir(tmp_path) == ["model.npz"]                        # no temp file left
    monkeypatch.undo()
    np.testing.assert_array_equal(mt.load(path)["a"], np.zeros(3))      # old file intact


def test_load_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="evil.npz"):
        mt.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_load_truncated_file(tmp_path, keep):
    path = tmp_path / "cut.npz"
    mt.save({"a": np.ones((50, 50))}, path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="cut.npz"):
        mt.load(path)


def test_load_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        mt.load(tmp_path / "missing.npz")
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(ValueError, match="plain.npy"):
        mt.load(tmp_path / "plain.npy")
    with pytest.raises(TypeError):
        mt.save([np.ones(3)], tmp_path / "list.npz")
