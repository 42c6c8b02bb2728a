"""Execute the notebooks in place, saving their outputs (they are committed with them).

    python notebooks/build.py                      # every notebooks/*.ipynb
    python notebooks/build.py 02_soft_split        # the ones named

Each runs in a fresh kernel of this interpreter (sys.executable: ipykernel started by the Python that runs
this script, not the first "python3" kernel Jupyter finds, which may be another environment's), with
notebooks/ as its working directory and the repository root first on its PYTHONPATH, so it imports this
checkout's minit2t. tests/test_notebooks.py runs them through execute() too.
"""
import os
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


def main(names):
    paths = [HERE / f"{n}.ipynb" for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1e3
        print(f"{path.name:<26} {time.perf_counter() - start:6.1f} s   {size:7.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1:])
