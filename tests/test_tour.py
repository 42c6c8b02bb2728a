"""docs/tour.md stays true: every `file:line` it cites exists and names what the tour says it names."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "docs" / "tour.md"
HOP = re.compile(r"\[`([^`:]+):(\d+)`\]\(\.\./([^)#]+)#L(\d+)\) `([^`]+)`")


def hops():
    return HOP.findall(TOUR.read_text(encoding="utf-8"))


def test_the_tour_goes_from_the_command_to_the_gemm_and_back():
    found = hops()
    assert len(found) >= 30
    files = [path for path, *_ in found]
    assert files[0] == "minit2t/__main__.py" and any(f.startswith("cext/") for f in files)
    assert {"minit2t/tensor.py", "minit2t/optim/adamw.py"} <= set(files)      # backward, then the step
    numbered = re.findall(r"^(\d+)\. \[`", TOUR.read_text(encoding="utf-8"), re.M)
    assert [int(n) for n in numbered] == list(range(1, len(found) + 1))       # every hop is a cited hop


@pytest.mark.parametrize("path, line, target, anchor, name", hops(), ids=lambda v: str(v))
def test_every_hop_names_what_is_on_its_line(path, line, target, anchor, name):
    assert (target, anchor) == (path, line), "the link goes where the text says"
    source = ROOT / path
    assert source.is_file(), f"{path} does not exist"
    lines = source.read_text(encoding="utf-8").splitlines()
    n = int(line)
    assert 1 <= n <= len(lines), f"{path} has {len(lines)} lines, the tour cites line {n}"
    names = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
    if not names.search(lines[n - 1]):
        near = sorted((i + 1 for i, text in enumerate(lines) if names.search(text)), key=lambda i: abs(i - n))
        pytest.fail(f"{path}:{n} should name {name!r}, it reads: {lines[n - 1].strip()!r}"
                    + (f"; the nearest line naming it is {near[0]}: re-point the hop if that is the one" if near else ""))
