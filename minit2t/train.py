"""Training a T2T-ViT on CIFAR-10: python -m minit2t train --data PATH --out DIR ...

Legend: B batch, K classes.
One epoch: shuffled, augmented batches -> forward -> cross-entropy (label smoothing) ->
backward -> gradient clipping -> AdamW step -> schedule step. After every epoch: test
accuracy, a line in DIR/metrics.jsonl, DIR/curves.png, and DIR/last.npz (atomic), from
which --resume continues to exactly the weights an uninterrupted run ends with.

Runs lose nothing and surprise no one: DIR is checked writable before anything else; a run
already in DIR is continued only with resume=True and replaced only with overwrite=True;
on resume, `epochs` may change (the schedule is recomputed and said) and `backend` may change,
while any other setting that differs from the saved run is refused, naming each one; Ctrl-C
(KeyboardInterrupt) becomes Interrupted, whose message says where the run stopped and how to
resume; temporary files left by a killed save are removed at the next start or save; a
folder the run created stays only if something was written into it.
"""
import glob
import json
import math
import os
import stat
import sys
import tempfile
import time

import numpy as np

from minit2t import backends, data, optim, random
from minit2t.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from minit2t.grad_mode import no_grad
from minit2t.models import create_model
from minit2t.models.zoo import CIFAR_INPUT, CIFAR_VARIANTS
from minit2t.nn.functional import cross_entropy
from minit2t.tensor import Tensor

CHECKPOINT = "last.npz"
RUN_KEYS = ("model", "epochs", "batch_size", "lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing",
            "clip_grad", "mixup", "seed", "backend", "train_subset", "crop_padding")
DEFAULTS = dict(model="t2t_vit_cifar", epochs=30, batch_size=128, lr=1e-3, min_lr=1e-5, weight_decay=0.05,
                warmup_epochs=2.0, label_smoothing=0.1, clip_grad=1.0, mixup=False, seed=0, backend=None,
                train_subset=None, crop_padding=4)
CHANGEABLE_ON_RESUME = ("epochs", "backend")       # every other setting of a resumed run stays as saved
OUTPUTS = (CHECKPOINT, "metrics.jsonl", "curves.png")
STALE_TEMPS = (".tmp-*.npz", "metrics.jsonl.tmp", "curves.png.tmp.png")   # what a killed save leaves behind
_STARTED = time.time()                             # temporary files older than this are no one's


class NonFiniteLoss(RuntimeError):
    pass


class NonFiniteOutput(ValueError):
    """The model gave NaN or inf logits: an error, never a predicted class."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; str() is the one line saying where it stopped and how to resume."""


def predict(model, images, batch_size=256, progress=None):
    """Logits (N, K) of `model` in eval mode for uint8 images (N, 3, 32, 32), normalised as in training.
    progress: a stream (e.g. sys.stderr) for a line of images done, images/s and ETA, rewritten in place."""
    was_training = model.training
    model.eval()
    out, done, start = [], 0, time.perf_counter()
    try:
        with no_grad():
            for x, _ in data.DataLoader(images, np.zeros(len(images), np.int64), batch_size):
                out.append(model(Tensor(x)).numpy())                  # (b, K)
                done += len(x)
                if progress is not None:
                    _eval_progress(progress, done, len(images), start)
    finally:
        model.train(was_training)
        if progress is not None and done:
            progress.write("\n")                                    # what follows starts its own line
            progress.flush()
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def _eval_progress(stream, done, total, start):
    rate = done / max(time.perf_counter() - start, 1e-9)
    bar = "#" * int(20 * done / max(total, 1))
    stream.write(f"\reval [{bar:<20}] {done:,}/{total:,} images {rate:.1f} img/s ETA {(total - done) / rate:.0f}s ")
    stream.flush()


def evaluate(model, images, labels, batch_size=256, progress=None):
    """Top-1 accuracy of `model` on uint8 images (N, 3, 32, 32) in eval mode; NonFiniteOutput (naming
    the non-finite weights, if any) when a logit is NaN or inf, which would otherwise count as class 0."""
    if len(labels) == 0:
        return 0.0
    logits = predict(model, images, batch_size, progress)             # (N, K)
    check_finite_outputs(model, logits)
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())


def check_finite_outputs(model, logits):
    """NonFiniteOutput unless every logit is finite; the message counts the images and names bad weights."""
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))            # images with a NaN or inf logit
    if bad.size == 0:
        return
    weights = [name for name, value in model.state_dict().items()
               if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]
    named = ", ".join(weights[:3]) + (f", ... ({len(weights)} in all)" if len(weights) > 3 else "")
    cause = f"the weights hold NaN or inf in {named}" if weights else "the weights are all finite"
    raise NonFiniteOutput(f"the model's outputs are NaN or inf for {bad.size:,} of {len(logits):,} images "
                          f"(the first: image {bad[0]}), so no accuracy can be given; {cause}")


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


def train_one_epoch(model, loader, epoch, opt, sched, cfg, epochs, where=None):
    """One pass over the loader; returns (mean loss, train accuracy, images/s). where["step"] follows
    the step being run (1-based), for the message of an interrupted run."""
    model.train()
    progress = Progress(epoch, epochs, len(loader))
    total_loss = total_correct = total = 0
    rate = 0.0
    try:
        for step, (x, y) in enumerate(loader.iter_epoch(epoch)):
            if where is not None:
                where["step"] = step + 1
            logits = model(Tensor(x))                                 # (B, K)
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
    finally:
        progress.close()                                              # any message after starts a new line
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
                             crop_padding=cfg.get("crop_padding", 4))
    if len(loader) == 0:
        raise ValueError(f"batch size {cfg['batch_size']} is larger than the {len(train_x)} training images")
    cfg["data"] = "sample" if data.is_sample(location) else os.path.abspath(location)
    cfg["train_images"] = len(train_x)
    return loader, test_x, test_y


def resume_state(out_dir, model, opt, sched):
    """Restore model, optimiser, schedule and RNG from out_dir's checkpoint; returns (start epoch, history)."""
    ckpt = load_checkpoint(os.path.join(out_dir, CHECKPOINT), model, opt)   # shapes checked before reading
    model.load_state_dict(ckpt["model"], strict=True)
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["schedule"])
    random.set_state(ckpt["rng"])
    print(f"resuming {out_dir} after epoch {ckpt['epoch']}", file=sys.stderr)
    return ckpt["epoch"], ckpt["history"]


def saved_run_config(out_dir):
    """The run settings stored in out_dir's checkpoint, or None if there is none."""
    path = os.path.join(out_dir, CHECKPOINT)
    return read_checkpoint_meta(path)["run_config"] if os.path.exists(path) else None


def write_metrics(out_dir, history):
    """DIR/metrics.jsonl, one line per epoch, rewritten atomically from the checkpoint's history."""
    path = os.path.join(out_dir, "metrics.jsonl")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    os.replace(tmp, path)


def run(cfg, data_path, out_dir, resume=False, init=None, overwrite=False, given=None, download=None):
    """Train for cfg["epochs"] epochs, checkpointing after each; returns the history. init: start from
    the model weights named by "pretrained:NAME" or a weights file (a fresh optimiser and schedule).

    A run already in out_dir (its last.npz) is continued only with resume=True and replaced only with
    overwrite=True; otherwise FileExistsError. On resume the settings in `given` (default: all of cfg)
    are compared with the saved run's: a different epochs (the schedule recomputed, said in a line) or
    backend applies; any other difference is a ValueError naming each. KeyboardInterrupt becomes
    Interrupted (saying where it stopped and how to resume). download: as load_cifar10's
    download_if_missing (None: the sample shipped with minit2t when no CIFAR-10 is found)."""
    if init and resume:
        raise ValueError("--init starts a new run from given weights and --resume continues DIR's own "
                         "checkpoint: use one of them")
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: use one of them")
    if init:
        from minit2t.hub import init_from, init_source
        init_source(init)                                     # a bad spec or file is refused before the data is read
    cfg = {**DEFAULTS, **cfg}
    created = prepare_out(out_dir)                            # writable, before anything is read or trained
    path = os.path.join(out_dir, CHECKPOINT)
    where = {"epoch": 0, "step": 0, "steps": 0, "saved": None}    # for the message of an interrupted run
    try:
        existing = os.path.exists(path)
        if existing and not (resume or overwrite):
            raise FileExistsError(f"{path} holds a run{_progress_of(path)}: --resume continues it, --overwrite "
                                  f"starts a new run in its place")
        saved = read_checkpoint_meta(path) if resume and existing else None
        if saved is not None:
            cfg = resumed_config(saved["run_config"], cfg, given, saved["epoch"], path)
            where["saved"] = saved["epoch"]
        elif resume:
            print(f"no checkpoint {path} yet: starting a new run", file=sys.stderr)
        remove_stale_temps(out_dir)
        backends.set_backend(cfg["backend"]) if cfg["backend"] else None
        loader, test_x, test_y = load_data(data_path, cfg, download)
        if saved is not None and saved["run_config"].get("train_images", cfg["train_images"]) != cfg["train_images"]:
            raise ValueError(f"--resume: the run in {path} trained on {saved['run_config']['train_images']:,} images "
                             f"({saved['run_config'].get('data')}), this data gives {cfg['train_images']:,} "
                             f"({cfg['data']}): pass the run's data with --data")
        model, opt, sched = build(cfg, len(loader))
        if init:
            init_from(model, init)
        if overwrite and existing:
            remove_outputs(out_dir)
        start, history = resume_state(out_dir, model, opt, sched) if saved is not None else (0, [])
        if saved is not None:
            reschedule(sched, cfg, len(loader), saved["run_config"]["epochs"])
            if start >= cfg["epochs"]:
                print(f"{path}: the run has done all its {start} epochs, nothing to train (--resume --epochs N, "
                      f"N > {start}, extends it)", file=sys.stderr)
        clock = history[-1]["wall_s"] if history else 0.0          # training steps only
        total = history[-1].get("total_s", clock) if history else 0.0   # and evaluation
        for epoch in range(start, cfg["epochs"]):
            where.update(epoch=epoch + 1, step=0, steps=len(loader))
            t0 = time.perf_counter()
            loss, acc, rate = train_one_epoch(model, loader, epoch, opt, sched, cfg, cfg["epochs"], where)
            clock += time.perf_counter() - t0
            where["step"] = None                                  # the test evaluation
            test_acc = evaluate(model, test_x, test_y)
            total += time.perf_counter() - t0
            history.append(dict(epoch=epoch + 1, train_loss=loss, train_acc=acc, test_acc=test_acc,
                                images_per_s=rate, lr=sched.get_last_lr()[-1], wall_s=clock, total_s=total))
            remove_stale_temps(out_dir)
            save_checkpoint(path, model, opt, sched, epoch + 1, history, cfg)
            where["saved"] = epoch + 1
            write_metrics(out_dir, history)
            plot_curves(history, os.path.join(out_dir, "curves.png"))
            print(f"epoch {epoch + 1}: train loss {loss:.4f} acc {acc:.4f}, test accuracy {test_acc:.4f}", flush=True)
        return history
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(path, where)) from None
    finally:
        remove_if_empty(created)                              # a failed run leaves no empty folder behind


# ---- run safety: the output folder, an existing run, resuming, interruption ------------------------------
def prepare_out(out_dir):
    """Create out_dir (and its parents) if needed, then write and remove a probe file in it, so that a
    folder that cannot be written is an error before any data is read; returns the folders created."""
    created, folder = [], os.path.abspath(out_dir)
    while not os.path.exists(folder) and folder != os.path.dirname(folder):
        created.insert(0, folder)                             # outermost first
        folder = os.path.dirname(folder)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".minit2t-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        remove_if_empty(created)
        raise OSError(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None
    return created


def remove_if_empty(folders):
    """Remove those of `folders` (outermost first) that are empty, innermost first."""
    for folder in reversed(folders):
        try:
            os.rmdir(folder)                                  # only ever removes an empty folder
        except OSError:
            return


def remove_stale_temps(out_dir, before=None):
    """Delete what killed saves left in out_dir: files named as STALE_TEMPS and last modified before
    `before` (default: when this process started), so a save in progress is never touched."""
    before = _STARTED if before is None else before
    count = size = 0
    for pattern in STALE_TEMPS:
        for temp in glob.glob(os.path.join(glob.escape(out_dir), pattern)):
            try:
                st = os.lstat(temp)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < before:
                    os.unlink(temp)
                    count, size = count + 1, size + st.st_size
            except OSError:
                continue
    if count:
        print(f"removed {count} temporary file{'s' if count > 1 else ''} ({size / 1e6:.1f} MB) left in {out_dir} "
              f"by an interrupted save", file=sys.stderr)
    return count


def remove_outputs(out_dir):
    """--overwrite: the previous run's checkpoint, metrics and curves go before the new run starts."""
    gone = [name for name in OUTPUTS if os.path.exists(os.path.join(out_dir, name))]
    note = _progress_of(os.path.join(out_dir, CHECKPOINT))
    for name in gone:
        os.unlink(os.path.join(out_dir, name))
    print(f"--overwrite: removed the previous run{note} from {out_dir} ({', '.join(gone)})", file=sys.stderr)


def _progress_of(path):
    """' (epoch K of N)' for the checkpoint at path, or '' when it cannot be read."""
    try:
        meta = read_checkpoint_meta(path)
        return f" (epoch {meta['epoch']} of {meta['run_config']['epochs']})"
    except Exception:  # noqa: BLE001 - only a nicer message is lost
        return ""


def _flag(key):
    return "--" + key.replace("_", "-") if key in RUN_KEYS else key


def resumed_config(saved, cfg, given, done, path):
    """The settings a resumed run continues with: the saved run's, with a different epochs or backend
    from `given` (default: cfg) applied; any other setting given that differs is refused, naming each."""
    given = cfg if given is None else given
    out, refused = dict(saved), []
    for key, value in given.items():
        if key in ("data", "train_images"):
            continue
        old = saved.get(key, DEFAULTS.get(key))
        if json.loads(json.dumps(value)) == old:
            continue
        if key in CHANGEABLE_ON_RESUME:
            out[key] = value
        else:
            refused.append(f"{_flag(key)} {value} (the run's: {old})")
    if refused:
        raise ValueError(f"--resume continues {path} with the settings it was started with, and these differ: "
                         f"{', '.join(refused)}; drop them to resume, or start a new run (--overwrite, or "
                         f"another --out)")
    if out["epochs"] < done:
        raise ValueError(f"--resume --epochs {out['epochs']}: {path} has already done {done} epochs")
    if out.get("backend") != saved.get("backend"):
        print(f"resuming on the {out['backend']} backend (the run used "
              f"{saved.get('backend') or 'the default backend'}): same weights, other kernels", file=sys.stderr)
    return out


def reschedule(sched, cfg, steps_per_epoch, saved_epochs):
    """Stretch (or shorten) the restored warm-up + cosine schedule to cfg["epochs"], saying so in a line."""
    total = max(cfg["epochs"] * steps_per_epoch, 1)
    if total == sched.total_steps:
        return
    if total <= sched.warmup_steps:
        raise ValueError(f"--resume --epochs {cfg['epochs']}: {total:,} steps would end inside the run's warm-up "
                         f"of {sched.warmup_steps:,} steps")
    before = sched.get_last_lr()[-1]
    sched.load_state_dict({**sched.state_dict(), "total_steps": total})
    print(f"--epochs {saved_epochs} -> {cfg['epochs']}: the warm-up + cosine schedule is recomputed over "
          f"{cfg['epochs']} epochs ({total:,} steps, warm-up {sched.warmup_steps:,}); at step "
          f"{sched.last_step:,} the learning rate goes from {before:.3g} to {sched.get_last_lr()[-1]:.3g}, "
          f"falling to {sched.min_lr:g} at the end of epoch {cfg['epochs']}", file=sys.stderr)


def interrupted_message(path, where):
    """The one line an interrupted run ends with."""
    if where["epoch"] == 0:
        at = "before training started"
    elif where["step"] is None:
        at = f"at epoch {where['epoch']}, in the test evaluation"
    else:
        at = f"at epoch {where['epoch']}, step {where['step']} of {where['steps']}"
    if where["saved"]:
        return f"interrupted {at}; the last checkpoint is {path} (epoch {where['saved']}): rerun with --resume"
    return f"interrupted {at}, before the first checkpoint: nothing was saved; rerun the command to start again"


def plot_curves(history, path):
    """Loss and accuracy against epochs (needs matplotlib; skipped with a note without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib, a dependency of minit2t, is not installed: skipping curves.png "
              "(pip install matplotlib)", file=sys.stderr)
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
