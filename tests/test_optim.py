"""Optimisers, schedule and clipping against torch on the same sequence of gradients."""
import math

import numpy as np
import pytest

import minit2t as mt
from minit2t.models.t2t import T2T_ViT
from minit2t.nn.module import Parameter
from minit2t.optim import (SGD, AdamW, WarmupCosine, clip_grad_norm, optimizer_state_from_arrays,
                           optimizer_state_to_arrays, param_groups_for_weight_decay)

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (4,), (2, 3, 2)]
TOL = {np.float64: (0.0, 1e-10), np.float32: (1e-5, 1e-6)}      # (rtol, atol)


def make_params(dtype, seed=0):
    r = np.random.default_rng(seed)
    return [Parameter(r.standard_normal(s).astype(dtype)) for s in SHAPES]


def grad_sequence(steps, dtype, seed=1):
    """Per step, one gradient per parameter; parameter 1 has none on steps 1 and 3."""
    r = np.random.default_rng(seed)
    return [[None if (i == 1 and t in (1, 3)) else r.standard_normal(s).astype(dtype)
             for i, s in enumerate(SHAPES)] for t in range(steps)]


def as_groups(params, grouped):
    """The same list as torch-style groups: the first two with their own options."""
    if not grouped:
        return list(params)
    return [{"params": params[:2], "weight_decay": 0.0, "lr": 0.02}, {"params": params[2:]}]


def run_mt(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = None if g is None else g.copy()
        opt.step()


def run_torch(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()


def compare(mt_cls, torch_cls, kwargs, dtype, grouped):
    params = make_params(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    grads = grad_sequence(6, dtype)
    run_mt(mt_cls(as_groups(params, grouped), **kwargs), params, grads)
    run_torch(torch_cls(as_groups(tparams, grouped), **kwargs), tparams, grads)
    rtol, atol = TOL[dtype]
    for p, tp in zip(params, tparams):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("kwargs", [dict(lr=0.01), dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3)])
def test_adamw_matches_torch(kwargs, grouped, dtype):
    compare(AdamW, torch.optim.AdamW, kwargs, dtype, grouped)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                                    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
                                    dict(lr=0.05, momentum=0.8, dampening=0.2, weight_decay=0.1)])
def test_sgd_matches_torch(kwargs, grouped, dtype):
    compare(SGD, torch.optim.SGD, kwargs, dtype, grouped)


def test_param_without_grad_is_skipped():
    params = make_params(np.float32)
    before = params[1].data.copy()
    opt = AdamW(params, lr=0.1)
    params[0].grad = np.ones(SHAPES[0], np.float32)
    opt.step()
    np.testing.assert_array_equal(params[1].data, before)
    assert params[1] not in opt.state and opt.state[params[0]]["step"] == 1
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("cls, kwargs", [(AdamW, dict(lr=0.01, weight_decay=0.1)),
                                         (SGD, dict(lr=0.1, momentum=0.9, nesterov=True))])
def test_state_dict_roundtrip_continues_identically(tmp_path, cls, kwargs):
    grads = grad_sequence(6, np.float32)
    params = make_params(np.float32)
    opt = cls(as_groups(params, True), **kwargs)
    sched = WarmupCosine(opt, warmup_steps=2, total_steps=6, min_lr=1e-4)
    for step in grads[:3]:
        run_mt(opt, params, [step])
        sched.step()
    saved = {**optimizer_state_to_arrays(opt), **{f"sched.{k}": np.asarray(v) for k, v in sched.state_dict().items()}}
    mt.save(saved, tmp_path / "ckpt.npz")
    loaded = mt.load(tmp_path / "ckpt.npz")
    params2 = [Parameter(p.data.copy()) for p in params]
    opt2 = cls(as_groups(params2, True), **kwargs)
    sched2 = WarmupCosine(opt2, warmup_steps=1, total_steps=2)
    opt2.load_state_dict(optimizer_state_from_arrays(loaded))
    sched2.load_state_dict({k[len("sched."):]: v for k, v in loaded.items() if k.startswith("sched.")})
    for step in grads[3:]:
        run_mt(opt, params, [step])
        run_mt(opt2, params2, [step])
        sched.step()
        sched2.step()
    assert opt.state_dict()["param_groups"] == opt2.state_dict()["param_groups"]
    for p, p2 in zip(params, params2):
        np.testing.assert_array_equal(p.data, p2.data)


def test_load_state_dict_rejects_other_layouts():
    opt = AdamW(make_params(np.float64), lr=0.1)
    for p in opt.param_groups[0]["params"]:
        p.grad = np.ones_like(p.data)
    opt.step()
    other = AdamW(make_params(np.float64)[:2], lr=0.1)
    with pytest.raises(ValueError, match="parameters saved"):
        other.load_state_dict(opt.state_dict())
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        AdamW(make_params(np.float64), lr=0.1).load_state_dict(sd)


def test_bad_arguments():
    params = make_params(np.float32)
    for make in (lambda: AdamW(params, lr=-1.0), lambda: AdamW(params, betas=(0.9, 1.0)),
                 lambda: SGD(params, lr=0.1, nesterov=True), lambda: SGD(params, lr=0.1, weight_decay=-1.0),
                 lambda: AdamW([params[0], params[0]]), lambda: SGD([], lr=0.1)):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError, match="ndarray"):
        SGD([np.zeros(3)], lr=0.1)
    opt = SGD(params, lr=0.1)
    params[0].grad = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
        opt.step()


def reference_lr(t, base, warmup, total, min_lr, start):
    if t < warmup:
        return start + (base - start) * t / warmup
    if t > total:
        return min_lr
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.mark.parametrize("warmup, total, min_lr, start", [(3, 10, 1e-5, 1e-6), (0, 7, 0.0, 0.0)])
def test_warmup_cosine_matches_lambda_lr(warmup, total, min_lr, start):
    bases = [0.1, 0.03]
    p = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    tp = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = SGD([{"params": [p[0]], "lr": bases[0]}, {"params": [p[1]], "lr": bases[1]}])
    topt = torch.optim.SGD([{"params": [tp[0]], "lr": bases[0]}, {"params": [tp[1]], "lr": bases[1]}])
    sched = WarmupCosine(opt, warmup, total, min_lr=min_lr, warmup_start_lr=start)
    lambdas = [lambda t, b=b: reference_lr(t, b, warmup, total, min_lr, start) / b for b in bases]
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambdas)
    for _ in range(total + 3):
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-14, atol=0)
        sched.step()
        topt.step()
        tsched.step()
    assert sched.get_last_lr() == [min_lr, min_lr]


def test_warmup_cosine_landmarks():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=4, total_steps=12, min_lr=0.1, warmup_start_lr=0.2)
    lrs = [sched.get_last_lr()[0]] + [(sched.step(), sched.get_last_lr()[0])[1] for _ in range(13)]
    assert lrs[0] == 0.2 and lrs[2] == pytest.approx(0.6) and lrs[4] == 1.0
    assert lrs[8] == pytest.approx(0.55) and lrs[12] == pytest.approx(0.1) and lrs[13] == 0.1
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(opt, warmup_steps=5, total_steps=5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    r = np.random.default_rng(3)
    params = [Parameter(np.zeros(s)) for s in SHAPES] + [Parameter(np.zeros(2))]
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES] + \
              [torch.zeros(2, dtype=torch.float64, requires_grad=True)]
    for p, tp in zip(params[:3], tparams[:3]):
        p.grad = r.standard_normal(p.shape)
        tp.grad = torch.from_numpy(p.grad.copy())
    total = clip_grad_norm(params, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
    assert total == pytest.approx(float(want), rel=1e-12)
    assert (total > max_norm) == (max_norm == 0.5)
    for p, tp in zip(params[:3], tparams[:3]):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=0)
    assert params[3].grad is None


def test_weight_decay_groups_follow_the_recipe():
    model = T2T_ViT(img_size=32, num_classes=10, embed_dim=16, depth=1, num_heads=2, token_dim=8, qkv_bias=True)
    no_decay, decay = param_groups_for_weight_decay(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert "cls_token" in nd and "pos_embed" not in nd | d                 # pos_embed is fixed
    assert "blocks.0.attn.qkv.bias" in nd and "norm.weight" in nd and "head.bias" in nd
    assert "blocks.0.attn.qkv.weight" in d and "head.weight" in d
    by_name = dict(model.named_parameters())
    assert all(by_name[n].ndim >= 2 for n in d)
    trainable = {n for n, p in by_name.items() if p.requires_grad}
    assert nd | d == trainable and not nd & d
    AdamW([no_decay, decay], lr=1e-3)                                     # usable as given
