"""A training run's folder and settings: DIR/last.npz, metrics.jsonl and curves.png.

Runs lose nothing and surprise no one: DIR is checked writable before anything else; a run
already in DIR is continued only with resume=True and replaced only with overwrite=True;
on resume, the settings minit2t.recipe declares changeable may change (`epochs`: the schedule is
recomputed and said; `backend`), while any other setting that differs from the saved run is refused,
naming each one; Ctrl-C
(KeyboardInterrupt) becomes Interrupted, whose message says where the run stopped and how to
resume; temporary files left by a killed save are removed at the next start or save; a
folder the run created stays only if something was written into it; one run at a time (DIR/.lock);
on resume, metrics.jsonl and curves.png are rewritten from the checkpoint when out of line with it.
minit2t.train runs the epochs; this module keeps its folder.
"""
import contextlib
import fcntl
import glob
import json
import os
import stat
import sys
import tempfile
import time

from minit2t.checkpoint import read_checkpoint_meta
from minit2t.runlog import plot_curves, read_metrics, write_metrics
from minit2t.recipe import CHANGEABLE_ON_RESUME, DEFAULTS, flag

CHECKPOINT = "last.npz"
LOCK = ".lock"                                     # the pid of the process whose run the folder is
OUTPUTS = (CHECKPOINT, "metrics.jsonl", "curves.png")
STALE_TEMPS = (".tmp-*.npz", "metrics.jsonl.tmp", "curves.png.tmp.png")   # what a killed save leaves behind
_STARTED = time.time()                             # temporary files older than this are no one's


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; str() is the one line saying where it stopped and how to resume."""


class Busy(RuntimeError):
    """Another process's run holds the folder."""


@contextlib.contextmanager
def locked(out_dir):
    """Hold out_dir for this process's run: DIR/.lock, flock'ed (the kernel lets go of it when the process
    dies, however it dies) and holding the pid; Busy names the holder; removed when the block ends."""
    path = os.path.join(out_dir, LOCK)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _pid_in(fd)
            os.close(fd)
            if not isinstance(exc, BlockingIOError):
                raise
            raise Busy(f"{out_dir} holds a run in progress (pid {holder or '?'}, {path}): one run at a time in a "
                       f"folder; wait for it to end, or give another --out") from None
        if _same_file(fd, path):
            break
        os.close(fd)                                  # released and removed while we opened it: open the new one
    try:
        left = _pid_in(fd)
        if left and left != os.getpid():
            state = "is no longer running" if not pid_alive(left) else "no longer holds it"
            print(f"{path}: taking over the lock of pid {left}, which {state} (a run that ended without "
                  f"releasing it)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)                           # while still held: the next run makes a fresh file
        os.close(fd)


def _pid_in(fd):
    """The pid a lock file holds, or None."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def pid_alive(pid):
    """Whether a process with this pid is running on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                           # someone else's
        return True
    return pid > 0


def open_run(out_dir, cfg, resume, overwrite, given):
    """(settings, saved checkpoint metadata or None) for a run in out_dir: refuses to touch an existing run
    without resume or overwrite; on resume, the saved run's settings as resumed_config rules."""
    path = os.path.join(out_dir, CHECKPOINT)
    existing = os.path.exists(path)
    if existing and not (resume or overwrite):
        raise FileExistsError(f"{path} holds a run{progress_of(path)}: --resume continues it, --overwrite "
                              f"starts a new run in its place")
    if resume and not existing:
        print(f"no checkpoint {path} yet: starting a new run", file=sys.stderr)
    if not (resume and existing):
        return cfg, None
    saved = read_checkpoint_meta(path)
    return resumed_config(saved["run_config"], cfg, given, saved["epoch"], path), saved


def check_same_data(saved, cfg, path):
    """A resumed run must see the data it was started on (as many training images)."""
    if saved is None or saved["run_config"].get("train_images", cfg["train_images"]) == cfg["train_images"]:
        return
    run = saved["run_config"]
    raise ValueError(f"--resume: the run in {path} trained on {run['train_images']:,} images ({run.get('data')}), "
                     f"this data gives {cfg['train_images']:,} ({cfg['data']}): pass the run's data with --data")


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
    note = progress_of(os.path.join(out_dir, CHECKPOINT))
    for name in gone:
        os.unlink(os.path.join(out_dir, name))
    print(f"--overwrite: removed the previous run{note} from {out_dir} ({', '.join(gone)})", file=sys.stderr)


def progress_of(path):
    """' (epoch K of N)' for the checkpoint at path, or '' when it cannot be read."""
    try:
        meta = read_checkpoint_meta(path)
        return f" (epoch {meta['epoch']} of {meta['run_config']['epochs']})"
    except Exception:  # noqa: BLE001 - only a nicer message is lost
        return ""


def resumed_config(saved, cfg, given, done, path):
    """The settings a resumed run continues with: the saved run's, with a different epochs or backend
    from `given` (default: cfg) applied; any other setting given that differs is refused, naming each."""
    given = cfg if given is None else given
    out, refused = {**DEFAULTS, **saved}, []                    # options added since it was saved: their defaults
    for key, value in given.items():
        if key in ("data", "train_images"):
            continue
        old = saved.get(key, DEFAULTS.get(key))
        if json.loads(json.dumps(value)) == old:
            continue
        if key in CHANGEABLE_ON_RESUME:
            out[key] = value
        else:
            refused.append(f"{flag(key)} {value} (the run's: {old})")
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


def repair_outputs(out_dir, history):
    """Bring metrics.jsonl and curves.png back in line with the checkpoint's history (a kill between the
    checkpoint's save and theirs leaves them behind): rewrite each that is missing or disagrees, saying so."""
    metrics, curves = (os.path.join(out_dir, name) for name in OUTPUTS[1:])
    try:
        rows = read_metrics(metrics)
    except (OSError, ValueError):
        rows = None                                   # missing or unreadable
    log = rows != json.loads(json.dumps(history))
    plot = not os.path.exists(curves) or os.path.getmtime(curves) < os.path.getmtime(os.path.join(out_dir, CHECKPOINT))
    if not (log or plot):
        return
    held = "" if not log else "; metrics.jsonl " + ("missing or unreadable" if rows is None else f"held {len(rows)}")
    print(f"{out_dir}: {' and '.join(n for n, bad in zip(OUTPUTS[1:], (log, plot)) if bad)} out of line with "
          f"{CHECKPOINT} ({len(history)} epochs{held}): rewritten from its history", file=sys.stderr)
    if log:
        write_metrics(metrics, history)
    if plot:
        plot_curves(history, curves)


def total_steps(cfg, steps_per_epoch):
    """The run's optimizer steps in all: cfg["steps"] when given (a budget), else its epochs'."""
    return cfg.get("steps") or max(cfg["epochs"] * steps_per_epoch, 1)


def epochs_for_steps(steps, steps_per_epoch):
    """The epochs a budget of `steps` starts (the last one may end early)."""
    return -(-steps // steps_per_epoch)


def reschedule(sched, cfg, steps_per_epoch, saved_epochs):
    """Stretch (or shorten) the restored warm-up + cosine schedule to cfg["epochs"], saying so in a line."""
    total = total_steps(cfg, steps_per_epoch)
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
