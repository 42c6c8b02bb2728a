"""The one random generator minit2t draws from (initialisation, dropout)."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used for initialisation and dropout."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def generator():
    return _rng


def get_state():
    """The generator's state (a JSON-able dict), for checkpoints."""
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state
