"""Token reduction inside the backbone: ToMe, EViT and MCTF on any T2T-ViT.

    model = mt.reduce_tokens(mt.pretrained("t2t_vit_cifar"), "mctf:r=8")

merge.py      what they share: sizes, bipartite matching, the merge as P @ x
block.py      the reducing block (the ViT block's own sub-modules, a new forward)
tome.py       ToMe    evit.py   EViT    mctf.py   MCTF (+ its consistency loss)
spec.py       "method:option=value" specs     model.py   reduce_tokens
"""
from minit2t.reduction.mctf import consistency_loss, training_loss, uses_consistency
from minit2t.reduction.model import ReducedT2T_ViT, reduce_tokens
from minit2t.reduction.spec import SpecError, format_spec, parse_spec

__all__ = ["ReducedT2T_ViT", "SpecError", "consistency_loss", "format_spec", "parse_spec", "reduce_tokens",
           "training_loss", "uses_consistency"]
