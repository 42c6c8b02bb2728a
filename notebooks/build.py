"""Execute the notebooks in place, saving their outputs (they are committed with them).

    python notebooks/build.py                      # every notebooks/*.ipynb
    python notebooks/build.py 02_soft_split        # the ones named
    python notebooks/build.py --learner OUTDIR     # learner copies of every notebook (or of the ones named)

Each runs in a fresh kernel of this interpreter (sys.executable: ipykernel started by the Python that runs
this script, not the first "python3" kernel Jupyter finds, which may be another environment's), with
notebooks/ as its working directory and the repository root first on its PYTHONPATH, so it imports this
checkout's minit2t. tests/test_notebooks.py runs them through execute() too.

A learner's copy (--learner OUTDIR) is the notebook with its outputs cleared and every build cell's function
body after its "# YOUR CODE" comment line replaced by `...` (the convention of minit2t/exercises: the
committed notebook holds the reference there, ex.solution(name), so that it runs and its checks pass).
"""
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KERNEL = "minit2t-this-python"
YOUR_CODE = re.compile(r"^(\s+)# YOUR CODE")                # the comment line that opens a build cell's body


def this_python_kernel(folder):
    """A KernelManager for ipykernel under sys.executable, from a kernel spec written into `folder` (the
    only folder its spec manager searches)."""
    write_kernel_spec(os.path.join(folder, KERNEL), overrides={"display_name": f"Python ({sys.executable})"})
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[folder]))


def execute(path, timeout=300):
    """Run every cell of the notebook at `path`; return the executed notebook (a failing cell raises
    nbclient's CellExecutionError, with its traceback)."""
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([old] if old else []))
    try:
        with tempfile.TemporaryDirectory(prefix="minit2t-kernel-") as folder:
            km = this_python_kernel(folder)
            try:
                NotebookClient(nb, km=km, timeout=timeout,
                               resources={"metadata": {"path": str(Path(path).resolve().parent)}}).execute()
            finally:                                       # nbclient stops only the kernels it started
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    return nb


def is_build_cell(cell):
    return cell.cell_type == "code" and any(YOUR_CODE.match(line) for line in cell.source.splitlines())


def blank_body(source):
    """A build cell's source with each body after a "# YOUR CODE" line (the lines indented at least as far,
    up to the first line that is not) replaced by one line `...` at the comment's indentation."""
    out, indent = [], None
    for line in source.splitlines():
        if indent is not None and (not line.strip() or line.startswith(indent)):
            continue                                       # still the reference's body: dropped
        if indent is not None:
            out.append(indent + "...")
            indent = None
        out.append(line)
        match = YOUR_CODE.match(line)
        if match:
            indent = match.group(1)
    if indent is not None:
        out.append(indent + "...")
    return "\n".join(out)


def learner_copy(nb):
    """The notebook a learner starts from: no outputs, and `...` where each build cell's body was."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if is_build_cell(cell):
                cell.source = blank_body(cell.source)
    return nb


def write_learner_copies(paths, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = learner_copy(nbformat.read(path, as_version=4))
        nbformat.write(nb, folder / path.name)
        print(f"{folder / path.name}: {sum(map(is_build_cell, nb.cells))} build cells to write")


def main(names):
    learner = None
    if names and names[0] == "--learner":
        if len(names) < 2:
            raise SystemExit("usage: python notebooks/build.py --learner OUTDIR [NOTEBOOK ...]")
        learner, names = names[1], names[2:]
    paths = [HERE / f"{n}.ipynb" for n in names] if names else sorted(HERE.glob("*.ipynb"))
    if learner is not None:
        return write_learner_copies(paths, learner)
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1e3
        print(f"{path.name:<26} {time.perf_counter() - start:6.1f} s   {size:7.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1:])
