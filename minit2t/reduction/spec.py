"""Reduction specs: "method:option=value,...", as mt.reduce_tokens and `--reduce` take them.

    tome:r=8               ToMe, r tokens merged in every block (r=[0,8,8,...]: one r per block)
    evit:keep=0.7          EViT, keep 70% of the tokens at blocks depth/4, depth/2, 3 depth/4
    mctf:r=8               MCTF, r tokens fused in every block but the first
    none                   no reduction
"""
import re

import numpy as np

from minit2t import specs

# method: {option: default}; None means "depends on the model" (filled in by the method)
OPTIONS = {
    "none": {},
    "tome": {"r": 8, "prop": True},
    "evit": {"keep": 0.7, "at": None, "fuse": "sum", "prop": False},
    "mctf": {"r": 8, "tau_sim": 1.0, "tau_info": 20.0, "tau_size": 40.0, "bidirectional": True, "prop": True},
}
CHOICES = {"fuse": ("sum", "mean", "drop")}


class SpecError(ValueError):
    pass


def parse_spec(spec):
    """(method, options) from a spec string, every option checked and given its default."""
    return specs.parse_spec(spec, OPTIONS, _value, SpecError, "token reduction", "tome:r=8", "r=[0,8,8]",
                            default="none")


def format_spec(method, options):
    """The canonical spec string of (method, options): every option, in a fixed order."""
    if method == "none":
        return "none"
    def show(v):
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(show(x) for x in v) + "]"
        if isinstance(v, float) and "e" in str(v):                   # 1e-05: the parser takes no exponent
            return np.format_float_positional(v)                       # 0.00001
        return str(int(v)) if isinstance(v, bool) else str(v)
    return method + ":" + ",".join(f"{k}={show(v)}" for k, v in options.items() if v is not None)


def _value(method, key, text, spec):
    where = f"{method}: {key}={text!r} in {spec!r}"
    if key in CHOICES:
        if text not in CHOICES[key]:
            raise SpecError(f"{where}: expected one of {', '.join(CHOICES[key])}")
        return text
    if key in ("prop", "bidirectional"):
        if text not in ("0", "1", "true", "false"):
            raise SpecError(f"{where}: expected 0 or 1")
        return text in ("1", "true")
    if text.startswith("["):
        if key not in ("r", "at"):
            raise SpecError(f"{where}: expected a number, not a list")
        return [_number(x.strip(), where, whole=True) for x in text[1:-1].split(",") if x.strip()]
    if key == "at":
        return [_number(text, where, whole=True)]
    value = _number(text, where, whole=(key == "r" and method == "tome"))
    if key == "keep" and not 0 < value <= 1:
        raise SpecError(f"{where}: expected a keep rate in (0, 1]")
    return value


def _number(text, where, whole):
    pattern = r"\d+" if whole else r"\d+(\.\d*)?|\.\d+"
    if not re.fullmatch(pattern, text):
        raise SpecError(f"{where}: expected {'a whole number' if whole else 'a number'} >= 0")
    return int(text) if whole or re.fullmatch(r"\d+", text) else float(text)
