"""A training run as a shipped model: python -m minit2t export --checkpoint DIR/last.npz --out NAME.npz

Writes what mt.pretrained and `eval --checkpoint` read (hub.export_pretrained: the weights, the model's
config, and a default_cfg with the input size and the CIFAR-10 normalisation `train` used) and, beside it,
the run's log and curves from the checkpoint's own history: NAME.metrics.jsonl and NAME.curves.png, the
files minit2t/weights/ holds for each shipped model. ema=True (--ema) exports the weights' average that
`train --ema` kept, instead of the weights. Nothing is overwritten without overwrite=True (--overwrite).
Put the three files (and a NAME.md card) in minit2t/weights/ to ship them.

An export is all its files or none. The three are written into a folder of its own beside NAME.npz
(.NAME.export-PID-XXXXXXXX), then moved into place along a plan saved there first: the files already
there moved aside into that folder, then the log, the curves and, last, the model file, so that NAME.npz
is there only beside its own log and curves. A failure or Ctrl-C puts everything back as it was; an
export killed outright (its process gone) is put back the same way, from its plan, at the next export of
NAME, said in one line, before that export looks at what is there.
"""
import json
import os
import re
import sys
import tempfile

from minit2t.checkpoint import read_checkpoint_meta
from minit2t.hub import export_pretrained, load_model
from minit2t.models.zoo import default_cfg
from minit2t.runlog import plot_curves, write_metrics
from minit2t.runs import pid_alive

KINDS = (".npz", ".metrics.jsonl", ".curves.png")          # the model file, its log, its curves
PLAN = "plan.json"


def export_run(checkpoint, out, ema=False, overwrite=False):
    """Write the run whose training checkpoint is `checkpoint` as the shipped model file `out` (NAME.npz),
    its log and curves beside it; returns the paths written."""
    if not isinstance(out, str) or not out.endswith(".npz") or os.path.basename(out) == ".npz":
        raise ValueError(f"--out must name the model file, NAME.npz; got {out!r}")
    folder, base = os.path.dirname(os.path.abspath(out)), os.path.basename(out)[:-len(".npz")]
    paths = [out[:-len(".npz")] + kind for kind in KINDS]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out {out}: no folder {os.path.dirname(out)}; create it first")
    undo_killed_exports(folder, base, out)
    there = [p for p in paths if os.path.lexists(p)]
    for p in there:
        if os.path.isdir(p) and not os.path.islink(p):
            raise IsADirectoryError(f"{p} is a folder, not a file an export writes: give --out another NAME")
    if there and not overwrite:
        raise FileExistsError(f"{there[0]} exists: pass --overwrite to replace it (and its log and curves)")
    meta = read_checkpoint_meta(checkpoint)          # a training checkpoint, or a one-line LoadError
    model, _ = load_model(checkpoint, ema=ema)
    model.default_cfg = default_cfg(meta["run_config"]["model"], model.config, cifar=True)   # train's data
    stage, plan = tempfile.mkdtemp(dir=folder, prefix=f".{base}.export-{os.getpid()}-"), []
    try:
        new = [os.path.join(stage, "new" + kind) for kind in KINDS]
        export_pretrained(model, new[0])
        write_metrics(new[1], meta["history"])
        plot_curves(meta["history"], new[2])          # without matplotlib: no curves (said)
        plan = [(p, os.path.join(stage, "old" + kind)) for p, kind in zip(paths, KINDS) if p in there]
        plan += [(new[i], paths[i]) for i in (1, 2, 0) if os.path.exists(new[i])]   # the model file last
        _write_plan(stage, folder, plan)
        for src, dst in plan:
            _move(src, dst)
    except BaseException:
        _undo(plan)                                   # raises only if it cannot: then the next export undoes it
        _remove(stage)
        raise
    _remove(stage)
    return [p for p in paths if os.path.exists(p)]


def _move(src, dst):
    os.replace(src, dst)                              # one rename, atomic


def _write_plan(stage, folder, plan):
    """The moves, as names relative to the folder, saved (atomically) before the first is made."""
    tmp = os.path.join(stage, PLAN + ".tmp")
    with open(tmp, "w") as f:
        json.dump([[os.path.relpath(p, folder) for p in move] for move in plan], f)
    os.replace(tmp, os.path.join(stage, PLAN))


def _undo(plan):
    """Reverse the moves of `plan` that were made, last first: with every later move reversed, a move was
    made when its source is gone. Returns how many were."""
    made = 0
    for src, dst in reversed(plan):
        if not os.path.lexists(src) and os.path.lexists(dst):
            os.replace(dst, src)
            made += 1
    return made


def _remove(stage):
    """Remove an export's own folder and the files in it."""
    for name in os.listdir(stage):
        os.unlink(os.path.join(stage, name))
    os.rmdir(stage)


def undo_killed_exports(folder, base, out):
    """Put back what an export of NAME whose process is gone had moved, from its plan, and remove its
    folder; says so in one line. Only folders named as an export of this NAME makes are looked at."""
    own = re.compile(r"\." + re.escape(base) + r"\.export-(\d{1,9})-[a-z0-9_]+")
    for name in sorted(os.listdir(folder)):
        found = own.fullmatch(name)
        stage = os.path.join(folder, name)
        if not found or not os.path.isdir(stage) or os.path.islink(stage) or pid_alive(int(found[1])):
            continue
        plan = _read_plan(stage, folder, base)
        whole = bool(plan) and not os.path.lexists(plan[-1][0])   # its model file was moved in: it finished
        undone = 0 if whole else _undo(plan)
        _remove(stage)
        what = ("after its last move: that export is whole" if whole else
                f"after {undone} of its {len(plan)} moves: undone, what was there before is back" if plan else
                "before it moved anything")
        print(f"{out}: an earlier export (pid {found[1]}) was killed {what}; removed its temporary files ({name})",
              file=sys.stderr)


def _read_plan(stage, folder, base):
    """The saved moves of a killed export, checked to name only NAME's files and its own folder's."""
    try:
        with open(os.path.join(stage, PLAN)) as f:
            plan = json.load(f)
    except FileNotFoundError:
        return []                                     # killed before the first move: nothing moved
    mine = {base + kind for kind in KINDS} | {os.path.join(os.path.basename(stage), side + kind)
                                              for side in ("old", "new") for kind in KINDS}
    if not (isinstance(plan, list) and all(isinstance(m, list) and len(m) == 2 and set(m) <= mine for m in plan)):
        raise ValueError(f"{os.path.join(stage, PLAN)}: not the plan of an export of {base}.npz; remove the "
                         f"folder {stage} by hand once you have checked it")
    return [(os.path.join(folder, src), os.path.join(folder, dst)) for src, dst in plan]
