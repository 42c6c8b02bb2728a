"""minit2t.approx: attention approximations (local, performer, scatterbrain), their band op,
specs and the T2T swap. Oracle: tests/torch_approx.py (float64, same random matrix W)."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minit2t as mt
import torch_approx as ta
from helpers import assert_close, numerical_grad_check
from minit2t import approx
from minit2t.approx import AttentionSpecError, parse_attention_spec, swap_t2t_attention
from minit2t.approx.features import feature_rows, gaussian_orthogonal, log_features
from minit2t.ops.band import BandDot, BandMix, band_dot, band_mask, band_mix, band_mix_t
from minit2t.approx.lsh import lsh_attention_sets, lsh_hash
from strategies import attention_cases, seeds

TOL = dict(rtol=1e-9, atol=1e-12)


def qkv(seed, B=2, T=7, d=3, dv=4, scale=1.0):
    r = np.random.default_rng(seed)
    return scale * r.standard_normal((B, T, d)), scale * r.standard_normal((B, T, d)), r.standard_normal((B, T, dv))


def parity(mt_fn, th_fn, arrays, seed=0):
    """Forward and gradients (one random upstream gradient) of mt_fn against th_fn."""
    mt_in = [mt.tensor(a, requires_grad=True) for a in arrays]
    th_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = mt_fn(*mt_in), th_fn(*th_in)
    assert_close(out.data, ref.detach().numpy(), what="forward", **TOL)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(mt_in, th_in)):
        assert_close(a.grad, b.grad.numpy(), what=f"gradient of input {i}", **TOL)


def implied(fn, q, k, T):
    """The implied attention matrix (B, T, T): the output for v = identity."""
    eye = np.broadcast_to(np.eye(T), (q.shape[0], T, T)).copy()
    with mt.no_grad():
        return fn(mt.tensor(q), mt.tensor(k), mt.tensor(eye)).data


# ---- the band ops ----------------------------------------------------------------

BAND_CASES = [(1, 1), (5, 1), (5, 2), (5, 3), (6, 4), (4, 9), (5, 0)]


@pytest.mark.parametrize("T,w", BAND_CASES)
def test_band_ops_gradcheck(T, w):
    r = np.random.default_rng(T * 10 + w)
    a, b, p = r.standard_normal((2, T, 3)), r.standard_normal((2, T, 3)), r.standard_normal((2, T, w))
    numerical_grad_check(lambda x, y: BandDot.apply(x, y, window=w), [a, b])
    numerical_grad_check(lambda x, y: BandMix.apply(x, y), [p, b])


def dense_band(T, w):
    """(T, w, T) 0/1: slot s of query i selects key i + offset_s (none off the ends)."""
    sel = np.zeros((T, w, T))
    for i in range(T):
        for s, o in enumerate(range(-(w // 2), w - w // 2)):
            if 0 <= i + o < T:
                sel[i, s, i + o] = 1.0
    return sel


@given(st.integers(1, 8), st.integers(0, 10), seeds)
def test_band_ops_are_the_band_and_mix_t_the_adjoint(T, w, seed):
    r = np.random.default_rng(seed)
    a, b, p = r.standard_normal((2, T, 3)), r.standard_normal((2, T, 3)), r.standard_normal((2, T, w))
    sel = dense_band(T, w)                                           # the dense definitions
    np.testing.assert_allclose(band_dot(a, b, w), np.einsum("bid,isj,bjd->bis", a, sel, b), atol=1e-12)
    np.testing.assert_allclose(band_mix(p, b), np.einsum("bis,isj,bjd->bid", p, sel, b), atol=1e-12)
    np.testing.assert_allclose(band_mix_t(p, a), np.einsum("bis,isj,bid->bjd", p, sel, a), atol=1e-12)
    assert band_mask(T, w).sum() == sel.sum()
    y = r.standard_normal((2, T, 3))                                 # <mix(p, v), y> = <v, mix_t(p, y)>
    assert np.isclose(np.sum(band_mix(p, b) * y), np.sum(b * band_mix_t(p, y)))


def test_band_op_errors():
    z = mt.tensor(np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="window must be >= 0"):
        BandDot.apply(z, z, window=-1)
    with pytest.raises(TypeError, match="window must be an int"):
        BandDot.apply(z, z, window=2.0)
    with pytest.raises(ValueError, match=r"a of shape \(B, T, d\)"):
        BandDot.apply(mt.tensor(np.zeros((3, 2))), z, window=1)
    with pytest.raises(ValueError, match="same shape"):
        BandDot.apply(z, mt.tensor(np.zeros((1, 3, 4))), window=1)
    with pytest.raises(ValueError, match=r"same \(B, T\)"):
        BandMix.apply(mt.tensor(np.zeros((1, 4, 5))), z)
    with pytest.raises(TypeError, match="floating-point"):
        BandMix.apply(mt.tensor(np.zeros((1, 3, 5), dtype=np.int64)), z)


# ---- parity with the torch transcription (float64) ---------------------------

@pytest.mark.parametrize("w", [1, 2, 3, 6, 20])
def test_local_parity(w):
    q, k, v = qkv(w)
    parity(lambda q, k, v: approx.local(q, k, v, 0.6, w), lambda q, k, v: ta.local(q, k, v, 0.6, w), [q, k, v])


@pytest.mark.parametrize("m", [1, 3, 8])
def test_performer_parity(m):
    q, k, v = qkv(m)
    W = gaussian_orthogonal(m, 3, seed=m)
    parity(lambda q, k, v: approx.performer(q, k, v, 0.6, W),
           lambda q, k, v: ta.performer(q, k, v, 0.6, torch.from_numpy(W)), [q, k, v])


@pytest.mark.parametrize("w,m", [(0, 4), (1, 2), (3, 4), (4, 8), (20, 2)])
def test_scatterbrain_parity(w, m):
    q, k, v = qkv(w + 10 * m)
    W = gaussian_orthogonal(m // 2, 3, seed=m)
    parity(lambda q, k, v: approx.scatterbrain(q, k, v, 0.6, w, W),
           lambda q, k, v: ta.scatterbrain(q, k, v, 0.6, w, torch.from_numpy(W)), [q, k, v])


def test_exact_parity():
    parity(lambda q, k, v: approx.exact(q, k, v, 0.6), lambda q, k, v: ta.exact(q, k, v, 0.6), list(qkv(1)))


def test_stable_for_large_logits():
    """Logits in the thousands: e^{tau q.k} overflows float64, the shifted formulas do not."""
    q, k, v = qkv(3, T=6, d=3, scale=30.0)
    assert np.max(q @ k.transpose(0, 2, 1)) > 800
    W = gaussian_orthogonal(4, 3, seed=0)
    for fn in (lambda q, k, v: approx.local(q, k, v, 1.0, 3), lambda q, k, v: approx.performer(q, k, v, 1.0, W),
               lambda q, k, v: approx.scatterbrain(q, k, v, 1.0, 3, W)):
        ts = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = fn(*ts)
        out.sum().backward()
        assert np.all(np.isfinite(out.data)) and all(np.all(np.isfinite(t.grad)) for t in ts)
    with np.errstate(over="ignore", invalid="ignore"):              # the oracle has no shifts
        ref = ta.local(*(torch.tensor(a) for a in (q, k, v)), 1.0, 3).numpy()
    assert_close(approx.local(mt.tensor(q), mt.tensor(k), mt.tensor(v), 1.0, 3).data, ref, what="local", **TOL)


# ---- properties ------------------------------------------------------------------

@given(attention_cases(), seeds)
def test_rows_sum_to_one(case, seed):
    q, k, v, tau, w = case
    T = q.shape[1]
    W = gaussian_orthogonal(2, q.shape[2], seed=seed)
    for fn in (lambda q, k, v: approx.local(q, k, v, tau, w),
               lambda q, k, v: approx.scatterbrain(q, k, v, tau, w, W),
               lambda q, k, v: approx.performer(q, k, v, tau, W)):
        A = implied(fn, q, k, T)
        np.testing.assert_allclose(A.sum(-1), 1.0, rtol=1e-12)
        with mt.no_grad():
            out = fn(mt.tensor(q), mt.tensor(k), mt.tensor(v)).data
        np.testing.assert_allclose(out, A @ v, rtol=1e-9, atol=1e-12)   # linear in v


@given(attention_cases(), seeds)
def test_local_support_is_the_band(case, seed):
    q, k, _, tau, w = case
    A = implied(lambda q, k, v: approx.local(q, k, v, tau, w), q, k, q.shape[1])
    assert np.all(A[:, ~ta.band(q.shape[1], w).numpy()] == 0)


@given(attention_cases(), seeds)
def test_full_window_is_exact(case, seed):
    q, k, v, tau, _ = case
    T = q.shape[1]
    W = gaussian_orthogonal(2, q.shape[2], seed=seed)
    with mt.no_grad():
        want = approx.exact(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau).data
        for w in (2 * T - 1, 2 * T + 3):                             # covers j - i in [-(T-1), T-1]
            for out in (approx.local(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau, w),
                        approx.scatterbrain(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau, w, W)):
                np.testing.assert_allclose(out.data, want, rtol=1e-10, atol=1e-13)


@given(attention_cases(), st.integers(1, 3), seeds)
def test_scatterbrain_without_band_is_performer(case, rows, seed):
    q, k, v, tau, _ = case
    W = gaussian_orthogonal(rows, q.shape[2], seed=seed)
    with mt.no_grad():
        sb = approx.scatterbrain(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau, 0, W).data
        pf = approx.performer(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau, W, feature_map="cosh").data
    np.testing.assert_allclose(sb, pf, rtol=1e-10, atol=1e-13)


@given(attention_cases(), st.integers(1, 3), seeds)
def test_scatterbrain_unnormalised_matrix(case, rows, seed):
    """exp(tau q.k) on the band, phi.phi off it (Scatterbrain's own test)."""
    q, k, _, tau, w = case
    B, T, d = q.shape
    W = gaussian_orthogonal(rows, d, seed=seed)
    eye = np.broadcast_to(np.eye(T), (B, T, T)).copy()
    with mt.no_grad():
        num, Z, h = approx.scatterbrain_parts(mt.tensor(q), mt.tensor(k), mt.tensor(eye), tau, w, W)
    A = num.data * np.exp(h)                                         # (B, T, T)
    phi = lambda x: np.exp(log_features(mt.tensor(x * np.sqrt(tau)), W, "cosh").data)
    low = phi(q) @ phi(k).transpose(0, 2, 1)
    S = ta.band(T, w).numpy()
    want = np.where(S, np.exp(tau * q @ k.transpose(0, 2, 1)), low)
    np.testing.assert_allclose(A, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("feature_map", ["positive", "cosh"])
def test_feature_estimate_is_unbiased(feature_map):
    """Mean over 2000 seeds of phi(x).phi(y) (2 features each) against exp(x.y): the standard
    error here is ~1.5% of the kernel; tolerance 5% (more than 3 standard errors)."""
    r = np.random.default_rng(0)
    d, pairs = 4, 6
    x, y = 0.5 * r.standard_normal((1, pairs, d)), 0.5 * r.standard_normal((1, pairs, d))
    rows = feature_rows(feature_map, 2)
    est = np.zeros(pairs)
    n = 2000
    for seed in range(n):
        W = gaussian_orthogonal(rows, d, seed=seed)
        px = np.exp(log_features(mt.tensor(x), W, feature_map).data[0])
        py = np.exp(log_features(mt.tensor(y), W, feature_map).data[0])
        est += (px * py).sum(-1) / n
    exact = np.exp((x[0] * y[0]).sum(-1))
    np.testing.assert_allclose(est, exact, rtol=0.05)


def test_orthogonal_rows():
    W = gaussian_orthogonal(10, 4, seed=1)
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    for b in range(0, 8, 4):                                         # full blocks: orthogonal rows
        np.testing.assert_allclose(unit[b:b + 4] @ unit[b:b + 4].T, np.eye(4), atol=1e-12)
    np.testing.assert_array_equal(W, gaussian_orthogonal(10, 4, seed=1))


# ---- specs and the T2T swap -------------------------------------------------------

def test_parse_attention_spec():
    assert parse_attention_spec("exact") == ("exact", {})
    assert parse_attention_spec("local:window=16") == ("local", {"window": 16})
    assert parse_attention_spec("scatterbrain:window=[49,12],features=8") == \
        ("scatterbrain", {"window": [49, 12], "features": 8, "seed": 0})
    assert parse_attention_spec("performer") == ("performer", {"features": [49, 12], "seed": 0})
    assert parse_attention_spec("scatterbrain:window=0,features=2")[1]["window"] == 0


@pytest.mark.parametrize("spec", ["", "softmax", "local:window=0", "local:w=3", "local:window=2.5",
                                  "local:window=[3", "performer:features=0", "scatterbrain:features=3",
                                  "exact:window=3", "local:window", "performer:seed=[1,2]", 7])
def test_bad_specs_are_one_line_errors(spec):
    with pytest.raises(AttentionSpecError) as info:
        parse_attention_spec(spec)
    assert "\n" not in str(info.value) and str(info.value)


def tiny_model(tokens_type="transformer"):
    mt.manual_seed(0)
    return mt.create_model("t2t_vit_cifar", tokens_type=tokens_type, embed_dim=16, depth=1, num_heads=2,
                           token_dim=8, img_size=16)


def test_swap_exact_is_bit_identical_and_state_dict_unchanged():
    model = tiny_model()
    model.eval()
    x = mt.tensor(np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))
    with mt.no_grad():
        before = model(x).data
    keys = list(model.state_dict())
    swap_t2t_attention(model, "scatterbrain:window=[5,3],features=[4,2]")
    assert list(model.state_dict()) == keys
    with mt.no_grad():
        approx_out = model(x).data
    assert np.all(np.isfinite(approx_out)) and not np.array_equal(approx_out, before)
    swap_t2t_attention(model, "local:window=4")                      # swapping again: from the original
    swap_t2t_attention(model, "exact")
    with mt.no_grad():
        after = model(x).data
    np.testing.assert_array_equal(after, before)
    assert type(model.tokens_to_token.attention1.attn).__name__ == "TokenAttention"


def test_swap_full_window_matches_exact_and_trains():
    model = tiny_model()
    model.eval()
    x = mt.tensor(np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32))
    with mt.no_grad():
        want = model(x).data
    swap_t2t_attention(model, "local:window=1000")
    out = model(x)
    np.testing.assert_allclose(out.data, want, rtol=1e-4, atol=1e-5)
    for spec in ("performer:features=4", "scatterbrain:window=3,features=4", "local:window=3"):
        swap_t2t_attention(model, spec)
        model.zero_grad()
        out = model(x)
        out.sum().backward()
        w = model.tokens_to_token.attention1.attn.qkv.weight
        assert w.grad is not None and np.all(np.isfinite(w.grad)) and np.any(w.grad != 0), spec


def test_swap_rejects_the_release_performer():
    with pytest.raises(ValueError, match="tokens_type='transformer'") as info:
        swap_t2t_attention(tiny_model("performer"), "local:window=3")
    assert "\n" not in str(info.value)


# ---- LSH (Reformer) ---------------------------------------------------------------



@pytest.mark.parametrize("T,bucket,hashes,nb", [(7, 2, 2, 4), (9, 3, 3, 2), (12, 4, 1, 4), (10, 3, 2, 6), (5, 1, 2, 4)])
def test_lsh_parity(T, bucket, hashes, nb):
    """Against the dense oracle: softmax over the union of the rounds' keys, same rotations."""
    q, k, v = qkv(T + 10 * bucket, T=T)
    R = approx.lsh_rotations(3, nb, hashes, seed=T)
    parity(lambda q, k, v: approx.lsh(q, k, v, 0.6, bucket, R),
           lambda q, k, v: ta.lsh(q, k, v, 0.6, bucket, torch.from_numpy(R)), [q, k, v])


def test_lsh_counts_a_pair_once_however_many_rounds_meet_it():
    """Rounds that see the same keys: N_ij = hashes, and the result is one round's."""
    q, k, v = qkv(5, T=8)
    one = approx.lsh_rotations(3, 4, 1, seed=2)
    three = np.repeat(one, 3, axis=0)                                # (3, d, nb/2) the same rotation
    _, _, _, log_count, _ = lsh_attention_sets(q, k, three, 2)
    np.testing.assert_allclose(np.exp(log_count), 3.0)
    with mt.no_grad():
        a = approx.lsh(mt.tensor(q), mt.tensor(k), mt.tensor(v), 0.6, 2, one).data
        b = approx.lsh(mt.tensor(q), mt.tensor(k), mt.tensor(v), 0.6, 2, three).data
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@given(attention_cases(), st.integers(1, 3), st.integers(1, 3), seeds)
def test_lsh_rows_sum_to_one_and_support_is_the_union(case, bucket, hashes, seed):
    q, k, v, tau, _ = case
    B, T, d = q.shape
    R = approx.lsh_rotations(d, approx.lsh_n_buckets(T, bucket), hashes, seed=seed)
    fn = lambda q, k, v: approx.lsh(q, k, v, tau, bucket, R)
    A = implied(fn, q, k, T)
    np.testing.assert_allclose(A.sum(-1), 1.0, rtol=1e-12)
    U = ta.lsh_union(torch.tensor(q), torch.tensor(k), T, bucket, torch.from_numpy(R)).numpy()
    assert np.all(A[~U] == 0) and np.all(A[U] > 0)
    with mt.no_grad():
        out = fn(mt.tensor(q), mt.tensor(k), mt.tensor(v)).data
    np.testing.assert_allclose(out, A @ v, rtol=1e-9, atol=1e-12)


@given(attention_cases(), st.integers(1, 3), seeds)
def test_lsh_one_bucket_for_all_tokens_is_exact(case, hashes, seed):
    q, k, v, tau, _ = case
    T, d = q.shape[1], q.shape[2]
    with mt.no_grad():
        want = approx.exact(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau).data
        for bucket in (T, T + 3):
            R = approx.lsh_rotations(d, approx.lsh_n_buckets(T, bucket), hashes, seed=seed)
            out = approx.lsh(mt.tensor(q), mt.tensor(k), mt.tensor(v), tau, bucket, R).data
            np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-13)


def test_lsh_hash_is_angular_and_sorted_by_bucket_then_position():
    q, _, _ = qkv(4, T=9)
    R = approx.lsh_rotations(3, 6, 2, seed=1)
    h = lsh_hash(q, R)                                               # (B, n, T)
    assert h.shape == (2, 2, 9) and h.min() >= 0 and h.max() < 6
    np.testing.assert_array_equal(lsh_hash(5.0 * q, R), h)           # the norm does not matter
    qtok = lsh_attention_sets(q, q, R, 3)[0].reshape(2, 2, -1)       # (B, n, P) tokens in sorted order
    for b in range(2):
        for r in range(2):
            key = [(h[b, r, t], t) for t in qtok[b, r]]
            assert key == sorted(key)


def test_lsh_spec_and_swap():
    assert parse_attention_spec("lsh") == ("lsh", {"bucket": [49, 12], "hashes": 2, "seed": 0})
    assert parse_attention_spec("lsh:bucket=[8,4],hashes=[2,1],seed=3")[1] == \
        {"bucket": [8, 4], "hashes": [2, 1], "seed": 3}
    model = tiny_model()
    model.eval()
    x = mt.tensor(np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32))
    with mt.no_grad():
        want = model(x).data
    swap_t2t_attention(model, "lsh:bucket=1000,hashes=2")             # one chunk: exact
    with mt.no_grad():
        np.testing.assert_allclose(model(x).data, want, rtol=1e-4, atol=1e-5)
    swap_t2t_attention(model, "lsh:bucket=[3,2],hashes=2")
    model.zero_grad()
    out = model(x)
    out.sum().backward()
    w = model.tokens_to_token.attention1.attn.qkv.weight
    assert np.all(np.isfinite(out.data)) and np.any(w.grad != 0)
    with mt.no_grad():
        np.testing.assert_array_equal(model(x).data, out.data)       # the same rotations every call


@pytest.mark.parametrize("spec", ["lsh:bucket=0", "lsh:hashes=0", "lsh:buckets=4", "lsh:bucket=[4", "lsh:seed=[1,2]",
                                  "lsh:hashes=1.5"])
def test_lsh_bad_specs_are_one_line_errors(spec):
    with pytest.raises(AttentionSpecError) as info:
        parse_attention_spec(spec)
    assert "\n" not in str(info.value) and str(info.value)
