"""Execute the notebooks in place, saving their outputs (they are committed with them).

    python notebooks/build.py                      # every notebooks/*.ipynb
    python notebooks/build.py 02_soft_split        # the ones named

Each runs in a fresh python3 kernel whose working directory is notebooks/ and whose
PYTHONPATH starts with the repository root, so it imports this checkout's minit2t.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def execute(path, timeout=300):
    """Run every cell of the notebook at `path`; return the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([old] if old else []))
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
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
