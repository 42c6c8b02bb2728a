"""Which parameters get weight decay: the release's recipe (timm's param_groups_weight_decay)."""

NO_DECAY_NAMES = ("cls_token", "pos_embed")


def param_groups_for_weight_decay(model, weight_decay, skip=()):
    """Two parameter groups for an optimizer: [{no decay}, {decay}].

    No decay for 1-D parameters (biases, LayerNorm weights), names ending in ".bias",
    cls_token and pos_embed, names in `skip` and in model.no_weight_decay(). Parameters
    with requires_grad False (the fixed sinusoid pos_embed) are left out entirely.
    """
    if not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    skip = set(skip)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        leaf = name.rsplit(".", 1)[-1]
        if p.data.ndim <= 1 or leaf == "bias" or leaf in NO_DECAY_NAMES or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
