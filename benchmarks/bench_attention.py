"""Attention approximations in the T2T layers: error vs memory budget, accuracy, peak memory and time.

    python benchmarks/bench_attention.py --data ../shared/data/cifar-10-binary.tar.gz
        [--limit N] [--seeds 0,1,2] [--feature-cost 1[,2]] [--fractions 1/16,1/8,1/4] [--rounds 5]
        [--methods local,performer,scatterbrain,lsh] [--mem-tokens 3136] [--mem-batch 1,2]
        [--json benchmarks/results/attention.json] [--quick] [--parts error,accuracy,memory]
With --json, parts not run this time keep their results from the file (each part records its CPU and
command; the accuracy part is kept per model).

Three parts, one process, C backend, float32 as the models run:
 1. Error vs budget on real activations. The input of the first T2T layer's attention (norm1 of the
    soft-split tokens) goes through that layer's own qkv (approx.attention_inputs, a forward hook), and
    each method's attention output y = A v (before the value skip and proj) compared with exact
    softmax(tau q k^T) v: ||y_approx - y_exact|| / ||y_exact|| over the whole batch, tau = the layer's
    scale (input width ** -0.5, as released). Budget = band entries per query (approx/budget.py): local
    window w -> w; lsh bucket b x n = 2 hashes -> 2 b n (b rounded down); a random feature counts as
    --feature-cost entries: 1 (performer m -> m, scatterbrain w + m) or 2, the Scatterbrain configs'
    accounting (phi(q) and phi(k) both stored: performer m -> 2 m, scatterbrain w + 2 m); scatterbrain's
    window and features' cost split 1:1 and 2:1. "1,2" lays the tables out in both (results "error" and
    "error_feature_cost_2"). The random methods (features, hash rotations) are averaged over --seeds.
      (a) the shipped model (--pretrained; t2t_vit_cifar_8ep by default), attention1 (256 tokens),
          CIFAR-10 test images;
      (b) t2t_vit_t_14 at 224 px, attention1 (3136 tokens), CIFAR-10 test images upsampled 7x
          (nearest), RANDOM weights (seed 0): no released ImageNet weights are available offline, so
          its q, k, v are those of an untrained layer on real images;
      (c) trained weights at 3136 tokens: the shipped model's attention1 on CIFAR-10 test images
          upsampled to 112 px (nearest; its first soft split has stride 2: 56 x 56 tokens).
 2. Test accuracy of the shipped model with each method swapped into both T2T layers
    (swap_t2t_attention, no fine-tuning) at --fractions of each layer's keys (attention1 256,
    attention2 64; scatterbrain split 1:1 and 2:1; a feature costing the first --feature-cost), exact
    as the baseline. The random methods run once per seed in --seeds: each seed's drop in points, and
    their mean +- sd (sample sd).
 3. The first T2T attention of t2t_vit_t_14 at --mem-tokens tokens (input width 147 -> q, k, v width 64),
    exact vs scatterbrain at the paper's setting (window 49 + 24 features), forward under no_grad:
    time = median of --rounds runs (taken in turn); peak memory = tracemalloc's peak of traced
    allocations (NumPy's are traced) above the level at the call, the C backend's free pooled buffers
    released first so that every buffer the call uses is a fresh, traced allocation. Measured for the
    attention core (q, k, v given -> y: exact builds the T x T matrix) and for the whole attention module
    (x -> v + proj(y): exact is the model's fused attention, which does not hold T x T).
"""
import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import minit2t as mt  # noqa: E402
from machine import cpu_name, write_json  # noqa: E402  (benchmarks/machine.py)
from minit2t.approx import attention_fn, attention_inputs, exact, relative_error, swap_t2t_attention  # noqa: E402
from minit2t.approx.budget import FEATURE_COSTS, entries_per_query, settings  # noqa: E402
from minit2t.approx.swap import ApproxTokenAttention, make_attention  # noqa: E402
from minit2t.backends import c_backend  # noqa: E402
from minit2t.backends.fusion import may_fuse_attention  # noqa: E402
from minit2t.train import evaluate  # noqa: E402

METHODS = ("local", "performer", "scatterbrain", "lsh")
MEASURED_ON = "t2t_vit_cifar_8ep"                                  # the weights results/attention.json holds


# ---------------------------------------------------------------------------------------------- methods

def method_rows(budgets, feature_cost, paper=None):
    """[(method, label, budget, spec, random?)] for every method at every budget (approx.budget.settings,
    a feature costing `feature_cost` entries), and the paper's Scatterbrain setting; a random method's
    spec takes ",seed=S" (approx.attention_fn builds each)."""
    rows = [(method, label, b, spec, method != "local") for b in budgets
            for method, label, spec in settings((b,), feature_cost)]
    rows.sort(key=lambda r: METHODS.index(r[0]))                   # method by method, budgets in order
    if paper is not None:
        w, m = paper
        spec = f"scatterbrain:window={w},features={m}"
        rows.append(("scatterbrain", f"paper: window {w} + {m} features", entries_per_query(spec, 0, feature_cost),
                     spec, True))
    return rows


# ------------------------------------------------------------------------------------ part 1: error

def error_table(title, q, k, v, tau, budgets, seeds, feature_cost, paper=None):
    T = q.shape[1]
    Q, K, V = mt.tensor(q), mt.tensor(k), mt.tensor(v)
    with mt.no_grad():
        ref = exact(Q, K, V, tau).numpy()
    print(f"\n{title}\n  q, k, v {q.shape} float32, tau = {tau:.5f}; error of y = A v (before the value skip "
          f"and proj), mean over seeds {seeds} (features, hash rotations) for the random methods; budget: band "
          f"entries per query, a random feature counted as {feature_cost}")
    print(f"  {'method':<13}{'setting':<36}{'budget':>7}{'of T':>8}{'rel. error':>12}{'(min..max)':>20}{'s/call':>8}")
    out = []
    for method, label, budget, spec, rand in method_rows(budgets, feature_cost, paper):
        errs, times = [], []
        for s in (seeds if rand else [0]):
            start = time.perf_counter()
            try:
                with mt.no_grad():
                    y = attention_fn(spec + (f",seed={s}" if rand else ""), q.shape[-1])(Q, K, V, tau).numpy()
            except Exception as exc:  # noqa: BLE001 - report and go on (e.g. a budget a method rejects)
                print(f"  {method:<13}{label:<36}{budget:>7}  failed: {type(exc).__name__}: {exc}")
                errs = None
                break
            times.append(time.perf_counter() - start)
            errs.append(relative_error(y, ref))
        if errs is None:
            continue
        row = dict(method=method, setting=label, spec=spec, budget=budget, fraction=budget / T,
                   budget_by_feature_cost={c: entries_per_query(spec, 0, c) for c in FEATURE_COSTS},
                   rel_error=statistics.mean(errs), rel_error_min=min(errs), rel_error_max=max(errs),
                   seeds=len(errs), seconds=statistics.median(times))
        out.append(row)
        spread = f"({min(errs):.4f}..{max(errs):.4f})" if len(errs) > 1 else ""
        print(f"  {method:<13}{label:<36}{budget:>7}{budget / T:>8.3f}{row['rel_error']:>12.4f}{spread:>20}"
              f"{row['seconds']:>8.2f}", flush=True)
    return out


def best_by_budget(rows):
    """{budget: {method: lowest mean error of its settings}}."""
    best = {}
    for r in rows:
        cell = best.setdefault(r["budget"], {})
        cell[r["method"]] = min(cell.get(r["method"], math.inf), r["rel_error"])
    return best


def summary(name, rows):
    print(f"  {name}: best setting per method at each budget")
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    print("  " + f"{'budget':>7}" + "".join(f"{m:>14}" for m in methods) + "   scatterbrain lowest?")
    out = []
    for budget, cell in sorted(best_by_budget(rows).items()):
        if not all(m in cell for m in ("local", "performer", "scatterbrain")):
            continue
        wins = cell["scatterbrain"] < min(cell["local"], cell["performer"])
        out.append(dict(budget=budget, **cell, scatterbrain_below_local_and_performer=wins))
        print("  " + f"{budget:>7}" + "".join(f"{cell[m]:>14.4f}" if m in cell else f"{'-':>14}" for m in methods)
              + f"   {'yes' if wins else 'NO'}")
    return out


def error_inputs(args, images):
    """[(key, title, (q, k, v, tau), budgets, paper setting, facts)]: the three sets of activations."""
    loader = mt.data.DataLoader(images[:args.err_batch], np.zeros(args.err_batch, np.int64), args.err_batch)
    x, _ = next(iter(loader))
    model = mt.pretrained(args.pretrained).eval()
    a = attention_inputs(model, x)
    din = model.tokens_to_token.attention1.attn.dim
    budgets_a = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64]
    budgets_b = [49, 98] if args.quick else [24, 49, 98, 196]
    n = args.big_batch
    near = np.arange(112) * 32 // 112                              # nearest-neighbour rows / columns
    up = images[:n][:, :, near][:, :, :, near]                     # (n, 3, 112, 112)
    c = attention_inputs(model, next(iter(mt.data.DataLoader(up, np.zeros(n, np.int64), n)))[0])
    mt.manual_seed(0)
    big = mt.create_model("t2t_vit_t_14").eval()
    up = images[:n].repeat(7, axis=2).repeat(7, axis=3)           # (n, 3, 224, 224) nearest
    b = attention_inputs(big, next(iter(mt.data.DataLoader(up, np.zeros(n, np.int64), n)))[0])
    din_b = big.tokens_to_token.attention1.attn.dim
    del big
    return [("cifar_attention1", f"(a) {args.pretrained} (shipped weights), attention1: {a[0].shape[1]} tokens, "
             f"input width {din}, {args.err_batch} CIFAR-10 test images", a, budgets_a, None,
             dict(tokens=a[0].shape[1], images=args.err_batch)),
            ("cifar_attention1_112px", f"(c) {args.pretrained} (shipped weights) on {n} CIFAR-10 test images "
             f"upsampled to 112 px, attention1: {c[0].shape[1]} tokens, input width {din}", c, budgets_b, (49, 24),
             dict(tokens=c[0].shape[1], images=n, weights="shipped")),
            ("t2t_vit_t_14_attention1", f"(b) t2t_vit_t_14, RANDOM weights (seed 0; no release weights offline), "
             f"attention1: {b[0].shape[1]} tokens, input width {din_b}, {n} CIFAR-10 test images upsampled to "
             f"224 px", b, budgets_b, (49, 24), dict(tokens=b[0].shape[1], images=n, weights="random (seed 0)"))]


def run_errors(inputs, seeds, feature_cost):
    """The error tables of every set of activations, budgets laid out with a feature costing `feature_cost`."""
    out = dict(feature_cost=feature_cost)
    for key, title, (q, k, v, tau), budgets, paper, facts in inputs:
        rows = error_table(title, q, k, v, tau, budgets, seeds, feature_cost, paper)
        out[key] = dict(facts, rows=rows, best=summary(title[:3], rows))
    return out


# --------------------------------------------------------------------------------- part 2: accuracy

def accuracy_specs(fractions, feature_cost):
    """[(method, spec, fraction)]: exact, then every method at each fraction of both layers' keys."""
    specs = [("exact", "exact", None)]
    for f in fractions:
        specs += [(method, spec, f) for method, _, spec in settings((round(256 * f), round(64 * f)), feature_cost)]
    return specs


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_accuracy(args, images, labels):
    """Test accuracy with each spec swapped in; a random method once per seed: each drop and their mean +- sd."""
    fractions, cost = [1 / 8] if args.quick else args.fractions, args.feature_cost[0]
    n = len(images) if args.limit is None else min(args.limit, len(images))
    print(f"\nAccuracy of the shipped {args.pretrained}, each method in both T2T layers (attention1 256 keys, "
          f"attention2 64), no fine-tuning, {n:,} CIFAR-10 test images; budget fraction = entries kept per "
          f"query / keys, in both layers (a feature counted as {cost}); random methods over seeds {args.seeds}: "
          f"points vs exact, mean +- sd (sample), then each seed's")
    print(f"  {'spec':<48}{'fraction':>9}{'test acc':>10}{'vs exact':>16}   each seed")
    model = mt.pretrained(args.pretrained).eval()
    rows, base = [], None
    for method, spec, frac in accuracy_specs(fractions, cost):
        if method not in args.methods:
            continue
        accs, start = [], time.perf_counter()
        for seed in (args.seeds if method not in ("exact", "local") else [None]):
            try:
                swap_t2t_attention(model, spec if seed is None else f"{spec},seed={seed}")
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"  {spec:<48} failed to swap: {type(exc).__name__}: {exc}")
                break
            accs.append(evaluate(model, images[:n], labels[:n]))
        if not accs:
            continue
        base = accs[0] if method == "exact" else base
        deltas = [100 * (a - base) for a in accs]
        (acc, _), (delta, sd) = mean_sd(accs), mean_sd(deltas)
        row = dict(method=method, spec=spec, fraction=frac,
                   seeds=None if method in ("exact", "local") else list(args.seeds), test_accs=accs, deltas=deltas,
                   test_acc=acc, delta_points=delta, delta_sd=sd, seconds=time.perf_counter() - start)
        rows.append(row)
        fr = "1" if frac is None else f"1/{round(1 / frac)}"
        pm = f"{delta:+.2f} +- {sd:.2f}" if len(accs) > 1 else f"{delta:+.2f}"
        each = "  ".join(f"{d:+.2f}" for d in deltas) if len(accs) > 1 else ""
        print(f"  {spec:<48}{fr:>9}{acc:>10.4f}{pm:>16}   {each}", flush=True)
    swap_t2t_attention(model, "exact")
    return {args.pretrained: dict(images=n, feature_cost=cost, rows=rows, cpu=cpu_name(), command=args.command)}


# --------------------------------------------------------------------------- part 3: memory and time

def traced_peak(fn):
    """Peak traced bytes above the level at the call (the C output pool's free buffers let go first)."""
    c_backend.release_buffers()                                    # so the call's buffers are fresh allocations
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with mt.no_grad():
        out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    del out
    return peak


def exact_module_path(attn, B):
    """How the exact module's attention runs under no_grad on the C backend: F.attention's fused kernel
    (one head per thread, no T x T), its composed form for fewer heads than threads (GEMMs, T x T),
    or the layer's own steps (T x T)."""
    if not may_fuse_attention(attn):
        return "steps"
    return "fused" if B * attn.num_heads >= mt.get_num_threads() else "composed"


def memory_cases(T, B):
    """The four calls measured at batch B: [(part, name, fn)], exact and scatterbrain 49+24, core and module."""
    mt.manual_seed(0)
    attn = mt.create_model("t2t_vit_t_14").eval().tokens_to_token.attention1.attn
    din, E, (w, m), tau = attn.dim, attn.in_dim, (49, 24), float(attn.scale)
    spec = f"scatterbrain:window={w},features={m}"                 # features from seed 0
    sb, sb_mod = attention_fn(spec, E), ApproxTokenAttention(attn, spec, make_attention(
        "scatterbrain", dict(window=w, features=m, seed=0), E))
    x = mt.tensor(np.random.default_rng(0).standard_normal((B, T, din)).astype(np.float32))  # what norm1 gives
    with mt.no_grad():
        qkv = attn.qkv(x).numpy().reshape(B, T, 3, E)
    Q, K, V = (mt.tensor(np.ascontiguousarray(qkv[:, :, i])) for i in range(3))
    return [("core", "exact", lambda: exact(Q, K, V, tau)),
            ("core", f"scatterbrain {w}+{m}", lambda: sb(Q, K, V, tau)),
            ("module", f"exact ({exact_module_path(attn, B)})", lambda: attn(x)),
            ("module", f"scatterbrain {w}+{m}", lambda: sb_mod(x))]


def resident_peak(T, B, case):
    """Bytes of resident memory a fresh process adds for one call of `case` (Linux: the peak RSS reset at the
    call through /proc/self/clear_refs), so that C memory counts too: the kernels' per-thread scratch, which
    tracemalloc does not see. None where /proc/self/clear_refs cannot be written."""
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "--resident-case", str(case),
                          "--mem-tokens", str(T), "--mem-batch", str(B)], capture_output=True, text=True, timeout=600)
    last = run.stdout.strip().splitlines()[-1:] if run.returncode == 0 else []
    return int(last[0]) if last and last[0].isdigit() else None


def resident_case(T, B, case):
    """(in the fresh process) print the resident bytes one call of case `case` adds at its peak."""
    fn = memory_cases(T, B)[case][2]
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                                           # VmHWM := VmRSS
    except OSError:
        return
    before = proc_status("VmRSS")
    with mt.no_grad():
        fn()
    print(proc_status("VmHWM") - before)


def proc_status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def run_memory(args):
    T = args.mem_tokens
    print(f"\nt2t_vit_t_14 attention1 at {T} tokens (input width 147 -> q, k, v width 64), float32, forward under "
          f"no_grad, random weights, {mt.get_num_threads()} threads; time: median of {args.rounds} runs; traced: "
          f"tracemalloc's peak (NumPy); resident: the peak RSS a fresh process adds (C scratch too)")
    print(f"  {'batch':>5}  {'part':<8}{'attention':<24}{'time ms':>10}{'traced MiB':>11}{'resident MiB':>13}"
          f"{'time ratio':>12}{'memory ratio':>14}")
    rows = []
    for B in args.mem_batch:
        rows += memory_rows(memory_cases(T, B), B, T, args.rounds)
    w, m = 49, 24
    entries_exact, entries_sb = T * T, T * (w + m)
    print(f"  for comparison (computed, not measured): attention-matrix entries per image {entries_exact:,} exact vs "
          f"{entries_sb:,} scatterbrain = {100 * (1 - entries_sb / entries_exact):.1f}% fewer; exact (fused) "
          f"holds one head's T x T\n  scores per thread in C scratch (not traced); memory ratio: resident, "
          f"against exact's (traced where resident is not measured)")
    return dict(rows=rows, threads=mt.get_num_threads(),
                computed_entries=dict(exact=entries_exact, scatterbrain=entries_sb))


def memory_rows(cases, B, T, rounds):
    """Time (tracemalloc off: it slows allocation; cases in turn, round after round) then traced peak."""
    times = {i: [] for i in range(len(cases))}
    with mt.no_grad():
        for _, _, fn in cases:
            fn()                                                    # warm-up
        for r in range(rounds):
            order = list(range(len(cases)))
            for i in order[r % len(order):] + order[:r % len(order)]:
                start = time.perf_counter()
                cases[i][2]()
                times[i].append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        peaks = {i: traced_peak(cases[i][2]) for i in range(len(cases))}
    finally:
        tracemalloc.stop()
    resident = {i: resident_peak(T, B, i) for i in range(len(cases))}
    rows = []
    for i, (part, name, _) in enumerate(cases):
        base = 0 if part == "core" else 2
        t, tb = statistics.median(times[i]), statistics.median(times[base])
        r, rb = resident[i], resident[base]
        ratio = r / rb if r is not None and rb else peaks[i] / peaks[base]
        row = dict(part=part, attention=name, batch=B, tokens=T, ms=1e3 * t, peak_mib=peaks[i] / 2 ** 20,
                   resident_mib=None if r is None else r / 2 ** 20, time_ratio=t / tb, memory_ratio=ratio,
                   memory_saved=1 - ratio, times_ms=[1e3 * s for s in times[i]])
        rows.append(row)
        res = "-" if r is None else f"{r / 2 ** 20:.1f}"
        print(f"  {B:>5}  {part:<8}{name:<24}{row['ms']:>10.1f}{row['peak_mib']:>11.1f}{res:>13}"
              f"{row['time_ratio']:>11.2f}x{ratio:>13.3f}x", flush=True)
    return rows


def whole_list(name, low=0, values=None):
    """An argparse type: comma-separated whole numbers >= low, no repeats (and from `values` if given)."""
    def parse(text):
        items = text.split(",")
        if not all(x.strip().isdigit() for x in items) or len(set(items)) < len(items):
            raise argparse.ArgumentTypeError(f"{name}: expected distinct whole numbers separated by commas, "
                                             f"got {text!r}")
        out = [int(x) for x in items]
        if min(out) < low or (values and not set(out) <= set(values)):
            raise argparse.ArgumentTypeError(f"{name}: expected {'one of ' + str(values) if values else f'>= {low}'}"
                                             f" each, got {text!r}")
        return out
    return parse


def names(name, choices):
    """An argparse type: some of `choices`, separated by commas; exact (the baseline) always added."""
    def parse(text):
        out = text.split(",")
        if not set(out) <= set(choices):
            raise argparse.ArgumentTypeError(f"{name}: expected some of {','.join(choices)}, got {text!r}")
        return ("exact", *out)
    return parse


def fractions(text):
    """'1/16,1/8' -> [1/16, 1/8]."""
    out = []
    for item in text.split(","):
        num, _, den = item.partition("/")
        if not (num.isdigit() and den.isdigit() and 0 < int(num) <= int(den)):
            raise argparse.ArgumentTypeError(f"--fractions: expected fractions like 1/8 separated by commas, "
                                             f"got {text!r}")
        out.append(int(num) / int(den))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive or folder (default: as `eval`)")
    p.add_argument("--pretrained", default=MEASURED_ON, metavar="NAME",
                   help=f"the shipped model whose T2T layers are measured (default: {MEASURED_ON})")
    p.add_argument("--limit", type=int, default=None, help="test images for accuracy (default: all)")
    p.add_argument("--seeds", type=whole_list("--seeds"), default=[0, 1, 2], metavar="S,S,...",
                   help="feature / hash seeds of the random methods, for the error tables and the accuracy "
                        "(default: 0,1,2)")
    p.add_argument("--feature-cost", type=whole_list("--feature-cost", values=FEATURE_COSTS), default=[1],
                   metavar="C[,C]", help="band entries a random feature counts as in a budget: 1, 2 (the "
                   "Scatterbrain configs') or 1,2 for error tables in both (approx/budget.py; default: 1)")
    p.add_argument("--fractions", type=fractions, default=[1 / 16, 1 / 8, 1 / 4], metavar="F,F,...",
                   help="fractions of each layer's keys for the accuracy part (default: 1/16,1/8,1/4)")
    p.add_argument("--methods", type=names("--methods", ("exact",) + METHODS), default=("exact",) + METHODS,
                   metavar="M,M,...", help="methods for the accuracy part (default: all; exact always runs)")
    p.add_argument("--err-batch", type=int, default=64, help="CIFAR images for the error at 256 tokens")
    p.add_argument("--big-batch", type=int, default=2, help="images for the error at 3136 tokens")
    p.add_argument("--mem-batch", type=whole_list("--mem-batch", low=1), default=None, metavar="B,B,...",
                   help="batches for memory and time (default: 1 and the thread count: the exact module's "
                        "attention is F.attention's fused kernel only with a head per thread)")
    p.add_argument("--mem-tokens", type=int, default=3136, help="tokens for memory and time (default: 3136)")
    p.add_argument("--rounds", type=int, default=5, help="timed runs per row of memory and time")
    p.add_argument("--parts", default="error,accuracy,memory", help="comma-separated subset to run")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here too")
    p.add_argument("--resident-case", type=int, default=None, help=argparse.SUPPRESS)   # resident_peak's child
    args = p.parse_args(argv)
    if args.resident_case is not None:
        return resident_case(args.mem_tokens, args.mem_batch[0], args.resident_case)
    parts = set(args.parts.split(","))
    if not parts <= {"error", "accuracy", "memory"}:
        p.error(f"--parts: expected some of error,accuracy,memory, got {args.parts!r}")
    args.mem_batch = args.mem_batch or sorted({1, mt.get_num_threads()})
    for name in ("limit", "err_batch", "big_batch", "mem_tokens", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a whole number >= 1, got {getattr(args, name)}")
    if args.quick:
        args.limit = min(args.limit or 500, 500)
        args.seeds, args.err_batch, args.big_batch, args.rounds = args.seeds[:2], 16, 1, 2
    t0 = time.perf_counter()
    print(f"CPU: {cpu_name()}; backend {mt.get_backend().__name__.split('.')[-1]}; "
          f"{mt.get_num_threads()} threads", flush=True)
    args.command = "python benchmarks/bench_attention.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = {"cpu": cpu_name(), "command": args.command}
    stamp = dict(cpu=cpu_name(), command=args.command)
    if parts & {"error", "accuracy"}:
        images, labels = mt.data.load_cifar10(args.data, split="test")
    if "error" in parts:
        inputs = error_inputs(args, images)
        for cost in args.feature_cost:
            out[ERROR_KEYS[cost]] = dict(run_errors(inputs, args.seeds, cost), **stamp)
    if "accuracy" in parts:
        out["accuracy"] = run_accuracy(args, images, labels)
    if "memory" in parts:
        out["memory_time"] = dict(run_memory(args), **stamp)
    out["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {out['seconds']:.0f} s")
    if args.json:
        write_json(args.json, merged(args.json, out))


ERROR_KEYS = {1: "error", 2: "error_feature_cost_2"}                # results' key of each accounting's tables


def merged(path, out):
    """out, on top of the parts of an earlier run in `path` that this run did not redo (each part keeps
    the CPU and command it was measured with; the accuracy part is kept per model)."""
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    for key in (*ERROR_KEYS.values(), "memory_time"):
        if key not in out and key in old:
            out[key] = dict(old[key], cpu=old[key].get("cpu", old.get("cpu")),
                            command=old[key].get("command", old.get("command")))
    acc = old.get("accuracy", {})
    acc = {MEASURED_ON: acc} if "rows" in acc else acc                # one model's table, as first written
    out["accuracy"] = {**acc, **out.get("accuracy", {})}
    return out


if __name__ == "__main__":
    main()
