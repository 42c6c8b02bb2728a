"""The speed policy of fused ops: when one op may stand for a layer's steps.

Two fused ops stand for steps of a layer: F.attention for an attention layer's
softmax(q k^T * scale) v, and F.linear_gelu for an MLP's fc1 then GELU.

An attention layer computes softmax(q k^T * scale) v in steps (its own methods, and
the sub-modules `softmax` and `attn_drop` through which the probabilities pass),
where hooks and subclasses can see and change the probabilities. The fused op
F.attention (ops.Attention) computes the same result in one op and never hands the
probabilities out, so it may run only while nothing observes or changes them.

A layer says what the fused op stands for in two class attributes:

    fused_steps    names of its methods that make the step-by-step path, e.g.
                   ("heads", "probabilities", "mix"); () when forward holds the steps
    fused_layers   {attribute: class} of the sub-modules the probabilities pass
                   through, each as the fused op reproduces it, e.g.
                   {"softmax": Softmax, "attn_drop": Dropout}

The class that sets fused_steps is the one whose steps the fused op reproduces.
An Mlp declares only fused_layers, {"fc1": Linear, "act": GELU}: its forward holds
the two steps that F.linear_gelu (ops.LinearGELU) stands for.
"""
from minit2t import ops
from minit2t.backends import implementation


def may_fuse_attention(layer, size=None):
    """True when F.attention may stand for `layer`'s step-by-step attention: no `size`
    (ToMe's proportional attention, added to the logits by the steps), no step method
    of a subclass or of the instance itself, and each of fused_layers of exactly its
    class, unhooked, and dropping nothing (drop rate p = 0, or not training)."""
    return size is None and not _own_steps(layer) and all(
        _plain(getattr(layer, name), cls) for name, cls in layer.fused_layers.items())


def _own_steps(layer):
    """Whether a step method runs that is not the one of the class declaring fused_steps."""
    owner = next(c for c in type(layer).__mro__ if "fused_steps" in vars(c))
    run = [getattr(getattr(layer, name), "__func__", None) for name in owner.fused_steps]  # the functions run
    return any(f is not getattr(owner, name) for f, name in zip(run, owner.fused_steps))


def _plain(module, cls):
    """Whether `module` is a `cls` that nothing watches and that changes nothing at random."""
    hooked = module._forward_pre_hooks or module._forward_hooks
    drops = module.training and getattr(module, "p", 0) != 0     # a dropout acting now
    return type(module) is cls and not hooked and not drops


def may_fuse_linear_gelu(layer):
    """True when F.linear_gelu may stand for `layer.fc1` then `layer.act` (an Mlp): each of
    layer.fused_layers of exactly its class and unhooked, and the active backend has a LinearGELU
    of its own (where it has none, the reference op would only stand in for a faster Linear)."""
    return implementation(ops.LinearGELU) is not ops.LinearGELU and all(
        _plain(getattr(layer, name), cls) for name, cls in layer.fused_layers.items())
