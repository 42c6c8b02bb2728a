"""Whether ops record the graph for backward: `with mt.no_grad(): ...` turns it off.

The switch is per thread, as torch's is: a thread running inference under no_grad
leaves another thread's training untouched. A new thread starts with recording on.
"""
import functools
import threading

_state = threading.local()


def is_enabled():
    return getattr(_state, "enabled", True)


def _set(flag):
    _state.enabled = flag


class no_grad:
    """Context manager (and decorator) that stops ops from recording a graph, in this thread."""

    def __enter__(self):
        self._prev = is_enabled()
        _set(False)

    def __exit__(self, *exc):
        _set(self._prev)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class enable_grad(no_grad):
    """Turn recording back on inside a no_grad block."""

    def __enter__(self):
        self._prev = is_enabled()
        _set(True)
