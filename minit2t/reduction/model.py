"""mt.reduce_tokens: token reduction in the backbone blocks of any T2T-ViT; the T2T module is untouched.

Legend: B batch, N0 = num_patches + 1 tokens entering the backbone, M tokens leaving it, D embed dim.
"""
from minit2t.models.t2t import T2T_ViT
from minit2t.nn.transformer import Attention
from minit2t.reduction.block import plain_block
from minit2t.reduction.evit import EViTBlock
from minit2t.reduction.mctf import MCTFBlock
from minit2t.reduction.merge import TokenState
from minit2t.reduction.spec import SpecError, format_spec, parse_spec
from minit2t.reduction.tome import ToMeBlock


class ReducedT2T_ViT(T2T_ViT):
    """A T2T-ViT whose blocks reduce tokens (made by reduce_tokens, not constructed directly):
    the same parameters, the same names; the blocks pass sizes along with the tokens."""

    def forward_features(self, x):                                   # (B, C, H, W)
        return self.forward_tokens(self.embed(x))[0][:, 0]           # (B, D)

    def forward_tokens(self, x, r=None, trace=False):                # (B, N0, D)
        """The backbone on embedded tokens: (norm(tokens) (B, M, D), TokenState). `r` overrides
        the number merged in every block that merges (MCTF's teacher pass); `trace` keeps each
        block's source (B, M, N0), which original tokens each output token stands for."""
        state = TokenState(x.shape[0], x.shape[1], trace)
        for blk in self.blocks:
            x = blk(x, state, None if r is None or not getattr(blk, "r", 0) else r)  # (B, M, D)
            state.record()
        return self.norm(x), state


def reduce_tokens(model, spec):
    """Give `model`'s backbone blocks the token reduction `spec` (see minit2t.reduction.spec);
    "none" restores the plain blocks. In place, parameters shared; returns the model. The spec, in
    full, becomes model.config["reduce"], so a saved model or checkpoint is rebuilt reduced. The blocks
    need the standard attention (their q k^T over all tokens): a shunted backbone is refused."""
    if not isinstance(model, T2T_ViT):
        raise TypeError(f"reduce_tokens expects a T2T-ViT model, got {type(model).__name__}")
    method, options = parse_spec(spec)
    if method != "none":
        _check_attention(model)
    plain = [plain_block(b) for b in model.blocks]
    if method == "none":
        _replace_blocks(model, plain)
        model.__class__ = T2T_ViT
        model.config = {k: v for k, v in model.config.items() if k != "reduce"}
        return model
    blocks = {"tome": _tome, "evit": _evit, "mctf": _mctf}[method](plain, dict(options))
    for new, old in zip(blocks, plain):
        new.train(old.training)
    _replace_blocks(model, blocks)
    model.__class__ = ReducedT2T_ViT
    model.config = {**model.config, "reduce": format_spec(method, options)}   # saved with the weights
    return model


def _check_attention(model):
    for i, blk in enumerate(model.blocks):
        if not isinstance(blk.attn, Attention):
            raise ValueError(f"reduce_tokens needs the standard attention in every backbone block, got "
                             f"{type(blk.attn).__name__} in block {i} (attention="
                             f"{model.config.get('attention', 'standard')!r})")


def _replace_blocks(model, blocks):
    """The blocks swapped inside model.blocks, which keeps its place among the model's children:
    state_dict and parameters() keep their order (a new ModuleList would go last, after norm and
    head, and an optimizer state saved by parameter position would no longer line up)."""
    for i, blk in enumerate(blocks):
        setattr(model.blocks, str(i), blk)                           # re-set in order: order 0, 1, ...


def _per_block(r, depth, first, what):
    """An r for each block: a list as given (zeros after it), or r in blocks first.. on."""
    if isinstance(r, list):
        if len(r) > depth:
            raise SpecError(f"{what}: r has {len(r)} values for {depth} blocks")
        return r + [0] * (depth - len(r))
    return [0] * first + [r] * (depth - first)


def _tome(plain, o):
    rs = _per_block(o["r"], len(plain), 0, "tome")
    return [ToMeBlock(b, r, o["prop"]) for b, r in zip(plain, rs)]


def _mctf(plain, o):
    rs = _per_block(o.pop("r"), len(plain), 1, "mctf")
    return [MCTFBlock(b, r, **o) for b, r in zip(plain, rs)]


def _evit(plain, o):
    depth = len(plain)
    at = o["at"] if o["at"] is not None else sorted({depth * k // 4 for k in (1, 2, 3)})
    if any(i >= depth for i in at):
        raise SpecError(f"evit: at={at} names a block past the last ({depth - 1})")
    o["at"] = at
    return [EViTBlock(b, o["keep"] if i in at else 1.0, o["fuse"], o["prop"]) for i, b in enumerate(plain)]
