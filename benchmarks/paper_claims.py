"""T2T-ViT's claims at CIFAR scale: every model trained from scratch, one recipe, the same minutes each.

    python benchmarks/paper_claims.py rates                       # a training step's images/s, side by side
    python benchmarks/paper_claims.py train --data PATH           # every row: python -m minit2t train --steps S
    python benchmarks/paper_claims.py table --data PATH           # params, MACs, images/s, accuracy -> JSON

Equal time is equal steps at rates measured side by side: `rates` times one training step of every model
(forward, loss, backward, AdamW; batch 128) in turn in one process, and each row's budget is the steps its
model runs in BUDGET_MIN minutes at that rate. So the rows do not depend on what else the machine runs
while they train (that moves only their wall time), and a killed row resumes exactly (--resume).
A model added later is timed beside t2t_vit_cifar and scaled to t2t_vit_cifar's first rate.
Runs go to runs/claims/ROW; results to benchmarks/results/paper_claims.json. The training runs were made
with OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning when they wait: a run that shares the
cores then loses less; the arithmetic is the same).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")        # NumPy's BLAS threads would fight the C backend's
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)                                  # this checkout's minit2t
import numpy as np  # noqa: E402

import minit2t as mt  # noqa: E402
from minit2t import speed  # noqa: E402

RESULTS = os.path.join(HERE, "results", "paper_claims.json")
RUNS = os.path.join(ROOT, "runs", "claims")
REFERENCE = "t2t_vit_cifar"
BUDGET_MIN = 10
BATCH = 128
RECIPE = ["--batch-size", str(BATCH), "--lr", "2e-3", "--warmup-epochs", "0.3", "--weight-decay", "0.05",
          "--label-smoothing", "0.1", "--clip-grad", "1.0", "--crop-padding", "4", "--pad-mode", "reflect"]
# short name: (model, what it stands for, seeds); a row (and its folder runs/claims/ROW) is SHORT_sSEED
COMPARISON = {
    "t2t": ("t2t_vit_cifar", "T2T transformer layers", 3),
    "vit": ("vit_cifar_132", "ViT hard split", 3),
    "performer": ("t2t_vit_cifar_performer", "T2T performer layers", 1),
    "conv": ("t2t_vit_cifar_conv", "convolution tokens", 3),
    "wide": ("t2t_vit_cifar_wide", "shallow-wide backbone (2 blocks, width 240)", 1),
    "shunted": ("t2t_vit_cifar_shunted", "T2T + Shunted attention", 2),
}
ROWS = {f"{short}_s{seed}": (model, seed, what)                  # row: (model, seed, what it stands for)
        for short, (model, what, seeds) in COMPARISON.items() for seed in range(seeds)}


def load():
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            return json.load(f)
    return {"cpu": speed.cpu_name(), "batch": BATCH, "budget_min": BUDGET_MIN, "recipe": RECIPE,
            "rates": {}, "rows": {}}


def save(results):
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, RESULTS)


def measure(models, repeats):
    """{model: images/s of a training step}, every model timed in turn in one process."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    calls = {}
    for name in models:
        mt.manual_seed(0)
        calls[name] = speed.minit2t_runners(mt.create_model(name), x, y)[0]
    seconds = speed.alternate(calls, repeats)
    return {name: BATCH / statistics.median(s) for name, s in seconds.items()}


def cmd_rates(args):
    results = load()
    models = list(dict.fromkeys([REFERENCE] + (args.models or sorted(m for m, _, _ in COMPARISON.values()))))
    rates = measure(models, args.repeats)
    first = results["rates"].get(REFERENCE)
    scale = first["images_per_s"] / rates[REFERENCE] if first else 1.0
    for name, rate in rates.items():
        if name == REFERENCE and first:
            continue
        results["rates"][name] = {"images_per_s": rate * scale, "measured": rate, "beside": models,
                                  "scaled_to_first_reference": first is not None,
                                  "steps": round(BUDGET_MIN * 60 * rate * scale / BATCH)}
        print(f"{name:<26} {rate:7.1f} images/s measured, {rate * scale:7.1f} used: "
              f"{results['rates'][name]['steps']} steps in {BUDGET_MIN} min")
    results["rates_command"] = "python benchmarks/paper_claims.py rates " + " ".join(sys.argv[2:])
    save(results)


def train_args(row, data, steps):
    """The arguments of `python -m minit2t train` for a row (run from the repository's root)."""
    model, seed, _ = ROWS[row]
    return ["--data", data, "--model", model, "--steps", str(steps), "--seed", str(seed), *RECIPE,
            "--out", os.path.join("runs", "claims", row)]


def cmd_train(args):
    results = load()
    for row in args.rows or list(ROWS):
        model = ROWS[row][0]
        if model not in results["rates"]:
            print(f"{row}: no rate for {model} yet (python benchmarks/paper_claims.py rates --models {model})")
            continue
        cmd = [sys.executable, "-m", "minit2t", "train", *train_args(row, args.data, results["rates"][model]["steps"]),
               "--resume"]
        print(" ".join(cmd), flush=True)
        with open(os.path.join(RUNS, f"{row}.log"), "a") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)


def cmd_table(args):
    results = load()
    results["rows"] = {}                                          # rebuilt from the run folders
    for row, (model, seed, what) in ROWS.items():
        path = os.path.join(RUNS, row, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            history = [json.loads(line) for line in f]
        net = mt.create_model(model)
        steps = results["rates"][model]["steps"]
        if history[-1]["steps"] != steps:
            print(f"{row}: unfinished ({history[-1]['steps']} of {steps} steps)")
            continue
        results["rows"][row] = dict(model=model, seed=seed, what=what, params=mt.count_params(net),
                                    macs=mt.count_macs(net, (3, 32, 32)), steps=steps,
                                    images_per_s=results["rates"][model]["images_per_s"],
                                    test_acc=history[-1]["test_acc"], train_acc=history[-1]["train_acc"],
                                    wall_s=history[-1]["wall_s"], history=history,
                                    command=" ".join(["python -m minit2t train", *train_args(row, args.data, steps)]))
    save(results)
    print("\n".join(markdown(results["rows"])))


def markdown(rows):
    """The table of docs/paper.md: a line per model, the seeds' mean and range where there are several."""
    lines = [f"| model | what differs | params | MACs | images/s (rates) | steps in {BUDGET_MIN} min | "
             f"steps' wall time | test accuracy |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows.values()):
        runs_ = [r for r in rows.values() if r["model"] == model]
        accs = [100 * r["test_acc"] for r in runs_]
        acc = f"{accs[0]:.2f}%" if len(accs) == 1 else \
            f"{np.mean(accs):.2f}% (seeds {', '.join(f'{a:.2f}' for a in accs)})"
        r = runs_[0]
        walls = sorted(x["wall_s"] / 60 for x in runs_)
        wall = f"{walls[0]:.1f}" + (f"–{walls[-1]:.1f}" if f"{walls[-1]:.1f}" != f"{walls[0]:.1f}" else "")
        lines.append(f"| `{model}` | {r['what']} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | "
                     f"{r['images_per_s']:.1f} | {r['steps']:,} | {wall} min | {acc} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rates")
    r.add_argument("--models", nargs="*", help="default: every row's model")
    r.add_argument("--repeats", type=int, default=7)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--rows", nargs="*", choices=list(ROWS))
    s = sub.add_parser("table")
    s.add_argument("--data", default="../shared/data/cifar-10-binary.tar.gz", help="as the rows were trained on")
    args = p.parse_args()
    os.makedirs(RUNS, exist_ok=True)
    {"rates": cmd_rates, "train": cmd_train, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
