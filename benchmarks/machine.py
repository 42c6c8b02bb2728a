"""The machine a benchmark ran on, for the line every speed figure carries."""
import platform
import subprocess


def cpu_name():
    """The CPU's model name as lscpu gives it (e.g. "AMD EPYC"), else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def write_json(path, results):
    """results as JSON at path, atomically (a temporary file, then a rename); its folder made if needed."""
    import json
    import os
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
