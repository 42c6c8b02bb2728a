"""Optimisers, the learning-rate schedule and gradient clipping, as torch.optim.

    opt = mt.optim.AdamW(mt.optim.param_groups_for_weight_decay(model, 0.05), lr=5e-4)
    sched = mt.optim.WarmupCosine(opt, warmup_steps=500, total_steps=10000, min_lr=1e-5)
    loss.backward(); mt.optim.clip_grad_norm(model.parameters(), 1.0); opt.step(); sched.step()
    ema = mt.optim.EMA(model, 0.999); ema.update(model)   # after each step; ema.swapped_in(model) to evaluate
"""
from minit2t.optim.adamw import AdamW
from minit2t.optim.ema import EMA
from minit2t.optim.optimizer import Optimizer, optimizer_state_from_arrays, optimizer_state_to_arrays
from minit2t.optim.param_groups import param_groups_for_weight_decay
from minit2t.optim.schedule import WarmupCosine, clip_grad_norm
from minit2t.optim.sgd import SGD

__all__ = ["AdamW", "EMA", "Optimizer", "SGD", "WarmupCosine", "clip_grad_norm", "optimizer_state_from_arrays",
           "optimizer_state_to_arrays", "param_groups_for_weight_decay"]
