"""Attention budgets (approx/budget.py) under both accountings of a random feature, and
benchmarks/bench_attention.py run end to end at tiny sizes: --parts memory, the accuracy part over
several seeds (mean +- sd), the error part in both accountings. No --data: the shipped test sample."""
import json
import os
import subprocess
import sys

import pytest

from minit2t.approx import AttentionSpecError
from minit2t.approx.budget import entries_per_query, sb_split, settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("spec, one, two", [
    ("local:window=98", 98, 98),                                     # the Scatterbrain configs' 1/32 at 3136 tokens
    ("performer:features=49", 49, 98),
    ("scatterbrain:window=49,features=24", 73, 97),
    ("lsh:bucket=49,hashes=2", 196, 196),
])
def test_entries_per_query_in_both_accountings(spec, one, two):
    assert entries_per_query(spec) == entries_per_query(spec, feature_cost=1) == one
    assert entries_per_query(spec, feature_cost=2) == two


def test_entries_per_query_per_layer_exact_and_errors():
    spec = "scatterbrain:window=[49,12],features=[24,6]"
    assert [entries_per_query(spec, layer, 2) for layer in (0, 1)] == [97, 24]
    assert entries_per_query("exact", tokens=256) == 256
    with pytest.raises(AttentionSpecError, match="tokens=T"):
        entries_per_query("exact")
    with pytest.raises(ValueError, match=r"feature_cost must be one of \(1, 2\).*got 3"):
        entries_per_query("performer:features=8", feature_cost=3)


@pytest.mark.parametrize("cost", [1, 2])
@pytest.mark.parametrize("budget", [8, 24, 49, 98, 196])
def test_settings_cost_about_the_budget(budget, cost):
    """Every method's setting costs the budget, to within one feature's rounding, in its accounting."""
    rows = settings((budget,), cost)
    assert [r[0] for r in rows][:2] == ["local", "performer"] and rows[-1][0] == "lsh"
    for method, _, spec in rows:
        got = entries_per_query(spec, feature_cost=cost)
        slack = 4 if method == "lsh" else 2 * cost                    # lsh: 2 b n rounded down; sb: m even
        assert budget - slack <= got <= budget, (method, spec, got)
    w, m = sb_split(98, 1, 2)
    assert (w, m) == (50, 24) and m % 2 == 0                          # 1:1 in memory: 50 band + 2 x 24


def bench(tmp_path, *args):
    out = tmp_path / "attention.json"
    run = subprocess.run([sys.executable, "benchmarks/bench_attention.py", *args, "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(out) as f:
        return run.stdout, json.load(f)


def test_memory_part_runs_and_measures(tmp_path):
    """Traced (NumPy) and resident (a fresh process's peak RSS: C scratch too) peaks; the fused exact
    module's one-head T x T scores live in C scratch, which only the resident peak sees."""
    T = 512
    stdout, res = bench(tmp_path, "--parts", "memory", "--mem-tokens", str(T), "--mem-batch", "1,2", "--rounds", "1")
    rows = res["memory_time"]["rows"]
    assert [(r["batch"], r["part"], r["attention"].split(" (")[0]) for r in rows] == [
        (B, part, name) for B in (1, 2) for part in ("core", "module") for name in ("exact", "scatterbrain 49+24")]
    threads = res["memory_time"]["threads"]
    for r in rows[2::4]:                                              # the exact module: how its attention ran
        assert r["attention"] == ("exact (fused)" if r["batch"] >= threads else "exact (composed)")
        if r["attention"] == "exact (fused)" and r["resident_mib"] is not None:
            assert r["resident_mib"] * 2 ** 20 >= 4 * T * T           # one head's scores, in C scratch
    assert all(r["tokens"] == T and r["ms"] > 0 for r in rows)
    assert rows[0]["peak_mib"] * 2 ** 20 >= 4 * T * T                  # exact's core holds a T x T float32
    if os.access("/proc/self/clear_refs", os.W_OK):
        assert rows[0]["resident_mib"] * 2 ** 20 >= 4 * T * T
    assert res["memory_time"]["cpu"] and "--parts memory" in res["memory_time"]["command"]
    assert "error" not in res and "accuracy" not in res


def test_accuracy_part_over_seeds_gives_mean_and_sd(tmp_path):
    stdout, res = bench(tmp_path, "--parts", "accuracy", "--limit", "40", "--fractions", "1/8", "--seeds", "0,3")
    table = res["accuracy"]["t2t_vit_cifar_8ep"]
    exact, *rows = table["rows"]
    assert exact["spec"] == "exact" and exact["seeds"] is None and exact["delta_points"] == 0
    sb = [r for r in rows if r["spec"] == "scatterbrain:window=[22,6],features=[10,2]"]
    assert len(sb) == 1 and sb[0]["seeds"] == [0, 3] and len(sb[0]["deltas"]) == 2
    assert sb[0]["delta_points"] == pytest.approx(sum(sb[0]["deltas"]) / 2)
    assert sb[0]["delta_sd"] == pytest.approx(abs(sb[0]["deltas"][0] - sb[0]["deltas"][1]) / 2 ** 0.5)
    assert f"{sb[0]['delta_points']:+.2f} +- {sb[0]['delta_sd']:.2f}" in stdout


@pytest.mark.parametrize("args, message", [(["--seeds", "0,0"], "--seeds: expected distinct whole numbers"),
                                           (["--feature-cost", "3"], "--feature-cost: expected one of"),
                                           (["--fractions", "2/1"], "--fractions: expected fractions"),
                                           (["--parts", "speed"], "--parts: expected some of")])
def test_bad_arguments_are_one_line_errors(args, message):
    run = subprocess.run([sys.executable, "benchmarks/bench_attention.py", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
