"""Whether ops record the graph for backward: `with mt.no_grad(): ...` turns it off."""
import functools

_enabled = True


def is_enabled():
    return _enabled


class no_grad:
    """Context manager (and decorator) that stops ops from recording a graph."""

    def __enter__(self):
        global _enabled
        self._prev, _enabled = _enabled, False

    def __exit__(self, *exc):
        global _enabled
        _enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class enable_grad(no_grad):
    """Turn recording back on inside a no_grad block."""

    def __enter__(self):
        global _enabled
        self._prev, _enabled = _enabled, True
