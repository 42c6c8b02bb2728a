"""The eleven released T2T-ViT variants, by name: mt.create_model("t2t_vit_14")."""
from minit2t.models.t2t import T2T_ViT

# name: (tokens_type, embed_dim, depth, num_heads, mlp_ratio), as released
VARIANTS = {
    "t2t_vit_7": ("performer", 256, 7, 4, 2.0),
    "t2t_vit_10": ("performer", 256, 10, 4, 2.0),
    "t2t_vit_12": ("performer", 256, 12, 4, 2.0),
    "t2t_vit_14": ("performer", 384, 14, 6, 3.0),
    "t2t_vit_19": ("performer", 448, 19, 7, 3.0),
    "t2t_vit_24": ("performer", 512, 24, 8, 3.0),
    "t2t_vit_t_14": ("transformer", 384, 14, 6, 3.0),
    "t2t_vit_t_19": ("transformer", 448, 19, 7, 3.0),
    "t2t_vit_t_24": ("transformer", 512, 24, 8, 3.0),
    "t2t_vit_14_resnext": ("performer", 384, 14, 32, 3.0),
    "t2t_vit_14_wide": ("performer", 768, 4, 12, 3.0),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_KWARGS = {"img_size", "in_chans", "num_classes", "token_dim", "qkv_bias", "qk_scale", "drop_rate",
           "attn_drop_rate", "drop_path_rate", "soft_split", "tokens_type"}


def list_models():
    return sorted(VARIANTS)


def create_model(name, **kwargs):
    """A T2T-ViT variant with random (release-style) initialisation.

    kwargs: img_size, in_chans, num_classes, token_dim, qkv_bias, qk_scale, drop_rate,
    attn_drop_rate, drop_path_rate, soft_split ((k, s, p) of the three soft splits),
    tokens_type (to swap the T2T layers, e.g. "convolution" for the paper's comparison).
    The release's pretrained weights were trained with qk_scale = embed_dim ** -0.5
    (512 ** -0.5 for t2t_vit_14_wide); pass it when loading them.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    unknown = set(kwargs) - _KWARGS
    if unknown:
        raise TypeError(f"create_model({name!r}) got unexpected arguments {sorted(unknown)}; "
                        f"accepted: {sorted(_KWARGS)}")
    tokens_type, embed_dim, depth, num_heads, mlp_ratio = VARIANTS[name]
    kwargs.setdefault("tokens_type", tokens_type)
    model = T2T_ViT(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, **kwargs)
    cfg = model.config
    model.default_cfg = dict(architecture=name, input_size=(cfg["in_chans"], cfg["img_size"], cfg["img_size"]),
                             mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=cfg["num_classes"],
                             crop_pct=0.9, interpolation="bicubic", classifier="head")
    return model
