"""The machine a benchmark ran on, for the line every speed figure carries."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's minit2t
from minit2t.speed import cpu_name  # noqa: E402, F401  (one definition, the package's)


def write_json(path, results):
    """results as JSON at path, atomically (a temporary file, then a rename); its folder made if needed."""
    import json
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
