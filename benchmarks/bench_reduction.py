"""Token reduction (ToMe, EViT, MCTF) on a trained T2T-ViT: test accuracy, backbone MACs, images/s.

    python benchmarks/bench_reduction.py --data ../shared/data/cifar-10-binary.tar.gz
        [--specs none "tome:r=4" ...] [--finetuned FILE ...] [--rounds 7] [--json out.json]
    python benchmarks/bench_reduction.py --imagenet-scale      # t2t_vit_14 at 224 px, random weights

Every row is a shipped model (--pretrained; t2t_vit_cifar_8ep by default) with a reduction spec (or a
fine-tuned weights file, whose spec is in its config), on the C backend, inference at batch 256.
Accuracy: the whole test set.
Speed: one fixed batch of 256 test images; the rows are timed in turn, round after round (the
order rotating), in one process, so the machine's noise hits every row alike; images/s is the
median over rounds and the speed-up is the ratio of medians against the unreduced model.
Backbone MACs: count_macs of the whole model minus its T2T module's, per image.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import minit2t as mt  # noqa: E402
from machine import cpu_name, write_json  # noqa: E402  (benchmarks/machine.py)
from minit2t.hub import load_model  # noqa: E402
from minit2t.reduction import reduce_tokens  # noqa: E402
from minit2t.train import evaluate  # noqa: E402

CIFAR_SPECS = ["none", "tome:r=4", "tome:r=6", "tome:r=8", "evit:keep=0.9", "evit:keep=0.7", "evit:keep=0.5",
               "mctf:r=8", "mctf:r=12", "mctf:r=16"]
# each method at its paper's setting for a 12-to-14-block ViT at 224 px (197 backbone tokens)
IMAGENET_SPECS = ["none", "tome:r=13", "evit:keep=0.7", "mctf:r=16"]
MEASURED_ON = "t2t_vit_cifar_8ep"                   # the weights results/reduction.json holds


def backbone_macs(model, size):
    return (mt.count_macs(model, size) - mt.count_macs(model.tokens_to_token, size)) / 1e6


def time_rows(rows, x, rounds):
    """{label: median seconds of one forward of x}, the rows taken in turn, round after round."""
    times = {label: [] for label, _ in rows}
    with mt.no_grad():
        for label, model in rows:                                  # warm-up, untimed
            model(x)
        for k in range(rounds):
            shift = k % len(rows)
            for label, model in rows[shift:] + rows[:shift]:
                start = time.perf_counter()
                model(x)
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def cifar_rows(args):
    """(label, model) for each spec on the shipped model, then each fine-tuned file."""
    rows = []
    for spec in args.specs:
        model = reduce_tokens(mt.pretrained(args.pretrained), spec).eval()
        rows.append((model.config.get("reduce", "none") if spec != "none" else "none", model))
    for path in args.finetuned:
        model, _ = load_model(path)
        name = os.path.basename(os.path.dirname(path)) if os.path.basename(path) == "last.npz" else path
        rows.append((f"{os.path.basename(name)} ({model.config.get('reduce', 'none')})", model.eval()))
    return rows


def run_cifar(args):
    images, labels = mt.data.load_cifar10(args.data, split="test")
    rows = cifar_rows(args)
    batch, _ = next(iter(mt.data.DataLoader(images[:args.batch], labels[:args.batch], args.batch)))
    x = mt.tensor(batch)                                           # normalised as for evaluation
    speed = time_rows(rows, x, args.rounds)
    base = speed[rows[0][0]]
    results = []
    print(f"{'model':<64}{'test acc':>9}{'backbone MMACs':>16}{'images/s':>10}{'speed-up':>10}")
    for label, model in rows:
        acc = evaluate(model, images[:args.limit], labels[:args.limit])
        macs = backbone_macs(model, (3, 32, 32))
        row = dict(model=label, test_acc=acc, backbone_mmacs=macs, images_per_s=args.batch / speed[label],
                   speedup=base / speed[label])
        results.append(row)
        print(f"{label:<64}{acc:>9.4f}{macs:>16.1f}{row['images_per_s']:>10.1f}{row['speedup']:>9.2f}x", flush=True)
    return results


def run_imagenet(args):
    """t2t_vit_14 at 224 px, random weights: what each method buys with 197 backbone tokens."""
    mt.manual_seed(0)
    base = mt.create_model("t2t_vit_14").eval()
    rows = [(spec, reduce_tokens(mt.create_model("t2t_vit_14").eval(), spec)) for spec in IMAGENET_SPECS]
    for _, model in rows:
        model.load_state_dict(base.state_dict())
    x = mt.tensor(np.random.default_rng(0).standard_normal((args.imagenet_batch, 3, 224, 224)).astype(np.float32))
    speed = time_rows(rows, x, args.rounds)
    print(f"{'t2t_vit_14, 224 px':<40}{'backbone GMACs':>16}{'images/s':>10}{'speed-up':>10}")
    results = []
    for label, model in rows:
        macs = backbone_macs(model, (3, 224, 224)) / 1e3
        row = dict(model=label, backbone_gmacs=macs, images_per_s=args.imagenet_batch / speed[label],
                   speedup=speed["none"] / speed[label])
        results.append(row)
        print(f"{label:<40}{macs:>16.2f}{row['images_per_s']:>10.1f}{row['speedup']:>9.2f}x", flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive or folder (default: as `eval`)")
    p.add_argument("--pretrained", default=MEASURED_ON, metavar="NAME",
                   help=f"the shipped model the specs reduce (default: {MEASURED_ON}, as recorded)")
    p.add_argument("--specs", nargs="*", default=CIFAR_SPECS, help="reduction specs; the first is the baseline")
    p.add_argument("--finetuned", nargs="*", default=[], metavar="FILE", help="fine-tuned weights files")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="test images for accuracy (default: all)")
    p.add_argument("--imagenet-scale", action="store_true", help="also t2t_vit_14 at 224 px, random weights")
    p.add_argument("--imagenet-only", action="store_true")
    p.add_argument("--imagenet-batch", type=int, default=16)
    p.add_argument("--json", default=None, metavar="FILE", help="write the rows here too")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}; backend {mt.get_backend().__name__.split('.')[-1]}; "
          f"{mt.get_num_threads()} threads", flush=True)
    out = {"cpu": cpu_name(), "command": "python benchmarks/bench_reduction.py " + " ".join(sys.argv[1:])}
    if not args.imagenet_only:
        out["cifar"] = run_cifar(args)
    if args.imagenet_scale or args.imagenet_only:
        out["imagenet_scale"] = run_imagenet(args)
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
