"""Token reduction (minit2t.reduction): ToMe, EViT and MCTF in the backbone of a T2T-ViT.

  parity       float64, against tests/torch_reduction.py (an independent PyTorch transcription
               of the three reference repositories): final tokens, logits, sizes, sources, the
               gradient of every parameter and of the images; MCTF's consistency loss
  properties   hypothesis: sizes add up to the original token count, traced sources partition
               the original tokens, the cls token is never merged, r = 0 / keep = 1 change
               nothing, EViT ignores the order of the non-cls tokens, ToMe / MCTF the order of
               the A tokens (as far as their output order allows: see the test)
  specs        parsing, round trips, the errors; reduce_tokens in place and undone
  backends     the C (and OpenCL) backend against NumPy, float32

Legend: B batch, N0 tokens into the backbone, N into a block, M out, D embed dim, h heads,
Na/Nb tokens in A = x[:, 0::2] / B = x[:, 1::2], C classes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minit2t as mt                                                         # noqa: E402
from minit2t.backends import get_backend, set_backend                        # noqa: E402
from minit2t.models.t2t import T2T_ViT                                       # noqa: E402
from minit2t.nn import Block                                                 # noqa: E402
from minit2t.reduction import (ReducedT2T_ViT, SpecError, consistency_loss, format_spec,  # noqa: E402
                               parse_spec, reduce_tokens)
from minit2t.reduction.evit import EViTBlock                                 # noqa: E402
from minit2t.nn.transformer import concat_heads                              # noqa: E402
from minit2t.reduction.mctf import MCTFBlock, fused_attention                # noqa: E402
from minit2t.reduction.merge import TokenState, assignment, bipartite_slots, protect_cls  # noqa: E402
from minit2t.reduction.tome import ToMeBlock                                 # noqa: E402

import torch_reduction as tr                                                 # noqa: E402
from helpers import relative_error                                           # noqa: E402
from strategies import (backbone_cases, reducing_block_cases, reduction_specs,  # noqa: E402
                        zero_reduction_specs)

SMALL = dict(embed_dim=32, depth=4, num_heads=2, token_dim=8)   # t2t_vit_cifar's shape: 65 tokens, 4 blocks
F64_FORWARD, F64_GRAD = 1e-10, 1e-9


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The torch side runs many tiny ops: one thread is ~50x faster than two on a loaded 2-core
    machine (the threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(module, seed=0):
    """Weights off their init, so attention is far from uniform and every parameter matters:
    matrices N(0, 1/fan_in), LayerNorm scales 1 + N(0, 0.01), biases and cls token N(0, 0.01 / 0.25)."""
    rng = np.random.default_rng(seed)
    sd = module.state_dict()
    for k, v in sd.items():
        if k == "pos_embed":
            continue
        if k.endswith("bias"):
            sd[k] = 0.1 * rng.standard_normal(v.shape)
        elif k == "cls_token":
            sd[k] = 0.5 * rng.standard_normal(v.shape)
        elif v.ndim == 1:
            sd[k] = 1 + 0.1 * rng.standard_normal(v.shape)
        else:
            sd[k] = rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[1:]))
    module.load_state_dict(sd)
    return module


def small_model(dtype=np.float64, seed=0, **over):
    """A t2t_vit_cifar-shaped model (4 blocks, 65 tokens) with randomized weights."""
    return randomize(mt.create_model("t2t_vit_cifar", **{**SMALL, **over}).to(dtype), seed).eval()


def images(B=2, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((B, 3, 32, 32)).astype(dtype)   # (B, 3, H, W)


def assert_rel(got, want, tol, what):
    err = relative_error(got, want)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:g}"


# ---- parity with the torch transcription -----------------------------------------------------
# spec -> the same reduction, built the torch transcription's way (4 blocks)
PARITY = {
    "tome:r=8": lambda t: tr.tome(t, [8, 8, 8, 8]),
    "tome:r=[0,4,16],prop=0": lambda t: tr.tome(t, [0, 4, 16, 0], prop=False),
    "tome:r=[3,5,2,7]": lambda t: tr.tome(t, [3, 5, 2, 7]),
    "tome:r=[40,16,8,4]": lambda t: tr.tome(t, [40, 16, 8, 4]),          # 65, 33, 17, 9, 5: half binds
    "evit:keep=0.7": lambda t: tr.evit(t, 0.7, at=[1, 2, 3]),
    "evit:keep=0.5,fuse=mean,at=[0,2]": lambda t: tr.evit(t, 0.5, at=[0, 2], fuse="mean"),
    "evit:keep=0.6,fuse=drop,at=[1,3]": lambda t: tr.evit(t, 0.6, at=[1, 3], fuse="drop"),
    "evit:keep=0.8,fuse=sum,at=[0,1,2,3],prop=1": lambda t: tr.evit(t, 0.8, at=[0, 1, 2, 3], prop=True),
    "mctf:r=8": lambda t: tr.mctf(t, [0, 8, 8, 8]),
    "mctf:r=[0,1,6,9],bidirectional=0": lambda t: tr.mctf(t, [0, 1, 6, 9], bidirection=False),
    "mctf:r=[1,5,7,3]": lambda t: tr.mctf(t, [1, 5, 7, 3]),                # r=1: B into A only
    "mctf:r=7,tau_sim=0": lambda t: tr.mctf(t, [0, 7, 7, 7], tau_sim=0),
    "mctf:r=9,tau_info=0,tau_size=0": lambda t: tr.mctf(t, [0, 9, 9, 9], tau_info=0, tau_size=0),
    "mctf:r=8,tau_size=0,prop=0,bidirectional=0": lambda t: tr.mctf(t, [0, 8, 8, 8], tau_size=0, prop=False,
                                                                    bidirection=False),
    "mctf:r=0.2": lambda t: tr.mctf(t, [0, 0.2, 0.2, 0.2]),
    "mctf:r=[0,32,16,8]": lambda t: tr.mctf(t, [0, 32, 16, 8]),           # 65, 33, 17, 10: "keep 10" binds
}


WITH_QKV_BIAS = {"tome:r=8", "evit:keep=0.7", "mctf:r=8", "mctf:r=[1,5,7,3]"}   # MCTF slices q, k, v apart


def pair(spec):
    """(minit2t model reduced by spec, the torch transcription with the same weights)."""
    m = small_model(qkv_bias=spec in WITH_QKV_BIAS)
    t = tr.from_minit2t(m)
    return reduce_tokens(m, spec), PARITY[spec](t)


@pytest.mark.parametrize("spec", list(PARITY))
def test_forward_parity(spec):
    """Final tokens, sizes and every block's sources equal torch's; logits to 1e-10."""
    m, t = pair(spec)
    x = images()
    tokens, state = m.forward_tokens(m.embed(mt.tensor(x)), trace=True)   # (B, M, D)
    with torch.no_grad():
        xt = torch.tensor(x)
        want, info = t.forward_tokens(t.embed(xt), trace=True)
        logits = t(xt).numpy()
    assert tokens.shape == tuple(want.shape) and tokens.shape[1] < 65, tokens.shape
    assert_rel(tokens.data, want.numpy(), F64_FORWARD, "final tokens")
    assert_rel(m(mt.tensor(x)).data, logits, F64_FORWARD, "logits")
    assert len(state.sources) == len(info.sources) == 4
    for i, (got, ref) in enumerate(zip(state.sources, info.sources)):
        assert np.array_equal(got, ref.numpy()), f"sources after block {i}"
    assert np.array_equal(state.sizes(tokens), info.size[..., 0].numpy())


@pytest.mark.parametrize("spec", list(PARITY))
def test_gradient_parity(spec):
    """<logits, R> backward: every parameter's gradient and the images' match torch's to 1e-9 (the
    EViT fusion's through the attention probabilities; MCTF's pooling weights detached)."""
    m, t = pair(spec)
    x = images()
    R = np.random.default_rng(2).standard_normal((2, 10))                 # (B, C)
    xm = mt.tensor(x, requires_grad=True)
    (m(xm) * mt.tensor(R)).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    (t(xt) * torch.tensor(R)).sum().backward()
    assert_rel(xm.grad, xt.grad.numpy(), F64_GRAD, "images")
    mine = dict(m.named_parameters())
    theirs = dict(t.t.named_parameters())
    assert sorted(mine) == sorted(theirs)
    for name, p in theirs.items():
        if p.grad is None:                                                # pos_embed: frozen
            assert mine[name].grad is None, name
            continue
        assert mine[name].grad is not None, f"{name}: no gradient"
        assert_rel(mine[name].grad, p.grad.numpy(), F64_GRAD, name)


def test_evit_gradient_reaches_the_fusion_weights():
    """The fused token's gradient path through the attention probabilities matters: torch with
    those weights detached disagrees with minit2t, so the gradient parity above checks that path."""
    m, t = pair("evit:keep=0.5,fuse=mean,at=[0,2]")
    x = images()
    xm = mt.tensor(x, requires_grad=True)
    m(xm).sum().backward()
    for detach in (False, True):
        for blk in t.rblocks:
            blk.detach_weights = detach
        xt = torch.tensor(x, requires_grad=True)
        t(xt).sum().backward()
        err = relative_error(xm.grad, xt.grad.numpy())
        assert err > 1e-6 if detach else err <= F64_GRAD, (detach, err)


@pytest.mark.parametrize("spec, build, r", [
    ("tome:r=[0,4,16]", lambda t: tr.tome(t, [0, 4, 16, 0]), 3),
    ("mctf:r=8", lambda t: tr.mctf(t, [0, 8, 8, 8]), 5),
    ("mctf:r=8", lambda t: tr.mctf(t, [0, 8, 8, 8]), 0),
])
def test_r_override_parity(spec, build, r):
    """forward_tokens(x, r): MCTF's teacher pass, r in every block that merges, as torch's."""
    m = small_model()
    t = build(tr.from_minit2t(m))
    reduce_tokens(m, spec)
    x = images()
    tokens, _ = m.forward_tokens(m.embed(mt.tensor(x)), r=r)
    with torch.no_grad():
        want, _ = t.forward_tokens(t.embed(torch.tensor(x)), r=r)
    assert tokens.shape == tuple(want.shape)
    assert_rel(tokens.data, want.numpy(), F64_FORWARD, "teacher tokens")


@pytest.mark.parametrize("threshold, confident", [(0.4, 3), (0.05, 4), (0.99, 0)])
def test_consistency_loss_parity(threshold, confident):
    """Value and gradient (w.r.t. the student) as engine.train_one_epoch's; the teacher gets none.
    When no sample is confident minit2t returns None where the reference adds a 0."""
    rng = np.random.default_rng(3)
    student, teacher = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))  # (B, D)
    logits = 3 * rng.standard_normal((6, 5))                               # (B, C)
    labels = rng.integers(0, 5, 6)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert (p[np.arange(6), labels] > threshold).sum() == confident       # of 6 samples
    s, te = mt.tensor(student, requires_grad=True), mt.tensor(teacher, requires_grad=True)
    got = consistency_loss(s, te, mt.tensor(logits), labels, threshold, weight=3.0)
    st_, tt = torch.tensor(student, requires_grad=True), torch.tensor(teacher, requires_grad=True)
    want = tr.consistency_loss(st_, tt, torch.tensor(logits), torch.tensor(labels), threshold, weight=3.0)
    if not confident:
        assert got is None and want.item() == 0.0
        return
    assert abs(got.item() - want.item()) <= 1e-12 * abs(want.item())
    got.backward()
    want.backward()
    assert_rel(s.grad, st_.grad.numpy(), 1e-12, "student gradient")
    assert te.grad is None and tt.grad is None


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_consistency_loss_under_mixup_sums_both_labels(mix):
    """Mixed labels: a sample counts when p[y_i] + p[y_{B-1-i}] > threshold, as engine.py's
    confidence_score under mixup. Samples 0 and 3 mix classes 1 and 2, and the student gives each
    0.3: the argmax of the mixed label alone (0.3) drops them, the sum (0.6) keeps them; samples
    1 and 2 mix class 4 with itself at 0.25: counted twice, 0.5 passes; the others fail."""
    rng = np.random.default_rng(0)
    hard = np.array([1, 4, 4, 2])                                             # 0 <-> 3, 1 <-> 2
    images = rng.random((4, 3, 8, 8)).astype(np.float32)
    if mix == "mixup":
        _, mixed = mt.data.transforms.mixup(images, hard, 0.6, 5, 0.1)
    else:
        _, mixed = mt.data.transforms.cutmix(images, hard, 0.6, rng, 5, 0.1)
    p = np.array([[0.1, 0.3, 0.3, 0.2, 0.1], [0.25, 0.25, 0.15, 0.1, 0.25],
                  [0.2, 0.25, 0.2, 0.1, 0.25], [0.1, 0.3, 0.3, 0.2, 0.1]])
    logits = mt.tensor(np.log(p))
    assert (p[np.arange(4), mixed.argmax(axis=1)] < 0.4).all()               # argmax alone: none passes
    student, teacher = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    got = consistency_loss(mt.tensor(student), mt.tensor(teacher), logits, mixed, 0.4, weight=3.0)
    gap = ((teacher - student) ** 2).mean(axis=1)                             # (B,)
    assert consistency_loss(mt.tensor(student), mt.tensor(teacher), logits, mixed.argmax(axis=1)) is None
    assert got is not None and abs(got.item() - 3.0 * gap.mean()) <= 1e-12 * got.item()   # all four pass
    p[1:3, 4] = 0.15                                                          # 2 x 0.15 < 0.4: 1 and 2 drop
    got = consistency_loss(mt.tensor(student), mt.tensor(teacher), mt.tensor(np.log(p / p.sum(1, keepdims=True))),
                           mixed, 0.4, weight=3.0)
    assert abs(got.item() - 3.0 * gap[[0, 3]].mean()) <= 1e-12 * got.item()


# ---- properties ------------------------------------------------------------------------------

def backbone(case):
    """A randomized float64 backbone of case's shape and its N0 input tokens (B, N0, D)."""
    m = mt.create_model("t2t_vit_cifar", embed_dim=case["D"], depth=case["depth"], num_heads=case["heads"],
                        token_dim=4, img_size=8, qkv_bias=True)
    m = randomize(m.to(np.float64), case["seed"]).eval()
    x = np.random.default_rng(case["seed"] + 1).standard_normal((case["B"], case["N0"], case["D"]))
    return m, x


@settings(max_examples=60)
@given(data=backbone_cases(max_tokens=40, max_depth=3).flatmap(
    lambda case: reduction_specs(case["depth"]).map(lambda spec: (case, spec))))
def test_sizes_and_sources_partition_the_tokens(data):
    """After every block: each original token is in exactly one output token (EViT fuse=drop: at
    most one), sizes are the source counts and add up to N0; the cls token stands for itself alone
    and stays at index 0."""
    case, spec = data
    m, x = backbone(case)
    reduce_tokens(m, spec)
    tokens, state = m.forward_tokens(mt.tensor(x), trace=True)
    B, N0 = case["B"], case["N0"]
    assert len(state.sources) == case["depth"]
    drop = "fuse=drop" in spec
    for src in state.sources:                                             # (B, M, N0)
        assert src.shape[0] == B and src.shape[2] == N0
        per_token = src.sum(axis=1)                                       # (B, N0) outputs holding each
        assert (per_token <= 1).all() if drop else (per_token == 1).all(), spec
        assert src[:, 0, 0].all() and not src[:, 0, 1:].any() and not src[:, 1:, 0].any(), "cls merged"
    assert tokens.shape[1] == src.shape[1]
    size = state.sizes(tokens)                                            # (B, M)
    assert np.array_equal(size, src.sum(axis=-1))
    if not drop:
        assert (size.sum(axis=1) == N0).all()


@settings(max_examples=20)
@given(data=backbone_cases(max_depth=2).flatmap(
    lambda case: zero_reduction_specs(case["depth"]).map(lambda spec: (case, spec))))
def test_nothing_reduced_is_the_plain_backbone_exactly(data):
    """r = 0 everywhere / keep = 1: the same arithmetic as the plain blocks, bit for bit."""
    case, spec = data
    m, x = backbone(case)
    want = mt.tensor(x)
    for blk in m.blocks:
        want = blk(want)                                                  # (B, N0, D)
    want = m.norm(want)
    reduce_tokens(m, spec)
    tokens, state = m.forward_tokens(mt.tensor(x))
    assert state.size is None
    assert np.array_equal(tokens.data, want.data)


def reducing_block(method, case):
    """A randomized float64 minit2t Block of case's width in the method's reducing block."""
    blk = randomize(Block(case["D"], case["heads"], mlp_ratio=2.0, qkv_bias=True).to(np.float64), case["seed"])
    return {"tome": ToMeBlock, "evit": EViTBlock, "mctf": MCTFBlock}[method](blk, **case["options"])


def run_block(blk, x, size=None):
    """(output (B, M, D), final sizes (B, M), source (B, M, N)) of a reducing block on x (B, N, D)."""
    state = TokenState(x.shape[0], x.shape[1], trace=True)
    state.size = size
    out = blk(mt.tensor(x), state)
    return out.data, state.sizes(out), state.source


def match_rows(a, b):
    """The permutation p with a[p] == b row for row (to 1e-9), per sample: (B, M)."""
    perms = []
    for ai, bi in zip(a, b):
        d = np.linalg.norm(bi[:, None] - ai[None], axis=-1)               # (M, M)
        p = d.argmin(axis=1)
        assert sorted(p) == list(range(len(p))) and d[np.arange(len(p)), p].max() < 1e-9, "rows differ"
        perms.append(p)
    return np.array(perms)


@given(case=reducing_block_cases("evit"))
def test_evit_ignores_the_order_of_non_cls_tokens(case):
    """EViT's output (cls, the kept tokens by attention rank, the fused token) is the same, to
    rounding, whatever the order of tokens 1..N-1; the sources follow the tokens."""
    blk = reducing_block("evit", case)
    B, N, D = case["B"], case["N"], case["D"]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((B, N, D))
    perm = np.concatenate([[0], 1 + rng.permutation(N - 1)])              # new position j holds old perm[j]
    out, size, source = run_block(blk, x)
    out2, size2, source2 = run_block(blk, x[:, perm])
    np.testing.assert_allclose(out2, out, rtol=0, atol=1e-10)
    assert np.array_equal(size2, size)
    assert np.array_equal(source2[:, :, np.argsort(perm)], source)


@pytest.mark.parametrize("method", ["tome", "mctf"])
@given(data=st.data())
def test_matching_ignores_the_order_of_a_tokens(method, data):
    """ToMe / MCTF blocks, A tokens (positions 2, 4, 6, ...) permuted among themselves (cls kept
    at 0, B tokens in place; sizes permuted with their tokens).

    Invariant: the output's cls row (0) and its B rows (those after the unmerged A tokens: in
    index order for ToMe and one-way MCTF, best pick first for bidirectional MCTF) are the same
    rows at the same positions; the unmerged A rows are the same multiset of rows, in another order
    (they come out sorted by their index, which the permutation changed); each output row keeps
    its size and its source (in original token terms). Not invariant: the order of those A rows."""
    case = data.draw(reducing_block_cases(method), label="case")
    blk = reducing_block(method, case)
    B, N, D, o = case["B"], case["N"], case["D"], case["options"]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((B, N, D))
    merged_before = data.draw(st.booleans(), label="merged before")
    size = rng.integers(1, 4, (B, N)).astype(float) if merged_before else None   # sizes from earlier blocks
    Na = (N + 1) // 2
    perm = np.arange(N)
    perm[2::2] = 2 * (1 + rng.permutation(Na - 1))                        # A tokens but cls shuffled
    out, s, src = run_block(blk, x, size)
    out2, s2, src2 = run_block(blk, x[:, perm], None if size is None else size[:, perm])
    assert out2.shape == out.shape
    if method == "tome":
        r = min(o["r"], (N - 1) // 2)
        unmerged_a = Na - r
    else:
        r = tr.mctf_r(o["r"], N)
        unmerged_a = Na - (r // 2 if o["bidirectional"] else r)
    p = match_rows(out2, out)                                             # out2[b, p[b]] == out[b]
    assert (p[:, 0] == 0).all() and (p[:, unmerged_a:] == np.arange(unmerged_a, out.shape[1])).all()
    assert (np.sort(p[:, :unmerged_a], axis=1) == np.arange(unmerged_a)).all()
    rows = np.arange(B)[:, None]
    assert np.array_equal(s2[rows, p], s)
    assert np.array_equal(src2[:, :, np.argsort(perm)][rows, p], src)


# ---- specs and reduce_tokens -------------------------------------------------------------------

@pytest.mark.parametrize("spec, method, options", [
    ("tome:r=8", "tome", {"r": 8, "prop": True}),
    ("TOME: r = [0, 4,4] , prop=false", "tome", {"r": [0, 4, 4], "prop": False}),
    ("evit:keep=.7,fuse=mean,at=[1,3]", "evit", {"keep": 0.7, "at": [1, 3], "fuse": "mean", "prop": False}),
    ("evit:at=2,keep=1", "evit", {"keep": 1, "at": [2], "fuse": "sum", "prop": False}),
    ("mctf:r=0.25,tau_sim=0,bidirectional=0", "mctf",
     {"r": 0.25, "tau_sim": 0, "tau_info": 20.0, "tau_size": 40.0, "bidirectional": False, "prop": True}),
    ("mctf:tau_info=0.00001", "mctf",
     {"r": 8, "tau_sim": 1.0, "tau_info": 1e-5, "tau_size": 40.0, "bidirectional": True, "prop": True}),
    ("none", "none", {}),
    ("", "none", {}),
])
def test_good_specs_round_trip(spec, method, options):
    assert parse_spec(spec) == (method, options)
    canonical = format_spec(method, options)
    assert parse_spec(canonical) == (method, options)
    assert format_spec(*parse_spec(canonical)) == canonical


@given(spec=reduction_specs(4))
def test_drawn_specs_round_trip(spec):
    method, options = parse_spec(spec)
    assert parse_spec(format_spec(method, options)) == (method, options)


@pytest.mark.parametrize("spec, words", [
    ("tomee:r=8", ["'tomee'", "expected one of none, tome, evit, mctf"]),
    ("tome:k=8", ["'k=8'", "expected r=, prop="]),
    ("none:r=1", ["'r=1'", "expected no options"]),
    ("tome:r", ["'r'", "expected r=, prop="]),
    ("tome:r=abc", ["'abc'", "expected a whole number"]),
    ("tome:r=1.5", ["'1.5'", "expected a whole number"]),
    ("tome:r=-1", ["'-1'", "expected a whole number"]),
    ("mctf:tau_sim=x", ["'x'", "expected a number"]),
    ("mctf:bidirectional=2", ["'2'", "expected 0 or 1"]),
    ("evit:fuse=max", ["'max'", "expected one of sum, mean, drop"]),
    ("evit:keep=[0.5]", ["'[0.5]'", "expected a number, not a list"]),
    ("tome:r=[1,2", ["'tome:r=[1,2'", "unbalanced", "expected"]),
    ("tome:r=1,2]", ["'tome:r=1,2]'", "unbalanced", "expected"]),
    ("tome:r=[[1]]", ["'tome:r=[[1]]'", "unbalanced", "expected"]),
    ("evit:keep=0", ["'0'", "expected a keep rate in (0, 1]"]),
    ("evit:keep=1.5", ["'1.5'", "expected a keep rate in (0, 1]"]),
    (3, ["a token reduction spec is a string", "got int"]),
])
def test_bad_specs_say_what_was_expected_and_what_came(spec, words):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("spec, words", [
    ("evit:at=[1,4]", ["at=[1, 4]", "past the last (3)"]),
    ("tome:r=[1,2,3,4,5]", ["5 values", "4 blocks"]),
    ("mctf:r=[0,1,2,3,4]", ["5 values", "4 blocks"]),
])
def test_specs_that_do_not_fit_the_model(spec, words):
    """Refused by reduce_tokens (they depend on the depth), and the model is left as it was."""
    m = small_model()
    x = mt.tensor(images(1))
    before = m(x).data
    with pytest.raises(SpecError) as info:
        reduce_tokens(m, spec)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert type(m) is T2T_ViT and np.array_equal(m(x).data, before)


def test_reduce_tokens_needs_a_t2t_vit():
    with pytest.raises(TypeError, match="T2T-ViT.*Block"):
        reduce_tokens(Block(8, 2), "tome:r=2")


def test_reduce_in_place_and_none_restores():
    """The same model object, the same parameter objects and state_dict (keys and values) under
    every reduction; "none" gives back the plain class, plain blocks and the exact logits; a second
    reduction replaces the first."""
    m = small_model()
    x = mt.tensor(images())
    plain = m(x).data
    sd = m.state_dict()
    params = dict(m.named_parameters())
    for spec in ["tome:r=8", "evit:keep=0.5,fuse=mean", "mctf:r=[0,4,8]", "none"]:
        assert reduce_tokens(m, spec) is m
        got = m.state_dict()
        assert list(got) == list(sd)
        assert all(np.array_equal(got[k], sd[k]) for k in sd)
        assert all(p is params[n] for n, p in m.named_parameters())
        if spec != "none":
            assert type(m) is ReducedT2T_ViT and not np.allclose(m(x).data, plain)
    assert type(m) is T2T_ViT and all(type(b) is Block for b in m.blocks)
    assert np.array_equal(m(x).data, plain)
    once = reduce_tokens(small_model(), "mctf:r=8")(x).data
    reduce_tokens(m, "tome:r=4")
    assert np.array_equal(reduce_tokens(m, "mctf:r=8")(x).data, once)


# ---- backends ---------------------------------------------------------------------------------

def _on_backend(name, fn):
    previous = get_backend().name
    try:
        set_backend(name)
        return fn()
    finally:
        set_backend(previous)


@pytest.mark.parametrize("spec", ["tome:r=8", "evit:keep=0.6,fuse=mean", "mctf:r=8"])
@pytest.mark.parametrize("backend", ["c", "opencl"])
def test_backend_matches_numpy(backend, spec):
    """float32: the same decisions (sources) and logits / gradients within float32 rounding."""
    try:
        get_backend(backend)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"backend {backend!r} unavailable: {exc}")
    m = reduce_tokens(small_model(np.float32), spec)
    x = images(dtype=np.float32)

    def run():
        m.zero_grad()
        xt = mt.tensor(x, requires_grad=True)
        tokens, state = m.forward_tokens(m.embed(xt), trace=True)
        m.head(tokens[:, 0]).sum().backward()
        return tokens.data.copy(), state.sources, xt.grad.copy(), m.blocks[1].attn.qkv.weight.grad.copy()

    want = _on_backend("numpy", run)
    got = _on_backend(backend, run)
    assert all(np.array_equal(a, b) for a, b in zip(got[1], want[1])), "different merges"
    assert_rel(got[0], want[0], 1e-5, "tokens")
    assert_rel(got[2], want[2], 1e-4, "image gradient")
    assert_rel(got[3], want[3], 1e-4, "qkv gradient")


def test_mctf_fused_map_is_a_distribution_and_the_block_uses_it():
    """fused_attention builds A' = P A Q^T; its rows sum to 1, and proj(A' v) is what the block's
    right-to-left product P (A (Q^T v)) computes."""
    mt.manual_seed(0)
    model = mt.reduction.reduce_tokens(mt.create_model("t2t_vit_cifar", embed_dim=32, depth=2, num_heads=2,
                                                       token_dim=8).to(np.float64), "mctf:r=8")
    blk = model.blocks[1]
    x = mt.tensor(np.random.default_rng(0).standard_normal((2, 65, 32)))
    with mt.no_grad():
        q, k, v = blk.attn.heads(blk.norm1(x))                       # (B, h, N, d)
        attn = blk.attn.probabilities(q, k)                          # (B, h, N, N)
        received, size = attn.data.mean(axis=(1, 2)), np.ones((2, 65))
        slot, M = bipartite_slots(protect_cls(blk.scores(x.data, received, size)), *blk.split(8))
        P = assignment(slot, M, received * size / size.max(axis=-1, keepdims=True))
        fused = fused_attention(attn, slot, P)                       # (B, h, M, M)
        vm = mt.tensor(v.data[:, :, :M])                             # any (B, h, M, d) values
        want = blk.attn.proj(concat_heads(fused @ vm)).data
        got = blk.fused_mix(attn, slot, P, vm).data
    assert fused.shape == (2, 2, M, M) and np.allclose(fused.data.sum(axis=-1), 1.0, atol=1e-12)
    assert relative_error(got, want) < 1e-12


def test_tome_runs_the_fused_attention_with_log_sizes(monkeypatch):
    """ToMe needs only the keys, so its blocks run attention as one op, proportional attention as
    the op's key bias log(size); a hook on a block's softmax sends that block the step-by-step way."""
    import minit2t.reduction.block as block_module
    calls, real = [], block_module.F.attention
    m = reduce_tokens(small_model(), "tome:r=8")
    backbone = m.blocks[0].attn.qkv.weight.shape[0]                         # 3D: not the T2T layers' qkv
    monkeypatch.setattr(block_module.F, "attention", lambda qkv, h, scale, key_bias=None: (
        qkv.shape[-1] == backbone and calls.append(key_bias)) or real(qkv, h, scale, key_bias))
    x = mt.tensor(images())
    want = m(x).data
    assert len(calls) == 4 and calls[0] is None                           # nothing merged before block 0
    assert all(b is not None and b.shape == (2, 65 - 8 * i) for i, b in enumerate(calls[1:], 1))
    np.testing.assert_allclose(np.exp(calls[-1]).sum(axis=1), 65.0)      # the sizes still add up to 65 tokens
    m.blocks[2].attn.softmax.register_forward_hook(lambda *a: None)
    calls.clear()
    assert_rel(m(x).data, want, 1e-12, "logits with block 2 step by step")
    assert len(calls) == 3
