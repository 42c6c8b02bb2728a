"""minit2t.exercises: right solutions pass, wrong ones fail with the right diagnosis; the hint ladder,
reveal and solution.

The right solutions (tests/exercise_solutions.py) are plain NumPy (plus math), written apart from the
library. Legend: as in minit2t/exercises/.
"""
import inspect

import numpy as np
import pytest

import exercise_solutions as sol
import minit2t as mt
from exercise_solutions import failure, fold, gelu_backward, layer_norm_backward, phi, t2t_attention, unfold
from minit2t import exercises as ex
from minit2t.models.token_transformer import TokenAttention


# ---- right solutions ------------------------------------------------------------

NAMES = ["adamw_step", "backprop", "cross_entropy_backward", "fold", "gelu_backward", "layer_norm_backward", "prm_exp",
         "restructurize", "sinusoid_table", "softmax_backward", "t2t_attention", "t2t_module", "unfold",
         "warmup_cosine"]
RIGHT = {name: getattr(sol, name) for name in NAMES}


def test_every_exercise_has_a_right_solution_here():
    assert sorted(RIGHT) == ex.list_exercises()


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_solution_passes(name, capsys):
    assert ex.check(name, RIGHT[name]) == f"{name}: 25 cases passed"
    assert capsys.readouterr().out == f"{name}: 25 cases passed\n"


def test_attention_reference_is_the_model_layer():
    """The exercise's reference is what TokenAttention computes (float64, the release's scale)."""
    args = ex.EXERCISES["t2t_attention"].draw(np.random.default_rng(1), 1)
    B, T, Din = args["x"].shape
    layer = TokenAttention(dim=Din, in_dim=args["wproj"].shape[0]).to(np.float64)
    layer.load_state_dict({"qkv.weight": args["wqkv"], "proj.weight": args["wproj"], "proj.bias": args["bproj"]})
    with mt.no_grad():
        out = layer(mt.tensor(args["x"])).data
    np.testing.assert_allclose(out, ex.EXERCISES["t2t_attention"].reference(**args), rtol=1e-12, atol=1e-12)


# ---- wrong solutions: the diagnosis ----------------------------------------------

def test_layer_norm_missing_mean_term_names_gx_and_the_error():
    def wrong(g, x, weight, eps):
        rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
        xhat = (x - x.mean(-1, keepdims=True)) * rstd
        gx, gw, gb = layer_norm_backward(g, x, weight, eps)
        dxhat = g * weight
        return (dxhat - xhat * (dxhat * xhat).mean(-1, keepdims=True)) * rstd, gw, gb
    msg = failure("layer_norm_backward", wrong)
    assert msg.startswith("layer_norm_backward, case ")
    assert "output gx: max abs error" in msg and "at index" in msg
    assert "relative error" in msg or "expected all zeros" in msg
    assert "g (" in msg and "x (" in msg and "weight (" in msg


def test_layer_norm_swapped_outputs_are_named():
    def wrong(g, x, weight, eps):
        gx, gw, gb = layer_norm_backward(g, x, weight, eps)
        return gx, gb, gw
    msg = failure("layer_norm_backward", wrong)
    assert "output gweight" in msg and "matches the expected gbias (outputs swapped?)" in msg


def test_factor_hint():
    def wrong(g, x, weight, eps):
        gx, gw, gb = layer_norm_backward(g, x, weight, eps)
        return gx, gw, 2 * gb
    assert "output gbias" in (msg := failure("layer_norm_backward", wrong)) and "off by a factor of 2" in msg


def test_wrong_number_of_outputs():
    msg = failure("layer_norm_backward", lambda g, x, weight, eps: layer_norm_backward(g, x, weight, eps)[:2])
    assert "returned 2 outputs, expected 3 (gx, gweight, gbias)" in msg


def test_softmax_without_the_subtraction():
    msg = failure("softmax_backward", lambda g, y: y * g)
    assert "output ga: max abs error" in msg and "y (" in msg


def test_gelu_without_the_pdf_term():
    msg = failure("gelu_backward", lambda g, a: g * phi(a))
    assert "output ga: max abs error" in msg


def test_float32_output_names_the_dtype():
    msg = failure("gelu_backward", lambda g, a: gelu_backward(g, a).astype(np.float32))
    assert "dtype float32, expected float64" in msg


def test_unfold_with_the_wrong_channel_order():
    def wrong(x, k, s, p):                                   # rows (kernel row, kernel column, channel)
        B, C = x.shape[:2]
        cols = unfold(x, k, s, p)
        return cols.reshape(B, C, k * k, -1).transpose(0, 2, 1, 3).reshape(cols.shape)
    msg = failure("unfold", wrong)
    assert "output cols: max abs error" in msg and "the right values in the wrong places" in msg


def test_unfold_ignoring_padding_gives_both_shapes():
    msg = failure("unfold", lambda x, k, s, p: unfold(x, k, s, 0))
    assert "output cols: shape (" in msg and ", expected (" in msg and "p=" in msg


def test_wrong_shape_transposed_names_both_shapes_and_the_swap():
    msg = failure("unfold", lambda x, k, s, p: np.swapaxes(unfold(x, k, s, p), 1, 2))
    got, want = msg.split("output cols: shape ")[1].split(", expected ")
    assert got.startswith("(") and want.startswith("(") and "last two axes are swapped" in msg


def test_fold_overwriting_instead_of_summing():
    def wrong(cols, H, W, k, s, p):
        B, Ckk, _ = cols.shape
        Ho, Wo = sol.grid(H, W, k, s, p)
        xp = np.zeros((B, Ckk // (k * k), H + 2 * p, W + 2 * p))
        for n in range(Ho * Wo):
            r, c = divmod(n, Wo)
            xp[:, :, r * s:r * s + k, c * s:c * s + k] = cols[:, :, n].reshape(B, -1, k, k)
        return xp[:, :, p:p + H, p:p + W]
    assert "output x: max abs error" in failure("fold", wrong)


def test_attention_without_the_value_skip():
    def wrong(x, wqkv, wproj, bproj, scale):
        v = np.split(x @ wqkv.T, 3, axis=-1)[2]
        return t2t_attention(x, wqkv, wproj, bproj, scale) - v
    msg = failure("t2t_attention", wrong)
    assert "output out: max abs error" in msg and "relative error" in msg and "hint" not in msg
    assert "wqkv (" in msg and "scale=" in msg


def test_a_raising_solution_is_reported_with_its_case():
    def wrong(x, wqkv, wproj, bproj, scale):
        raise ValueError("not yet")
    msg = failure("t2t_attention", wrong)
    assert msg.startswith("t2t_attention, case 0 of 25 (x (1, 1, 1)")
    assert msg.endswith("raised ValueError: not yet") and "\n" not in msg


def test_nan_output():
    assert "output ga: max abs error nan" in failure("gelu_backward", lambda g, a: g * np.nan)


def test_none_output():
    assert "output ga: got None" in failure("softmax_backward", lambda g, y: None)


# ---- names, determinism, the cases drawn -----------------------------------------

@pytest.mark.parametrize("call", [lambda: ex.check("layernorm", layer_norm_backward), lambda: ex.describe("nope")])
def test_bad_name_lists_the_names(call):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and all(name in msg for name in ex.list_exercises())


def test_describe_gives_signature_and_shapes():
    for name in ex.list_exercises():
        assert ex.describe(name).startswith(name + "(") and "->" in ex.describe(name)


def test_check_is_deterministic_for_a_seed():
    wrong = lambda g, y: y * g                                            # noqa: E731
    assert failure("softmax_backward", wrong, seed=3) == failure("softmax_backward", wrong, seed=3)
    seen = [[], []]
    for run in seen:
        ex.check("unfold", lambda x, k, s, p: run.append((x.shape, k, s, p)) or unfold(x, k, s, p), seed=5)
    assert seen[0] == seen[1]


def test_cases_cover_edges():
    seen = []
    ex.check("layer_norm_backward", lambda g, x, weight, eps: seen.append(x) or layer_norm_backward(g, x, weight, eps))
    assert all(n == 1 for n in seen[0].shape)
    assert any(x.ndim >= 3 for x in seen) and any(x.shape[-1] % 2 == 1 and x.shape[-1] > 1 for x in seen)
    assert any(not x.flags.c_contiguous for x in seen) and any(x.flags.c_contiguous for x in seen)
    assert all(x.dtype == np.float64 for x in seen)


# ---- the hint ladder, reveal, solution, an unwritten body ------------------------

def test_hint_climbs_the_ladder_then_stays_on_the_code(capsys, monkeypatch):
    monkeypatch.setattr(ex, "_given", {})
    printed = []
    for _ in range(4):
        ex.hint("fold")
        printed.append(capsys.readouterr().out)
    assert printed[0].startswith("fold, hint 1 of 3: ") and ex.EXERCISES["fold"].hints[0][:30] in printed[0]
    assert printed[1].startswith("fold, hint 2 of 3: ") and "+=" in printed[1]
    assert printed[2].startswith("fold, hint 3 of 3: the library's code") and "def fold(cols, H, W, k, s, p)" in printed[2]
    assert printed[3] == printed[2]


def test_hint_at_a_given_level(capsys, monkeypatch):
    monkeypatch.setattr(ex, "_given", {})
    ex.hint("prm_exp", 2)
    assert capsys.readouterr().out.startswith("prm_exp, hint 2 of 3: ")
    ex.hint("prm_exp")                                                  # the next after 2: the code
    assert "def prm_exp(self, x)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="hint level must be 1, 2 or 3"):
        ex.hint("prm_exp", 4)


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_two_hints_and_a_readable_source(name, capsys):
    hints = ex.EXERCISES[name].hints
    assert len(hints) == 2 and all(len(h) > 40 for h in hints) and hints[0] != hints[1]
    ex.reveal(name)
    out = capsys.readouterr().out
    for obj in ex.EXERCISES[name].source:
        assert inspect.getsource(obj) in out and obj.__module__.startswith("minit2t.")
        assert not obj.__module__.startswith("minit2t.exercises")        # the library's code, not a wrapper


@pytest.mark.parametrize("name", NAMES)
def test_solution_is_the_reference_and_passes(name, capsys):
    assert ex.solution(name) is ex.EXERCISES[name].reference
    assert ex.check(name, ex.solution(name), cases=5) == f"{name}: 5 cases passed"


@pytest.mark.parametrize("name, fn, tail", [
    ("unfold", lambda x, k, s, p: None, "output cols: got None (no return yet? ex.hint('unfold') gives a hint)"),
    ("adamw_step", lambda *args: None, "returned None, expected a tuple of 3 outputs (p, m, v) (no return yet?"),
    ("warmup_cosine", lambda *args: None, "output lrs: got None (no return yet?")])
def test_an_unwritten_body_says_so(name, fn, tail):
    def body_of_dots(*args):
        ...
    assert tail in failure(name, fn)
    assert "no return yet?" in failure(name, body_of_dots)


def test_checking_the_t2t_module_leaves_the_random_stream_alone():
    mt.manual_seed(3)
    first = mt.random.generator().random()
    mt.manual_seed(3)
    ex.check("t2t_module", sol.t2t_module, cases=3)
    assert mt.random.generator().random() == first
