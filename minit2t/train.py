"""Training a T2T-ViT on CIFAR-10: python -m minit2t train --data PATH --out DIR ...

Legend: B batch, K classes.
One epoch: shuffled, augmented batches -> forward -> cross-entropy (label smoothing) ->
backward -> gradient clipping -> AdamW step -> schedule step. After every epoch: test
accuracy, a line in DIR/metrics.jsonl, DIR/curves.png, and DIR/last.npz (atomic), from
which --resume continues to exactly the weights an uninterrupted run ends with.

The recipe's options are declared in minit2t.recipe; the run's folder (an existing run never
overwritten without a flag, the rules of --resume, Ctrl-C, temporary files) is minit2t.runs'.
"""
import math
import os
import sys
import time

import numpy as np

from minit2t import backends, data, optim, random, recipe, reduction, runlog, runs
from minit2t.amp import for_precision
from minit2t.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from minit2t.evaluation import NonFiniteOutput, check_finite_outputs, evaluate, predict  # noqa: F401
from minit2t.grad_mode import no_grad
from minit2t.hub import init_from, init_source
from minit2t.models import create_model
from minit2t.models.zoo import CIFAR_INPUT, CIFAR_VARIANTS
from minit2t.nn.functional import cross_entropy
from minit2t.tensor import Tensor

class NonFiniteLoss(RuntimeError):
    pass


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


def train_one_epoch(model, loader, epoch, opt, sched, cfg, epochs, where=None, ema=None, max_steps=None,
                    teacher=None):
    """One pass over the loader (its first max_steps batches, when given); returns (mean loss, train
    accuracy, images/s). where["step"] follows the step being run (1-based), for the message of an
    interrupted run; ema (optim.EMA) follows the weights after every step; a teacher (--distill)
    mixes its predictions into the targets."""
    model.train()
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    progress = Progress(epoch, epochs, steps)
    total_loss = total_correct = total = 0
    rate = 0.0
    try:
        for step, (x, y) in enumerate(loader.iter_epoch(epoch)):
            if where is not None:
                where["step"] = step + 1
            with for_precision(cfg["precision"]):
                smoothing = 0.0 if cfg["mixup"] else cfg["label_smoothing"]
                if teacher is not None:
                    y, smoothing = distilled_targets(teacher, x, y, smoothing, cfg["distill_weight"]), 0.0
                loss, logits = batch_loss(model, x, y, smoothing)
            value = float(loss.item())
            if not math.isfinite(value):
                raise NonFiniteLoss(f"loss became {value} at epoch {epoch + 1}, step {step + 1}")
            opt.zero_grad()
            loss.backward()
            if cfg["clip_grad"]:
                optim.clip_grad_norm(model.parameters(), cfg["clip_grad"])
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model)
            hard = y.argmax(axis=1) if y.ndim == 2 else y
            total_correct += int((logits.numpy().argmax(axis=1) == hard).sum())
            total_loss += value * len(x)
            total += len(x)
            rate = progress.update(step, len(x), total_loss / total, total_correct / total)
            if step + 1 == steps:
                break
    finally:
        progress.close()                                              # any message after starts a new line
    return total_loss / max(total, 1), total_correct / max(total, 1), rate


def batch_loss(model, x, y, label_smoothing):
    """(loss, logits (B, K)) of one batch: cross-entropy, or MCTF's fine-tuning loss for a model
    that fuses tokens with MCTF (two passes and their consistency, minit2t.reduction.mctf)."""
    if reduction.uses_consistency(model):
        return reduction.training_loss(model, Tensor(x), y, label_smoothing)
    logits = model(Tensor(x))                                         # (B, K)
    return cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def distilled_targets(teacher, x, y, label_smoothing, weight):
    """Soft distillation's targets (DeiT): (1 - weight) x the label (ints (B,) or mixed (B, K)),
    smoothed, + weight x the teacher's probabilities. The cross-entropy is linear in its target,
    so this is (1 - weight) CE(label) + weight CE(teacher) in one."""
    with no_grad():
        probs = teacher(Tensor(x)).softmax(axis=-1).numpy().astype(np.float64)   # (B, K)
    K = probs.shape[1]
    label = (data.smooth_one_hot(y, K, label_smoothing) if y.ndim == 1 else
             y * (1 - label_smoothing) + label_smoothing / K)           # (B, K)
    return (1 - weight) * label + weight * probs                       # (B, K)


def distill_teacher(cfg, model):
    """The teacher --distill names: the run's model without --reduce, holding those weights, in eval mode."""
    if reduction.uses_consistency(model):
        raise ValueError("--distill does not combine with MCTF's fine-tuning, which has a teacher pass of its own")
    teacher = new_model(cfg, reduce=False)
    init_from(teacher, cfg["distill"])
    return teacher.eval()


def new_model(cfg, reduce=True):
    """The run's model (with its --reduce unless reduce=False), freshly initialised."""
    cifar = {} if cfg["model"] in CIFAR_VARIANTS else CIFAR_INPUT
    model = create_model(cfg["model"], **{**cifar, **recipe.model_kwargs(cfg), **cfg.get("model_kwargs", {})})
    if reduce and cfg.get("reduce"):
        reduction.reduce_tokens(model, cfg["reduce"])                 # ToMe, EViT or MCTF in the blocks
    return model


def build(cfg, steps_per_epoch):
    """Model, optimiser (no decay on biases, norms, cls_token, pos_embed) and warm-up + cosine schedule."""
    random.manual_seed(cfg["seed"])
    model = new_model(cfg)
    groups = optim.param_groups_for_weight_decay(model, cfg["weight_decay"])
    opt = optim.AdamW(groups, lr=cfg["lr"])
    total = runs.total_steps(cfg, steps_per_epoch)
    warmup = min(int(cfg["warmup_epochs"] * steps_per_epoch), total - 1)
    sched = optim.WarmupCosine(opt, warmup_steps=warmup, total_steps=total, min_lr=cfg["min_lr"])
    return model, opt, sched


def load_data(data_path, cfg, download=None):
    """(train loader, test images, test labels) from the dataset at `data_path` (see load_cifar10; download
    as its download_if_missing); records in cfg where the data came from and how many images train."""
    location = data.resolve_path(data_path, download)
    splits = data.load_cifar10_splits(data_path, ("train", "test"), download)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if cfg["train_subset"]:
        train_x, train_y = data.subset(train_x, train_y, cfg["train_subset"], seed=cfg["seed"])
    loader = data.DataLoader(train_x, train_y, cfg["batch_size"], shuffle=True, drop_last=True, augment=True,
                             mixup=True if cfg["mixup"] else None, seed=cfg["seed"],
                             crop_padding=cfg.get("crop_padding", 4), pad_mode=cfg.get("pad_mode", "zero"),
                             three_augment=cfg.get("aug", "basic") == "3aug")
    if len(loader) == 0:
        raise ValueError(f"batch size {cfg['batch_size']} is larger than the {len(train_x)} training images")
    cfg["data"] = "sample" if data.is_sample(location) else os.path.abspath(location)
    cfg["train_images"] = len(train_x)
    return loader, test_x, test_y


def resume_state(out_dir, model, opt, sched, ema=None):
    """Restore model, optimiser, schedule, RNG (and the weights' average) from out_dir's checkpoint;
    returns (start epoch, history)."""
    ckpt = load_checkpoint(os.path.join(out_dir, runs.CHECKPOINT), model, opt)   # shapes checked before reading
    model.load_state_dict(ckpt["model"], strict=True)
    if ema is not None:
        if "ema" not in ckpt:
            raise ValueError(f"{out_dir}: the run keeps a weights' average (--ema) but its checkpoint holds none")
        ema.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["schedule"])
    random.set_state(ckpt["rng"])
    print(f"resuming {out_dir} after epoch {ckpt['epoch']}", file=sys.stderr)
    return ckpt["epoch"], ckpt["history"]


def run(cfg, data_path, out_dir, resume=False, init=None, overwrite=False, given=None, download=None):
    """Train for cfg["epochs"] epochs, checkpointing after each; returns the history. init: start from
    the model weights named by "pretrained:NAME" or a weights file (a fresh optimiser and schedule).

    A run already in out_dir (its last.npz) is continued only with resume=True and replaced only with
    overwrite=True; otherwise FileExistsError. The run holds out_dir while it lasts (runs.locked: another
    process's run there is runs.Busy). On resume the settings in `given` (default: all of cfg)
    are compared with the saved run's (see minit2t.runs.resumed_config). KeyboardInterrupt becomes
    Interrupted (saying where it stopped and how to resume). download: as load_cifar10's
    download_if_missing (None: the sample shipped with minit2t when no CIFAR-10 is found)."""
    _check_flags(resume, overwrite, init)
    created = runs.prepare_out(out_dir)                       # writable, before anything is read or trained
    path = os.path.join(out_dir, runs.CHECKPOINT)
    where = {"epoch": 0, "step": 0, "steps": 0, "saved": None}    # for the message of an interrupted run
    try:
        with runs.locked(out_dir):                            # one process's run at a time in out_dir
            cfg, saved = runs.open_run(out_dir, {**recipe.DEFAULTS, **cfg}, resume, overwrite, given)
            where["saved"] = saved["epoch"] if saved else None
            runs.remove_stale_temps(out_dir)
            if cfg["distill"]:
                init_source(cfg["distill"])                   # the teacher's file, before the data is read
            if cfg["backend"]:
                backends.set_backend(cfg["backend"])
            loader, *test = load_data(data_path, cfg, download)   # test: (images, labels)
            runs.check_same_data(saved, cfg, path)
            if cfg.get("steps"):                              # a budget of steps: the epochs it starts
                cfg["epochs"] = runs.epochs_for_steps(cfg["steps"], len(loader))
            model, opt, sched = build(cfg, len(loader))
            if init:
                init_from(model, init)
            ema = optim.EMA(model, cfg["ema"]) if cfg.get("ema") else None   # after --init: averages from there
            teacher = distill_teacher(cfg, model) if cfg.get("distill") else None
            if overwrite and os.path.exists(path):
                runs.remove_outputs(out_dir)
            start, history = (0, []) if saved is None else \
                _resume(out_dir, model, opt, sched, cfg, len(loader), ema)
            return train_epochs(model, opt, sched, loader, test, cfg, out_dir, start, history, where, ema, teacher)
    except KeyboardInterrupt:
        raise runs.Interrupted(runs.interrupted_message(path, where)) from None
    finally:
        runs.remove_if_empty(created)                         # a failed run leaves no empty folder behind


def _check_flags(resume, overwrite, init):
    if init and resume:
        raise ValueError("--init starts a new run from given weights and --resume continues DIR's own "
                         "checkpoint: use one of them")
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: use one of them")
    if init:
        init_source(init)                                     # a bad spec or file is refused before the data is read


def _resume(out_dir, model, opt, sched, cfg, steps_per_epoch, ema=None):
    """Restore the run in out_dir, its schedule stretched to cfg["epochs"]; (start epoch, history)."""
    saved_epochs = read_checkpoint_meta(os.path.join(out_dir, runs.CHECKPOINT))["run_config"]["epochs"]
    start, history = resume_state(out_dir, model, opt, sched, ema)
    runs.reschedule(sched, cfg, steps_per_epoch, saved_epochs)
    runs.repair_outputs(out_dir, history)                     # a kill between the checkpoint's save and theirs
    if start >= cfg["epochs"]:
        more = "" if cfg.get("steps") else f" (--resume --epochs N, N > {start}, extends it)"
        print(f"{out_dir}: the run has done all its {start} epochs, nothing to train{more}", file=sys.stderr)
    return start, history


def train_epochs(model, opt, sched, loader, test, cfg, out_dir, start, history, where, ema=None, teacher=None):
    """Epochs start+1 .. cfg["epochs"]: train, evaluate on test (images, labels) (and the weights'
    average, as ema_test_acc), then save the checkpoint, metrics.jsonl and curves.png into out_dir;
    returns the history."""
    path = os.path.join(out_dir, runs.CHECKPOINT)
    clock = history[-1]["wall_s"] if history else 0.0          # training steps only
    total = history[-1].get("total_s", clock) if history else 0.0   # and evaluation
    for epoch in range(start, cfg["epochs"]):
        where.update(epoch=epoch + 1, step=0, steps=len(loader))
        t0 = time.perf_counter()
        left = cfg["steps"] - sched.last_step if cfg.get("steps") else None
        loss, acc, rate = train_one_epoch(model, loader, epoch, opt, sched, cfg, cfg["epochs"], where, ema, left,
                                          teacher)
        clock += time.perf_counter() - t0
        row = dict(epoch=epoch + 1, train_loss=loss, train_acc=acc, images_per_s=rate,
                   lr=sched.get_last_lr()[-1], wall_s=clock, steps=sched.last_step)
        if scored(epoch + 1, cfg):
            where["step"] = None                              # the test evaluation
            row["test_acc"] = evaluate(model, *test)
            if ema is not None:
                with ema.swapped_in(model):
                    row["ema_test_acc"] = evaluate(model, *test)
        total += time.perf_counter() - t0
        history.append(dict(row, total_s=total))
        runs.remove_stale_temps(out_dir)
        save_checkpoint(path, model, opt, sched, epoch + 1, history, cfg, ema)
        where["saved"] = epoch + 1
        runlog.write_metrics(os.path.join(out_dir, "metrics.jsonl"), history)
        runlog.plot_curves(history, os.path.join(out_dir, "curves.png"))
        print(f"epoch {epoch + 1}: train loss {loss:.4f} acc {acc:.4f}, {scores(row, cfg)}", flush=True)
    return history


def scored(epoch, cfg):
    """Whether epoch (1, 2, ...) ends with a test evaluation: every --eval-every-th, and the last."""
    return epoch % cfg["eval_every"] == 0 or epoch == cfg["epochs"]


def scores(row, cfg):
    """A log row's test scores in words."""
    if "test_acc" not in row:
        return f"test not scored (--eval-every {cfg['eval_every']})"
    average = f", the weights' average {row['ema_test_acc']:.4f}" if "ema_test_acc" in row else ""
    return f"test accuracy {row['test_acc']:.4f}{average}"
