"""fp32 against bf16 mixed precision: the same recipe, the same steps, on all of CIFAR-10, over seeds.

    python benchmarks/amp_accuracy.py run --data PATH --out DIR [--steps 400] [--seeds 0 1 2]
    python benchmarks/amp_accuracy.py collect DIR [--json benchmarks/results/amp_accuracy.json]

`run` trains t2t_vit_cifar with the default recipe (warm-up 0.25 epochs, then cosine) for --steps
optimizer steps, once per seed and precision, two runs at a time on one thread each (an fp32 and a bf16
run of one seed side by side, so the two arms share the machine's minutes alike):

    python -m minit2t train --data PATH --out DIR/fp32_s0 --steps 400 --warmup-epochs 0.25 --seed 0 \\
        --precision fp32                                  (and bf16; seeds 1, 2)

Each run's log (DIR/<precision>_s<seed>.log) keeps the progress line of every step; `collect` reads
the running mean of the training loss from it (as the line prints it: the mean over the epoch so far),
the test accuracy on the 10,000 test images from the run's metrics.jsonl, and its wall time, and writes
them to a JSON file that docs/mixed-precision.md and notebooks/09_mixed_precision.ipynb read.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name, write_json  # noqa: E402

PROGRESS = re.compile(r"epoch (\d+)/\d+ \[[# ]*\] (\d+)/(\d+) loss ([\d.]+) acc ([\d.]+)")


def run(data, out, steps, seeds):
    os.makedirs(out, exist_ok=True)
    for seed in seeds:
        jobs = []
        for precision in ("fp32", "bf16"):
            cmd = [sys.executable, "-m", "minit2t", "train", "--data", data, "--out",
                   os.path.join(out, f"{precision}_s{seed}"), "--steps", str(steps), "--warmup-epochs", "0.25",
                   "--seed", str(seed), "--precision", precision]
            log = open(os.path.join(out, f"{precision}_s{seed}.log"), "w")
            jobs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "MINIT2T_NUM_THREADS": "1"}))
        if any(job.wait() for job in jobs):
            sys.exit(f"a run of seed {seed} failed: see its log in {out}")


def losses(log_path):
    """(step, running mean of the epoch's training loss) of every step the log's progress lines show."""
    seen, steps_in = {}, {}                                   # epoch -> its steps (the last may be cut short)
    for epoch, k, n, loss, _ in PROGRESS.findall(open(log_path, errors="replace").read()):
        steps_in[int(epoch)] = int(n)
        before = sum(steps_in.get(e, 0) for e in range(1, int(epoch)))
        seen[before + int(k)] = float(loss)
    return sorted(seen.items())


def collect(folder, json_path):
    runs = []
    for name in sorted(os.listdir(folder)):
        metrics = os.path.join(folder, name, "metrics.jsonl")
        if not os.path.isfile(metrics):
            continue
        precision, seed = name.split("_s")
        rows = [json.loads(line) for line in open(metrics)]
        runs.append(dict(precision=precision, seed=int(seed), test_acc=rows[-1]["test_acc"],
                         epochs=[dict(epoch=r["epoch"], test_acc=r["test_acc"], train_loss=r["train_loss"])
                                 for r in rows],
                         wall_s=rows[-1]["wall_s"], steps=rows[-1]["steps"],
                         losses=losses(os.path.join(folder, name + ".log"))))
    summary = {}
    for precision in ("fp32", "bf16"):
        accs = [r["test_acc"] for r in runs if r["precision"] == precision]
        if accs:
            summary[precision] = dict(mean=statistics.mean(accs), min=min(accs), max=max(accs), n=len(accs))
    write_json(json_path, dict(cpu=cpu_name(), command="python benchmarks/amp_accuracy.py run --steps 400 "
                               "--seeds 0 1 2", runs=runs, summary=summary))
    for precision, s in summary.items():
        print(f"{precision}: test accuracy {100 * s['mean']:.2f}% (seeds {s['n']}, {100 * s['min']:.2f}-"
              f"{100 * s['max']:.2f}%)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=400)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c = sub.add_parser("collect")
    c.add_argument("folder")
    c.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                   "amp_accuracy.json"))
    args = parser.parse_args()
    if args.what == "run":
        run(args.data, args.out, args.steps, args.seeds)
    else:
        collect(args.folder, args.json)


if __name__ == "__main__":
    main()
