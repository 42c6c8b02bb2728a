"""The NumPy backend: every op runs its own reference code from minit2t/ops."""
name = "numpy"
OPS = {}        # no op is replaced
