"""Shared test setup: the hypothesis profile and the float64 switch."""
import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("minit2t", deadline=None, max_examples=25, derandomize=True)
settings.register_profile("thorough", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minit2t"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
