"""Training a T2T-ViT on CIFAR-10: python -m minit2t train --data PATH --out DIR ...

Legend: B batch, K classes.
One epoch: shuffled, augmented batches -> forward -> cross-entropy (label smoothing) ->
backward -> gradient clipping -> AdamW step -> schedule step. After every epoch: test
accuracy, a line in DIR/metrics.jsonl, DIR/curves.png, and DIR/last.npz (atomic), from
which --resume continues to exactly the weights an uninterrupted run ends with.
"""
import json
import math
import os
import sys
import time

import numpy as np

from minit2t import backends, data, optim, random
from minit2t.checkpoint import load_checkpoint, save_checkpoint
from minit2t.grad_mode import no_grad
from minit2t.models import create_model
from minit2t.models.zoo import CIFAR_INPUT, CIFAR_VARIANTS
from minit2t.nn.functional import cross_entropy
from minit2t.tensor import Tensor

CHECKPOINT = "last.npz"
RUN_KEYS = ("model", "epochs", "batch_size", "lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing",
            "clip_grad", "mixup", "seed", "backend", "train_subset", "crop_padding")


class NonFiniteLoss(RuntimeError):
    pass


def predict(model, images, batch_size=256):
    """Logits (N, K) of `model` in eval mode for uint8 images (N, 3, 32, 32), normalised as in training."""
    was_training = model.training
    model.eval()
    out = []
    with no_grad():
        for x, _ in data.DataLoader(images, np.zeros(len(images), np.int64), batch_size):
            out.append(model(Tensor(x)).numpy())                      # (b, K)
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def evaluate(model, images, labels, batch_size=256):
    """Top-1 accuracy of `model` on uint8 images (N, 3, 32, 32) in eval mode."""
    if len(labels) == 0:
        return 0.0
    return float((predict(model, images, batch_size).argmax(axis=1) == np.asarray(labels)).mean())


class Progress:
    """One status line per epoch, rewritten in place: loss, accuracy, images/s, ETA."""

    def __init__(self, epoch, epochs, steps, stream=sys.stderr):
        self.epoch, self.epochs, self.steps, self.stream = epoch, epochs, steps, stream
        self.start, self.seen = time.perf_counter(), 0

    def update(self, step, batch, loss, acc):
        self.seen += batch
        elapsed = time.perf_counter() - self.start
        rate = self.seen / max(elapsed, 1e-9)
        eta = elapsed / (step + 1) * (self.steps - step - 1)
        bar = "#" * int(20 * (step + 1) / self.steps)
        self.stream.write(f"\repoch {self.epoch + 1}/{self.epochs} [{bar:<20}] {step + 1}/{self.steps} "
                          f"loss {loss:.4f} acc {acc:.3f} {rate:.1f} img/s ETA {eta:.0f}s ")
        self.stream.flush()
        return rate

    def close(self):
        self.stream.write("\n")


def train_one_epoch(model, loader, epoch, opt, sched, cfg, epochs):
    """One pass over the loader; returns (mean loss, train accuracy, images/s)."""
    model.train()
    progress = Progress(epoch, epochs, len(loader))
    total_loss = total_correct = total = 0
    rate = 0.0
    for step, (x, y) in enumerate(loader.iter_epoch(epoch)):
        logits = model(Tensor(x))                                     # (B, K)
        loss = cross_entropy(logits, y, label_smoothing=0.0 if cfg["mixup"] else cfg["label_smoothing"])
        value = float(loss.item())
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss became {value} at epoch {epoch + 1}, step {step + 1}")
        opt.zero_grad()
        loss.backward()
        if cfg["clip_grad"]:
            optim.clip_grad_norm(model.parameters(), cfg["clip_grad"])
        opt.step()
        sched.step()
        hard = y.argmax(axis=1) if y.ndim == 2 else y
        total_correct += int((logits.numpy().argmax(axis=1) == hard).sum())
        total_loss += value * len(x)
        total += len(x)
        rate = progress.update(step, len(x), total_loss / total, total_correct / total)
    progress.close()
    return total_loss / max(total, 1), total_correct / max(total, 1), rate


def build(cfg, steps_per_epoch):
    """Model, optimiser (no decay on biases, norms, cls_token, pos_embed) and warm-up + cosine schedule."""
    random.manual_seed(cfg["seed"])
    cifar = {} if cfg["model"] in CIFAR_VARIANTS else CIFAR_INPUT
    model = create_model(cfg["model"], **{**cifar, **cfg.get("model_kwargs", {})})
    groups = optim.param_groups_for_weight_decay(model, cfg["weight_decay"])
    opt = optim.AdamW(groups, lr=cfg["lr"])
    total = max(cfg["epochs"] * steps_per_epoch, 1)
    warmup = min(int(cfg["warmup_epochs"] * steps_per_epoch), total - 1)
    sched = optim.WarmupCosine(opt, warmup_steps=warmup, total_steps=total, min_lr=cfg["min_lr"])
    return model, opt, sched


def load_data(data_path, cfg):
    """(train loader, test images, test labels) from the dataset at `data_path`."""
    splits = data.load_cifar10_splits(data_path, ("train", "test"))
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if cfg["train_subset"]:
        train_x, train_y = data.subset(train_x, train_y, cfg["train_subset"], seed=cfg["seed"])
    loader = data.DataLoader(train_x, train_y, cfg["batch_size"], shuffle=True, drop_last=True, augment=True,
                             mixup=True if cfg["mixup"] else None, seed=cfg["seed"],
                             crop_padding=cfg.get("crop_padding", 4))
    if len(loader) == 0:
        raise ValueError(f"batch size {cfg['batch_size']} is larger than the {len(train_x)} training images")
    return loader, test_x, test_y


def resume_state(out_dir, model, opt, sched):
    """Restore model, optimiser, schedule and RNG from out_dir's checkpoint; returns (start epoch, history)."""
    ckpt = load_checkpoint(os.path.join(out_dir, CHECKPOINT))
    model.load_state_dict(ckpt["model"], strict=True)
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["schedule"])
    random.set_state(ckpt["rng"])
    print(f"resuming {out_dir} after epoch {ckpt['epoch']}", file=sys.stderr)
    return ckpt["epoch"], ckpt["history"]


def saved_run_config(out_dir):
    """The run settings stored in out_dir's checkpoint, or None if there is none."""
    path = os.path.join(out_dir, CHECKPOINT)
    return load_checkpoint(path)["run_config"] if os.path.exists(path) else None


def write_metrics(out_dir, history):
    """DIR/metrics.jsonl, one line per epoch, rewritten atomically from the checkpoint's history."""
    path = os.path.join(out_dir, "metrics.jsonl")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    os.replace(tmp, path)


def run(cfg, data_path, out_dir, resume=False):
    """Train for cfg["epochs"] epochs, checkpointing after each; returns the history."""
    os.makedirs(out_dir, exist_ok=True)
    if resume and saved_run_config(out_dir) is not None:
        cfg = saved_run_config(out_dir)
    backends.set_backend(cfg["backend"]) if cfg["backend"] else None
    loader, test_x, test_y = load_data(data_path, cfg)
    model, opt, sched = build(cfg, len(loader))
    start, history = (resume_state(out_dir, model, opt, sched) if resume and
                      os.path.exists(os.path.join(out_dir, CHECKPOINT)) else (0, []))
    clock = history[-1]["wall_s"] if history else 0.0          # training steps only
    total = history[-1].get("total_s", clock) if history else 0.0   # and evaluation
    for epoch in range(start, cfg["epochs"]):
        t0 = time.perf_counter()
        loss, acc, rate = train_one_epoch(model, loader, epoch, opt, sched, cfg, cfg["epochs"])
        clock += time.perf_counter() - t0
        test_acc = evaluate(model, test_x, test_y)
        total += time.perf_counter() - t0
        history.append(dict(epoch=epoch + 1, train_loss=loss, train_acc=acc, test_acc=test_acc,
                            images_per_s=rate, lr=sched.get_last_lr()[-1], wall_s=clock, total_s=total))
        save_checkpoint(os.path.join(out_dir, CHECKPOINT), model, opt, sched, epoch + 1, history, cfg)
        write_metrics(out_dir, history)
        plot_curves(history, os.path.join(out_dir, "curves.png"))
        print(f"epoch {epoch + 1}: train loss {loss:.4f} acc {acc:.4f}, test accuracy {test_acc:.4f}", flush=True)
    return history


def plot_curves(history, path):
    """Loss and accuracy against epochs (needs matplotlib; skipped with a note without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping curves.png", file=sys.stderr)
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss")
    ax2.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train")
    ax2.plot(epochs, [h["test_acc"] for h in history], marker="o", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy")
    ax2.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
