"""Options declared once: name, kind, default, valid range and help in one `Option`.

A model option (minit2t.models.config) or a training-recipe option (minit2t.recipe) is one
Option; everything else is derived from it:

    option.check(value, what)     the value, or Invalid naming what was expected and what came
                                  (a constructor's argument, a saved config's field, a flag)
    option.add_flag(parser)       its command-line flag --name-with-dashes: parsed and checked,
                                  None unless given, the help saying the default
    defaults(options)             {name: default}

The checks below (need, whole, number, one_of) are the vocabulary every file reader uses too.
Invalid is a ValueError; a value of the wrong type raises WrongType, which is also a TypeError.
"""
import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

KINDS = ("int", "float", "bool", "choice", "text", "any")


class Invalid(ValueError):
    """A bad value; the message says what was expected and what came (a file reader adds the file)."""


class WrongType(Invalid, TypeError):
    """A value of the wrong type (also a TypeError, as Python's own argument checks raise)."""


def need(value, kind, what):
    if not isinstance(value, kind):
        raise WrongType(f"{what} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def whole(value, what, lo, hi):
    """A whole number from lo to hi (both included); bool is not a number."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Invalid(f"{what} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def number(value, what, lo=0.0, hi=math.inf, strict=False, hi_included=False):
    """A finite number in [lo, hi) (above lo when strict; up to hi itself when hi_included)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < lo or (strict and value == lo) or value > hi or (value == hi and not hi_included):
        top = f" and {'at most' if hi_included else 'below'} {hi:g}" if hi != math.inf else ""
        raise Invalid(f"{what} must be a finite number {'above' if strict else 'at least'} {lo:g}{top}, "
                      f"got {value!r}")
    return value


def one_of(value, choices, what):
    if not isinstance(value, str) or value not in choices:
        raise Invalid(f"{what} must be one of {list(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One setting. kind: "int" (lo..hi, both included), "float" (from lo, above it when lo_open, up to hi,
    hi itself only when hi_closed), "bool", "choice" (one of `choices`), "text" (a string) or "any" (what
    `parse` accepts). optional: None is also valid (the option is off). parse: a further check of a value,
    raising ValueError. resume: may change when a run resumes. added_later: files saved before the
    option existed lack it, and ran with its default. sets: the model option a recipe option sets."""
    name: str
    kind: str
    default: Any
    help: str
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_closed: bool = False
    choices: tuple = ()
    optional: bool = False
    parse: Optional[Callable] = None
    resume: bool = False
    added_later: bool = False
    sets: Optional[str] = None
    metavar: Optional[str] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.default is not None or not self.optional:
            self.check(self.default, f"default of {self.name}")      # a declaration that contradicts itself

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def check(self, value, what=None):
        """`value` if this option takes it; else Invalid (WrongType for a wrong type) naming `what`.
        A `parse` that raises Invalid words its message as a predicate ("must be ..., got ...")."""
        what = what or self.name
        if value is None and self.optional:
            return None
        try:
            self._check_kind(value, what)
            if self.parse is not None:
                try:
                    self.parse(value)
                except Invalid as exc:
                    raise Invalid(f"{what} {exc}") from None
                except (ValueError, TypeError) as exc:
                    raise Invalid(f"{what}: {exc}") from None
        except Invalid as exc:
            if not self.optional:
                raise
            said = str(exc).replace(f"{what} must be ", f"{what} must be None or ", 1)
            raise type(exc)(said) from None
        return value

    def _check_kind(self, value, what):
        if self.kind == "int":
            whole(value, what, self.lo, self.hi)
        elif self.kind == "float":
            number(value, what, self.lo, self.hi, strict=self.lo_open, hi_included=self.hi_closed)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise WrongType(f"{what} must be True or False, got {value!r}")
        elif self.kind == "choice":
            one_of(value, self.choices, what)
        elif self.kind == "text":
            need(value, str, what)

    def add_flag(self, parser, help=None):
        """Add --name to an argparse parser: default None (so a caller sees what was given), the value
        read by kind and checked by this declaration, the help ending with the default."""
        kwargs = dict(default=None, help=f"{help or self.help} (default: {self._shown(self.default)})")
        if self.kind == "bool":                                       # a switch: off unless given
            kwargs.update(action="store_true", help=help or self.help)
        else:
            kwargs["type"] = self._read
            kwargs["metavar"] = self.metavar or ("{" + ",".join(self.choices) + "}" if self.choices else None)
        parser.add_argument(self.flag, **kwargs)

    def _read(self, text):
        try:
            value = {"int": int, "float": float}.get(self.kind, str)(text)
            return self.check(value, self.flag)
        except ValueError as exc:                                     # argparse words it: "argument --x: ..."
            said = str(exc).removeprefix(self.flag).lstrip(": ")     # argparse names the flag itself
            said = said.replace("must be None or ", "must be ", 1)      # a flag is off by not being given
            raise argparse.ArgumentTypeError(said if isinstance(exc, Invalid) else
                                             f"expected {'a whole number' if self.kind == 'int' else 'a number'}, "
                                             f"got {text!r}") from None

    @staticmethod
    def _shown(value):
        return "none" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def defaults(options):
    """{name: default} of a sequence of options."""
    return {o.name: o.default for o in options}


def by_name(options):
    return {o.name: o for o in options}
