"""A run's log: DIR/metrics.jsonl (one JSON object per epoch) and DIR/curves.png, drawn from it.

A training run writes both after every epoch from its checkpoint's history (runs, train); a shipped
model keeps them beside its weights as NAME.metrics.jsonl and NAME.curves.png (export, hub). Both are
written atomically; a log is read back with every line checked (read_metrics).
"""
import json
import os
import sys


def plot_curves(history, path):
    """Loss and accuracy against epochs, and test accuracy against the run's minutes (its total_s, the
    training steps and the scoring; wall_s, the steps alone, in logs without it). Needs matplotlib;
    skipped with a note without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib, a dependency of minit2t, is not installed: skipping curves.png "
              "(pip install matplotlib)", file=sys.stderr)
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss")
    ax2.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train")
    ax2.set(xlabel="epoch", ylabel="accuracy")
    scored = [h for h in history if "test_acc" in h]               # --eval-every N: every N-th epoch
    average = bool(scored) and all("ema_test_acc" in h for h in scored)
    minutes = [h.get("total_s", h["wall_s"]) / 60 for h in scored]
    for ax, x in ((ax2, [h["epoch"] for h in scored]), (ax3, minutes)):
        ax.plot(x, [h["test_acc"] for h in scored], marker="o", color="C1", label="test")
        if average:
            ax.plot(x, [h["ema_test_acc"] for h in scored], marker="o", color="C2", label="test, the weights' average")
        ax.legend()
    ax3.set(xlabel="minutes of training and scoring" if all("total_s" in h for h in scored)
            else "minutes of training steps", ylabel="test accuracy")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_metrics(path, history):
    """`path` (DIR/metrics.jsonl), one line per epoch, rewritten atomically from the checkpoint's history."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    os.replace(tmp, path)


METRICS_MAX_BYTES = 1 << 20                        # a log of thousands of epochs; more is not a log


def read_metrics(path):
    """The rows of a metrics.jsonl (a run's, or a shipped model's log): one dict per epoch, epochs 1, 2, ...;
    raises ValueError, in one line naming the file, for anything else."""
    size = os.path.getsize(path)
    if size > METRICS_MAX_BYTES:
        raise ValueError(f"{path}: {size:,} bytes, more than a training log's {METRICS_MAX_BYTES:,}")
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}: line {n} is not JSON") from None
        if not isinstance(row, dict) or row.get("epoch") != n:
            raise ValueError(f"{path}: line {n} should be the object of epoch {n}, got {line[:60]!r}")
        rows.append(row)
    return rows
