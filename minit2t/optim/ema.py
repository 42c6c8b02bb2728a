"""An exponential moving average of a model's weights (DeiT's "model EMA", Polyak averaging).

After every optimiser step, each float entry w of the model's state dict pulls its average:
    avg <- d_t avg + (1 - d_t) w,      d_t = min(decay, (1 + t) / (10 + t))
t the number of updates so far. The ramp (1 + t) / (10 + t) lets the average forget its random
start in the first few hundred steps, which a short run needs: with d = 0.999 alone the initial
weights would still weigh e^-1 after a thousand steps. The average is evaluated with
`swapped_in(model)` and saved next to the weights it follows.
"""
from contextlib import contextmanager

import numpy as np


class EMA:
    def __init__(self, model, decay):
        if not (isinstance(decay, float) and 0.0 < decay < 1.0):
            raise ValueError(f"EMA decay must be a float in (0, 1), e.g. 0.999; got {decay!r}")
        self.decay, self.updates = decay, 0
        self.average = {k: np.array(v, copy=True) for k, v in model.state_dict().items()
                        if np.asarray(v).dtype.kind == "f"}

    def update(self, model):
        """One step of the average towards the model's current weights."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        for k, avg in self.average.items():
            avg *= d
            avg += (1.0 - d) * np.asarray(state[k], dtype=avg.dtype)
        self.updates += 1

    def state_dict(self):
        return {"updates": np.array(self.updates, dtype=np.int64), **self.average}

    def load_state_dict(self, state):
        """Restore from state_dict()'s arrays (names and shapes as this average's)."""
        missing = sorted(set(self.average) - set(state)) + (["updates"] if "updates" not in state else [])
        if missing:
            raise ValueError(f"EMA state lacks {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        for k, avg in self.average.items():
            if np.shape(state[k]) != avg.shape:
                raise ValueError(f"EMA state {k} has shape {np.shape(state[k])}, the model's is {avg.shape}")
            avg[...] = state[k]
        self.updates = int(state["updates"])

    @contextmanager
    def swapped_in(self, model):
        """Inside the block the model holds the averaged weights; its own come back after."""
        own = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
        model.load_state_dict({**own, **self.average}, strict=True)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=True)
