"""The speed policy of fused ops: when one op may stand for a layer's steps.

Three fused ops stand for steps of a layer: F.attention for an attention layer's
softmax(q k^T * scale) v, F.linear_gelu for an MLP's fc1 then GELU, and F.linear_add for a
transformer block's residual add with the Linear before it (an attention's proj, an MLP's fc2).

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

The residual add: a Block declares fused_layers, {"attn": Attention, "mlp": Mlp,
"drop_path": (Identity, DropPath)}, the modules between x and the sum x + branch; an
Attention and an Mlp declare residual_layers, the Linear and the Dropout that end the branch
({"proj": Linear, "proj_drop": Dropout}, {"fc2": Linear, "drop": Dropout}), which
F.linear_add (ops.LinearAdd) stands for together with the sum.
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
    """Whether `module` is a `cls` (a tuple: one of them) that nothing watches and that changes
    nothing at random."""
    hooked = module._forward_pre_hooks or module._forward_hooks
    rate = getattr(module, "p", getattr(module, "drop_prob", 0))   # a Dropout's, a DropPath's
    drops = module.training and rate != 0                          # dropping now
    return type(module) in (cls if isinstance(cls, tuple) else (cls,)) and not hooked and not drops


def may_fuse_linear_gelu(layer):
    """True when F.linear_gelu may stand for `layer.fc1` then `layer.act` (an Mlp): each of
    layer.fused_layers of exactly its class and unhooked, and the active backend has a LinearGELU
    of its own (where it has none, the reference op would only stand in for a faster Linear)."""
    return implementation(ops.LinearGELU) is not ops.LinearGELU and all(
        _plain(getattr(layer, name), cls) for name, cls in layer.fused_layers.items())


def may_fuse_linear_add(layer):
    """True when F.linear_add may stand for `residual + drop(linear(x))` in `layer`, whose
    residual_layers name the Linear and the Dropout after it (an Attention's proj and proj_drop, an
    Mlp's fc2 and drop): each of exactly its class and unhooked, the dropout dropping nothing now,
    the Linear with a bias, and the active backend has a LinearAdd of its own."""
    linear = getattr(layer, next(iter(layer.residual_layers)))
    return implementation(ops.LinearAdd) is not ops.LinearAdd and linear.bias is not None and all(
        _plain(getattr(layer, name), cls) for name, cls in layer.residual_layers.items())


def may_fuse_residual(block):
    """True when a transformer block may hand its residual stream to its branches (an nn.Block's
    attn(norm1(x), residual=x) and mlp(norm2(x), residual=x), a T2T layer's mlp), which add it
    themselves, in their last product where may_fuse_linear_add allows: the active backend has a
    LinearAdd of its own, the block has no LayerScale, and each of block.fused_layers (the
    branches, the drop path) is of exactly its class, unhooked (a hook on a branch would see its
    output with x added) and dropping nothing now."""
    scaled = getattr(block, "ls1", None) is not None or getattr(block, "ls2", None) is not None
    return (implementation(ops.LinearAdd) is not ops.LinearAdd and not scaled
            and all(_plain(getattr(block, name), cls) for name, cls in block.fused_layers.items()))
