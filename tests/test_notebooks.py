"""The notebooks: committed with their outputs, and every one runs top to bottom without an error.

Each is executed again, in memory, by notebooks/build.py's execute(): in a fresh kernel of this interpreter
(sys.executable, not the first "python3" kernel spec Jupyter finds) whose working directory is notebooks/
and whose PYTHONPATH starts with this checkout; a failing cell fails the test with its traceback. The
"test" extra installs what this needs (nbclient, nbformat, ipykernel, matplotlib; no Jupyter front end).
The notebooks find CIFAR-10 as the library does (mt.data.load_cifar10(None): $MINIT2T_DATA, the cache
folder, else the sample shipped with minit2t), so none is skipped for want of data; a notebook that names
a file outside this repository would need one, and fails test_no_paths_outside_the_repository.
"""
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="notebook tests need ipykernel: pip install -e '.[test]'")
pytest.importorskip("matplotlib", reason="the notebooks draw with matplotlib: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_autograd", "02_soft_split", "03_t2t_attention", "04_the_model", "05_training_and_inside",
            "06_fewer_tokens", "07_cheaper_attention", "08_paper_claims", "09_mixed_precision"]
CELL_TIMEOUT = 300                                                     # seconds, per cell
_spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
MAX_TOTAL_BYTES = 2_700_000                                             # about 300 kB a notebook, for nine
BUILD_CELLS_AT_LEAST = {"01_autograd": 2, "02_soft_split": 2, "03_t2t_attention": 2, "04_the_model": 2,
                       "05_training_and_inside": 2}                            # notebook -> build cells
CHECK_CALL = re.compile(r"\b(ex|exercises)\.check\(")
SOLUTION_CALL = re.compile(r"\b(ex|exercises)\.solution\(")


def _code(nb):
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


PATH_LITERAL = re.compile(r"""(['"])((?:\.\./|/|~/)[^'"\s{}]+)\1""")   # "../x", "/x", "~/x" in quotes


def _outside_paths(code):
    """The quoted paths in `code` that lead out of the repository, read from notebooks/ as the kernel runs."""
    out = []
    for match in PATH_LITERAL.finditer(code):
        path = (NOTEBOOK_DIR / os.path.expanduser(match.group(2))).resolve()
        if not path.is_relative_to(ROOT):
            out.append(match.group(2))
    return out


def test_outside_paths_are_found():
    code = 'DATA = "../../shared/data/x.tar.gz"\nf = open("/tmp/a")\nok = "../benchmarks/results/r.json"\ns = "img/s"'
    assert _outside_paths(code) == ["../../shared/data/x.tar.gz", "/tmp/a"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_paths_outside_the_repository(path):
    """Data comes through the library (mt.data.load_cifar10(DATA) with DATA = None), never a path of this machine."""
    outside = _outside_paths(_code(nbformat.read(path, as_version=4)))
    assert not outside, (f"{path.name} names {outside}, outside the repository; use DATA = None and "
                         f"mt.data.load_cifar10(DATA, ...), which finds $MINIT2T_DATA, the cache or the sample")


def test_the_notebooks_are_there_and_small():
    assert [p.stem for p in NOTEBOOKS][:len(EXPECTED)] == EXPECTED
    total = sum(p.stat().st_size for p in NOTEBOOKS)
    assert total < MAX_TOTAL_BYTES, f"notebooks take {total:,} bytes, more than {MAX_TOTAL_BYTES:,}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs(path):
    """Every code cell was executed, in order, and none of the saved outputs is an error."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: execution counts {counts}; run notebooks/build.py"
    errors = [o.get("ename") for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: saved outputs hold errors {errors}"


CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")                      # \t, \b, \f, ... (not \n): a lost backslash


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_holds_no_control_characters(path):
    """LaTeX written through a non-raw string turns \\tau into a tab and "au"; the text must keep its backslashes."""
    bad = [(i, repr(m.group())) for i, cell in enumerate(nbformat.read(path, as_version=4).cells)
           if cell.cell_type == "markdown" for m in CONTROL.finditer(cell.source)]
    assert not bad, f"{path.name}: control characters (cell, char) {bad[:5]}"


def test_the_kernel_is_this_interpreter(tmp_path, monkeypatch):
    """A "python3" kernel spec found first (here a decoy on $JUPYTER_PATH that marks its kernels) is not used."""
    decoy = tmp_path / "jupyter" / "kernels" / "python3"
    decoy.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    decoy.joinpath("kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "decoy", "language": "python", "env": {"MINIT2T_DECOY_KERNEL": "1"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys; print(sys.executable, os.environ.get('MINIT2T_DECOY_KERNEL'), os.getpid())")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    printed = build.execute(tmp_path / "probe.ipynb", timeout=60).cells[0].outputs[0]["text"].split()
    assert printed[:2] == [sys.executable, "None"]
    with pytest.raises(ProcessLookupError):                   # and the kernel was stopped when it was done
        os.kill(int(printed[2]), 0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    if "import torch" in _code(nb):
        pytest.importorskip("torch", reason=f"{path.name} compares with PyTorch")
    nb = build.execute(path, timeout=CELL_TIMEOUT)   # raises CellExecutionError, with the traceback, on a failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]


def test_blank_body_keeps_the_cell_around_the_body():
    source = ('def my_fold(cols, H, W, k, s, p):\n    """Doc."""\n    # YOUR CODE: sum each column back\n'
              '    H2 = H\n\n    return ex.solution("fold")(cols, H2, W, k, s, p)\nex.check("fold", my_fold)')
    assert build.blank_body(source) == ('def my_fold(cols, H, W, k, s, p):\n    """Doc."""\n'
                                        '    # YOUR CODE: sum each column back\n    ...\nex.check("fold", my_fold)')


@pytest.mark.parametrize("name", sorted(BUILD_CELLS_AT_LEAST))
def test_build_cells(name):
    """Where a notebook introduces a piece the learner writes it: enough build cells, each filled with the
    library's reference (ex.solution, never pasted code) and checked at once with ex.check."""
    cells = [c for c in nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4).cells if build.is_build_cell(c)]
    assert len(cells) >= BUILD_CELLS_AT_LEAST[name], f"{name}: {len(cells)} build cells"
    for cell in cells:
        body = cell.source.split("# YOUR CODE", 1)[1]
        assert SOLUTION_CALL.search(body) and CHECK_CALL.search(cell.source), cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_copy(path, tmp_path):
    """notebooks/build.py --learner: outputs cleared, no reference left, every build cell still checks."""
    build.main(["--learner", str(tmp_path), path.stem])
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code)
    assert not SOLUTION_CALL.search(_code(nb)), f"{path.name}: a learner's copy still calls ex.solution"
    cells = [c for c in code if build.is_build_cell(c)]
    assert len(cells) >= BUILD_CELLS_AT_LEAST.get(path.stem, 0)
    assert all(CHECK_CALL.search(c.source) and "    ...\n" in c.source + "\n" for c in cells)
