"""Installing as a user does: what the base install needs and ships, why the C backend is absent when
it is, C tests that skip (with that reason) instead of failing, and the README's first command.

The whole user path (a fresh virtual environment, `pip install -e .`, the README's first command) is
run by .ci/run; these tests check its parts without a network or a new environment.
"""
import ast
import fnmatch
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minit2t import data
from minit2t.data import cifar

ROOT = Path(__file__).resolve().parent.parent
SHARED_COPY = ROOT.parent / "shared" / "data" / "cifar-10-binary.tar.gz"


def setup_call():
    """The keyword arguments of setup(...) in setup.py, as literals where they are literals."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "setup")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            pass
    return out


def names(requirements):
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def python(code, **env):
    """(exit code, stdout + stderr) of `python -c code` in this checkout."""
    environ = {**os.environ, **env}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([environ["PYTHONPATH"]] if environ.get("PYTHONPATH")
                                                           else []))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          cwd=str(ROOT), timeout=900)
    return done.returncode, done.stdout + done.stderr


def c_extension_built():
    from minit2t.backends import _cmem
    return _cmem.lib is not None


# ---- the base install: what it requires and what it ships ---------------------------------------------------
def test_base_install_requires_what_the_package_runs_on():
    """cffi loads the compiled kernels (_cffi_backend) and matplotlib draws DIR/curves.png: both are needed
    by a plain `pip install -e .`, not only by extras that happen to pull them in."""
    required = names(setup_call()["install_requires"])
    assert {"numpy", "cffi", "matplotlib"} <= required, required
    build = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'requires\s*=\s*\[[^\]]*"cffi', build), "cffi must be a build requirement too"


def test_package_data_ships_the_sample_and_the_model():
    patterns = setup_call()["package_data"]["minit2t"]
    package = ROOT / "minit2t"
    for folder in ("data/sample", "weights"):
        files = [p.relative_to(package).as_posix() for p in (package / folder).iterdir() if p.is_file()]
        assert files, folder
        left_out = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
        assert not left_out, f"not in package_data, so not installed by `pip install .`: {left_out}"


# ---- the C backend: the real reason when it cannot load; its tests skip with that reason -------------------
@pytest.mark.skipif(not c_extension_built(), reason="the C extension does not load here")
def test_missing_cffi_is_named_not_a_compiler():
    rc, out = python("import sys; sys.modules['_cffi_backend'] = None\n"
                     "import minit2t.backends as b\n"
                     "try:\n    b.get_backend('c')\nexcept RuntimeError as e:\n    print('REASON', e)\n")
    assert rc == 0, out
    reason = out.split("REASON", 1)[1]
    assert "cffi" in reason and "pip install cffi" in reason and "is built but cannot load" in reason, reason
    assert "C compiler" not in reason, reason


def test_unbuilt_extension_is_named():
    rc, out = python("import sys; sys.modules['minit2t._cext'] = None\n"
                     "import minit2t as mt\n"
                     "try:\n    mt.get_backend('c')\nexcept RuntimeError as e:\n    print('REASON', e)\n"
                     "print('ACTIVE', mt.get_backend().name)\n")
    assert rc == 0, out
    assert "minit2t._cext is not built" in out and "ACTIVE numpy" in out, out


@pytest.mark.skipif(not c_extension_built(), reason="the C extension does not load here")
def test_c_tests_skip_with_the_reason_when_the_backend_cannot_load():
    """The C-specific tests, run where cffi's runtime is missing: skipped, each saying why, none failing."""
    code = ("import sys; sys.modules['_cffi_backend'] = None\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-rs', '-x', 'tests/test_backends.py', "
            "'tests/test_fused.py', '-k', 'not opencl and not reference and not numpy']))\n")
    rc, out = python(code, MINIT2T_BACKEND="numpy")
    assert rc == 0, out[-3000:]
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped, out[-3000:]
    unexplained = [line for line in skipped if "pip install cffi" not in line]
    assert not unexplained, "\n".join(unexplained[:5])


# ---- the sample shipped in the package --------------------------------------------------------------------------
def test_the_sample_is_small_balanced_and_in_the_binary_layout():
    files = [Path(data.SAMPLE_DIR) / name for name in cifar.SAMPLE_FILES.values()]
    assert sum(f.stat().st_size for f in files) < 8_000_000
    splits = data.load_cifar10_splits(data.SAMPLE_DIR)
    for split, per_class in cifar.SAMPLE_PER_CLASS.items():
        images, labels = splits[split]
        assert images.shape == (10 * per_class, 3, 32, 32) and images.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
        assert images.flags.writeable and images.std() > 30                  # real pictures, not zeros


def test_nothing_found_means_the_sample_said_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MINIT2T_DATA", raising=False)
    monkeypatch.setenv("MINIT2T_CACHE", str(tmp_path / "empty"))
    images, labels = data.load_cifar10(split="test")
    assert images.shape == (500, 3, 32, 32)
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "using the sample shipped with minit2t" in said[0]
    images, labels = data.load_cifar10(data.SAMPLE_DIR, split="test")      # asked for by path: nothing said
    assert capsys.readouterr().err == ""
    with pytest.raises(FileNotFoundError, match="no CIFAR-10"):
        data.load_cifar10(split="test", download_if_missing=False)


@pytest.mark.skipif(not SHARED_COPY.exists(), reason="no full CIFAR-10 archive in ../shared/data")
def test_the_sample_is_what_make_sample_makes(tmp_path):
    from minit2t.data import make_sample
    assert make_sample.main([str(SHARED_COPY), "--out", str(tmp_path)]) == 0
    for name in cifar.SAMPLE_FILES.values():
        made, shipped = (tmp_path / name).read_bytes(), (Path(data.SAMPLE_DIR) / name).read_bytes()
        assert hashlib.sha256(made).hexdigest() == hashlib.sha256(shipped).hexdigest(), name


# ---- the README's first command runs the main job on the sample ---------------------------------------------------
def test_readme_first_command_trains_and_evaluates():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert first.startswith("pip install -e . && "), first
    assert "python -m minit2t train" in first and "--data" not in first, first
    assert "python -m minit2t eval" in first, first
