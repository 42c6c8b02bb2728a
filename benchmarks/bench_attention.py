"""Attention approximations in the T2T layers: error vs memory budget, accuracy, peak memory and time.

    python benchmarks/bench_attention.py --data ../shared/data/cifar-10-binary.tar.gz
        [--limit N] [--seeds 3] [--rounds 5] [--json benchmarks/results/attention.json] [--quick]
        [--parts error,accuracy,memory]
With --json, parts not run this time keep their results from the file (each part records its CPU and
command).

Three parts, one process, C backend, float32 as the models run:
 1. Error vs budget on real activations. The input of the first T2T layer's attention (norm1 of the
    soft-split tokens) goes through that layer's own qkv (approx.attention_inputs, a forward hook), and
    each method's attention output y = A v (before the value skip and proj) compared with exact
    softmax(tau q k^T) v: ||y_approx - y_exact|| / ||y_exact|| over the whole batch, tau = the layer's
    scale (input width ** -0.5, as released). Budget = entries kept per query: local window w -> w;
    performer m features -> m; scatterbrain window w + m features -> w + m (split 1:1 and 2:1 window to
    features, the paper's ratio); lsh bucket b x n = 2 hashes -> 2 b n (b rounded down where the budget is
    not a multiple of 4). The random methods (features, hash rotations) are averaged over --seeds draws.
      (a) the shipped model (--pretrained; t2t_vit_cifar_8ep by default), attention1 (256 tokens),
          CIFAR-10 test images;
      (b) t2t_vit_t_14 at 224 px, attention1 (3136 tokens), CIFAR-10 test images upsampled 7x
          (nearest), RANDOM weights (seed 0): no released ImageNet weights are available offline, so
          its q, k, v are those of an untrained layer on real images;
      (c) trained weights at 3136 tokens: the shipped model's attention1 on CIFAR-10 test images
          upsampled to 112 px (nearest; its first soft split has stride 2: 56 x 56 tokens).
 2. Test accuracy of the shipped model with each method swapped into both T2T layers
    (swap_t2t_attention, no fine-tuning) at 1/16, 1/8, 1/4 of each layer's keys (attention1 256,
    attention2 64; scatterbrain split 1:1 and 2:1), exact as the baseline.
 3. The first T2T attention of t2t_vit_t_14 at 3136 tokens (input width 147 -> q, k, v width 64),
    exact vs scatterbrain at the paper's setting (window 49 + 24 features), forward under no_grad:
    time = median of --rounds runs (taken in turn); peak memory = tracemalloc's peak of traced
    allocations (NumPy's are traced) above the level at the call, the C backend's output pool emptied
    first so that every buffer the call uses is a fresh, traced allocation. Measured for the attention
    core (q, k, v given -> y) and for the whole attention module (x -> v + proj(y)).
"""
import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import minit2t as mt  # noqa: E402
from machine import cpu_name, write_json  # noqa: E402  (benchmarks/machine.py)
from minit2t.approx import attention_fn, attention_inputs, exact, relative_error, swap_t2t_attention  # noqa: E402
from minit2t.train import evaluate  # noqa: E402

LSH_HASHES = 2                                                     # the paper's Reformer setting
MEASURED_ON = "t2t_vit_cifar_8ep"                                  # the weights results/attention.json holds


# ---------------------------------------------------------------------------------------------- methods

def sb_split(budget, ratio):
    """(window, features) of a scatterbrain budget: features even and >= 2, window = the rest."""
    m = max(2, 2 * round(budget / (2 * (ratio + 1))))
    return budget - m, m


def lsh_bucket(budget):
    """The bucket (chunk) size b of an lsh budget 2 b n (n = LSH_HASHES), rounded down, >= 1."""
    return max(1, budget // (2 * LSH_HASHES))


def method_rows(budgets, paper=None):
    """[(method, label, budget, spec, random?)] for every method at every budget; a random method's
    spec takes ",seed=S" (approx.attention_fn builds each)."""
    rows = [("local", f"window {b}", b, f"local:window={b}", False) for b in budgets]
    rows += [("performer", f"{b} features", b, f"performer:features={b}", True) for b in budgets]
    for b in budgets:
        seen = set()
        for ratio, name in ((1, "1:1"), (2, "2:1")):
            w, m = sb_split(b, ratio)
            if (w, m) in seen:                                     # small budgets: both splits alike
                continue
            seen.add((w, m))
            rows.append(("scatterbrain", f"{name}: window {w} + {m} features", b,
                         f"scatterbrain:window={w},features={m}", True))
    if paper is not None:
        w, m = paper
        rows.append(("scatterbrain", f"paper: window {w} + {m} features", w + m,
                     f"scatterbrain:window={w},features={m}", True))
    for b in budgets:
        c = lsh_bucket(b)
        rows.append(("lsh", f"bucket {c} x {LSH_HASHES} hashes ({2 * c * LSH_HASHES} entries)", b,
                     f"lsh:bucket={c},hashes={LSH_HASHES}", True))
    return rows


# ------------------------------------------------------------------------------------ part 1: error

def error_table(title, q, k, v, tau, budgets, seeds, paper=None):
    T = q.shape[1]
    Q, K, V = mt.tensor(q), mt.tensor(k), mt.tensor(v)
    with mt.no_grad():
        ref = exact(Q, K, V, tau).numpy()
    print(f"\n{title}\n  q, k, v {q.shape} float32, tau = {tau:.5f}; error of y = A v (before the value skip "
          f"and proj), mean over {seeds} seeds (features, hash rotations) for the random methods")
    print(f"  {'method':<13}{'setting':<36}{'budget':>7}{'of T':>8}{'rel. error':>12}{'(min..max)':>20}{'s/call':>8}")
    out = []
    for method, label, budget, spec, rand in method_rows(budgets, paper):
        errs, times = [], []
        for s in (range(seeds) if rand else [0]):
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
        row = dict(method=method, setting=label, budget=budget, fraction=budget / T,
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
    methods = [m for m in ("local", "performer", "scatterbrain", "lsh") if any(r["method"] == m for r in rows)]
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


def run_errors(args, images):
    loader = mt.data.DataLoader(images[:args.err_batch], np.zeros(args.err_batch, np.int64), args.err_batch)
    x, _ = next(iter(loader))
    model = mt.pretrained(args.pretrained).eval()
    q, k, v, tau = attention_inputs(model, x)
    din = model.tokens_to_token.attention1.attn.dim
    budgets_a = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64]
    rows_a = error_table(f"(a) {args.pretrained} (shipped weights), attention1: {q.shape[1]} tokens, "
                         f"input width {din}, {args.err_batch} CIFAR-10 test images", q, k, v, tau, budgets_a, args.seeds)
    sum_a = summary("(a)", rows_a)

    n = args.big_batch
    near = np.arange(112) * 32 // 112                              # nearest-neighbour rows / columns
    up = images[:n][:, :, near][:, :, :, near]                     # (n, 3, 112, 112)
    x, _ = next(iter(mt.data.DataLoader(up, np.zeros(n, np.int64), n)))
    q, k, v, tau = attention_inputs(model, x)
    budgets_b = [49, 98] if args.quick else [24, 49, 98, 196]
    rows_c = error_table(f"(c) {args.pretrained} (shipped weights) on {n} CIFAR-10 test images upsampled to 112 px, "
                         f"attention1: {q.shape[1]} tokens, input width {din}", q, k, v, tau, budgets_b, args.seeds,
                         paper=(49, 24))
    sum_c = summary("(c)", rows_c)

    mt.manual_seed(0)
    big = mt.create_model("t2t_vit_t_14").eval()
    up = images[:n].repeat(7, axis=2).repeat(7, axis=3)           # (n, 3, 224, 224) nearest
    x, _ = next(iter(mt.data.DataLoader(up, np.zeros(n, np.int64), n)))
    q, k, v, tau = attention_inputs(big, x)
    din = big.tokens_to_token.attention1.attn.dim
    del big
    rows_b = error_table(f"(b) t2t_vit_t_14, RANDOM weights (seed 0; no release weights offline), attention1: "
                         f"{q.shape[1]} tokens, input width {din}, {n} CIFAR-10 test images upsampled to 224 px",
                         q, k, v, tau, budgets_b, args.seeds, paper=(49, 24))
    sum_b = summary("(b)", rows_b)
    return dict(cifar_attention1=dict(tokens=256, images=args.err_batch, rows=rows_a, best=sum_a),
                cifar_attention1_112px=dict(tokens=3136, images=n, weights="shipped", rows=rows_c, best=sum_c),
                t2t_vit_t_14_attention1=dict(tokens=3136, images=n, weights="random (seed 0)", rows=rows_b,
                                             best=sum_b))


# --------------------------------------------------------------------------------- part 2: accuracy

def accuracy_specs(fractions):
    specs = [("exact", "exact", None)]
    for f in fractions:
        b1, b2 = round(256 * f), round(64 * f)
        specs.append(("local", f"local:window=[{b1},{b2}]", f))
        specs.append(("performer", f"performer:features=[{b1},{b2}]", f))
        seen = set()
        for ratio in (1, 2):                                       # window : features 1:1 and 2:1
            (w1, m1), (w2, m2) = sb_split(b1, ratio), sb_split(b2, ratio)
            if (w1, m1, w2, m2) not in seen:
                seen.add((w1, m1, w2, m2))
                specs.append(("scatterbrain", f"scatterbrain:window=[{w1},{w2}],features=[{m1},{m2}]", f))
    return specs


def lsh_specs(fractions):
    return [("lsh", f"lsh:bucket=[{lsh_bucket(round(256 * f))},{lsh_bucket(round(64 * f))}],hashes={LSH_HASHES}", f)
            for f in fractions]


def run_accuracy(args, images, labels):
    fractions = [1 / 8] if args.quick else [1 / 16, 1 / 8, 1 / 4]
    specs = accuracy_specs(fractions) + lsh_specs(fractions)
    n = len(images) if args.limit is None else min(args.limit, len(images))
    print(f"\nAccuracy of the shipped {args.pretrained}, each method in both T2T layers (attention1 256 keys, "
          f"attention2 64), no fine-tuning, {n:,} CIFAR-10 test images; budget fraction = entries kept per "
          f"query / keys, in both layers")
    print(f"  {'spec':<52}{'fraction':>9}{'test acc':>10}{'vs exact':>10}{'s':>7}")
    model = mt.pretrained(args.pretrained).eval()
    rows, base = [], None
    for method, spec, frac in specs:
        try:
            swap_t2t_attention(model, spec)
        except Exception as exc:  # noqa: BLE001
            print(f"  {spec:<52} failed to swap: {type(exc).__name__}: {exc}")
            continue
        start = time.perf_counter()
        acc = evaluate(model, images[:n], labels[:n])
        secs = time.perf_counter() - start
        base = acc if method == "exact" else base
        row = dict(method=method, spec=spec, fraction=frac, test_acc=acc, delta_points=100 * (acc - base),
                   seconds=secs)
        rows.append(row)
        fr = "1" if frac is None else f"1/{round(1 / frac)}"
        print(f"  {spec:<52}{fr:>9}{acc:>10.4f}{row['delta_points']:>+10.2f}{secs:>7.1f}", flush=True)
    swap_t2t_attention(model, "exact")
    return dict(images=n, rows=rows)


# --------------------------------------------------------------------------- part 3: memory and time

def traced_peak(fn):
    """Peak traced bytes above the level at the call, and the result (the C output pool emptied first)."""
    from minit2t.backends import _cmem
    _cmem.pool._bufs.clear()                                       # its buffers must be fresh allocations
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with mt.no_grad():
        out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    del out
    return peak


def run_memory(args):
    mt.manual_seed(0)
    big = mt.create_model("t2t_vit_t_14").eval()
    attn = big.tokens_to_token.attention1.attn
    B, T, din, E = args.mem_batch, 3136, attn.dim, attn.in_dim
    rng = np.random.default_rng(0)
    x = mt.tensor(rng.standard_normal((B, T, din)).astype(np.float32))          # what norm1 gives, in scale
    with mt.no_grad():
        qkv = attn.qkv(x).numpy().reshape(B, T, 3, E)
    Q, K, V = (mt.tensor(np.ascontiguousarray(qkv[:, :, i])) for i in range(3))
    tau, (w, m) = float(attn.scale), (49, 24)
    sb = attention_fn(f"scatterbrain:window={w},features={m}", E)    # features from seed 0
    exact_mod = attn
    swapped = mt.create_model("t2t_vit_t_14").eval()
    swapped.load_state_dict(big.state_dict())
    swap_t2t_attention(swapped, f"scatterbrain:window=[{w},12],features=[{m},6]")
    sb_mod = swapped.tokens_to_token.attention1.attn
    cases = [("core", "exact", lambda: exact(Q, K, V, tau)),
             ("core", f"scatterbrain {w}+{m}", lambda: sb(Q, K, V, tau)),
             ("module", "exact", lambda: exact_mod(x)),
             ("module", f"scatterbrain {w}+{m}", lambda: sb_mod(x))]
    # time first (tracemalloc off: it slows allocation), rows in turn, round after round
    times = {i: [] for i in range(len(cases))}
    with mt.no_grad():
        for _, _, fn in cases:
            fn()                                                    # warm-up
        for r in range(args.rounds):
            order = list(range(len(cases)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                start = time.perf_counter()
                cases[i][2]()
                times[i].append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        peaks = {i: traced_peak(cases[i][2]) for i in range(len(cases))}
    finally:
        tracemalloc.stop()
    print(f"\nt2t_vit_t_14 attention1 at {T} tokens (input width {din} -> q, k, v width {E}), batch {B}, float32, "
          f"forward under no_grad, random weights; time: median of {args.rounds} runs; peak: tracemalloc, measured")
    print(f"  {'part':<8}{'attention':<22}{'time ms':>10}{'peak MiB':>10}{'time ratio':>12}{'memory ratio':>14}"
          f"{'memory saved':>14}")
    rows = []
    for i, (part, name, _) in enumerate(cases):
        base_i = 0 if part == "core" else 2
        t, p = statistics.median(times[i]), peaks[i]
        tb, pb = statistics.median(times[base_i]), peaks[base_i]
        row = dict(part=part, attention=name, batch=B, tokens=T, ms=1e3 * t, peak_mib=p / 2 ** 20,
                   time_ratio=t / tb, memory_ratio=p / pb, memory_saved=1 - p / pb, times_ms=[1e3 * s for s in times[i]])
        rows.append(row)
        print(f"  {part:<8}{name:<22}{row['ms']:>10.1f}{row['peak_mib']:>10.1f}{row['time_ratio']:>11.2f}x"
              f"{row['memory_ratio']:>13.3f}x{100 * row['memory_saved']:>13.1f}%", flush=True)
    entries_exact, entries_sb = T * T, T * (w + m)
    print(f"  for comparison (computed, not measured): attention-matrix entries per image {entries_exact:,} exact vs "
          f"{entries_sb:,} scatterbrain = {100 * (1 - entries_sb / entries_exact):.1f}% fewer; the measured peak also "
          f"holds\n  the (B, T, {E}) output and the T x {E} temporaries of both methods (the module rows: the qkv "
          f"projection too)")
    return dict(rows=rows, computed_entries=dict(exact=entries_exact, scatterbrain=entries_sb))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive or folder (default: as `eval`)")
    p.add_argument("--pretrained", default=MEASURED_ON, metavar="NAME",
                   help=f"the shipped model whose T2T layers are measured (default: {MEASURED_ON}, as recorded)")
    p.add_argument("--limit", type=int, default=None, help="test images for accuracy (default: all)")
    p.add_argument("--seeds", type=int, default=3, help="feature seeds averaged for the error tables")
    p.add_argument("--err-batch", type=int, default=64, help="CIFAR images for the error at 256 tokens")
    p.add_argument("--big-batch", type=int, default=2, help="images for the error at 3136 tokens")
    p.add_argument("--mem-batch", type=int, default=1, help="batch for memory and time at 3136 tokens")
    p.add_argument("--rounds", type=int, default=5, help="timed runs per row at 3136 tokens")
    p.add_argument("--parts", default="error,accuracy,memory", help="comma-separated subset to run")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here too")
    args = p.parse_args()
    if args.quick:
        args.limit = min(args.limit or 500, 500)
        args.seeds, args.err_batch, args.big_batch, args.rounds = min(args.seeds, 2), 16, 1, 2
    parts = set(args.parts.split(","))
    t0 = time.perf_counter()
    print(f"CPU: {cpu_name()}; backend {mt.get_backend().__name__.split('.')[-1]}; "
          f"{mt.get_num_threads()} threads", flush=True)
    command = "python benchmarks/bench_attention.py " + " ".join(sys.argv[1:])
    out = {"cpu": cpu_name(), "command": command}
    images, labels = mt.data.load_cifar10(args.data, split="test")
    for part, key, run in (("error", "error", lambda: run_errors(args, images)),
                           ("accuracy", "accuracy", lambda: run_accuracy(args, images, labels)),
                           ("memory", "memory_time", lambda: run_memory(args))):
        if part in parts:
            out[key] = dict(run(), cpu=cpu_name(), command=command)
    out["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {out['seconds']:.0f} s")
    if args.json:
        write_json(args.json, merged(args.json, out))


def merged(path, out):
    """out, on top of the parts of an earlier run in `path` that this run did not redo (each part keeps
    the CPU and command it was measured with)."""
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    for key in ("error", "accuracy", "memory_time"):
        if key not in out and key in old:
            out[key] = dict(old[key], cpu=old[key].get("cpu", old.get("cpu")),
                            command=old[key].get("command", old.get("command")))
    return out


if __name__ == "__main__":
    main()
