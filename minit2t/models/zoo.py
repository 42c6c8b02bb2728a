"""The eleven released T2T-ViT variants, and minit2t's CIFAR-10 ones, by name: mt.create_model("t2t_vit_14")."""
from minit2t.data.transforms import CIFAR10_MEAN, CIFAR10_STD
from minit2t.models.config import OPTIONS
from minit2t.models.t2t import T2T_ViT

# name: (tokens_type, embed_dim, depth, num_heads, mlp_ratio), as released, in the paper's order
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

# minit2t's own variant for 32x32 CIFAR-10 images, chosen for accuracy per minute of CPU training:
# a first soft split of stride 2 (256 tokens for the first T2T layer, not 1024), then 8x8 = 64
# tokens for a deep-narrow backbone. Transformer T2T layers (as in T2T-ViT_t): at 256 and 64 tokens
# of width 32 their exact attention costs no more per step here than the performer's, and it learns
# faster (as released, the performer estimates a Gaussian kernel of q - k, not the kernel
# of softmax attention: notebook 3).
CIFAR_SOFT_SPLIT = ((3, 2, 1), (3, 2, 1), (3, 1, 1))                # 32 -> 16 -> 8 -> 8: N = 64
CIFAR_INPUT = dict(img_size=32, num_classes=10, soft_split=CIFAR_SOFT_SPLIT)   # any variant, on CIFAR-10

def _cifar(tokens_type="transformer", embed_dim=128, depth=7, num_heads=4, **options):
    """A CIFAR variant's settings: by default t2t_vit_cifar's (mlp_ratio 2, token_dim 32, 32x32 images)."""
    return dict(tokens_type=tokens_type, embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=2.0,
                token_dim=32, **CIFAR_INPUT, **options)


CIFAR_VARIANTS = {
    "t2t_vit_cifar": _cifar(),
    # the same backbone behind ViT's hard split: 4x4 patches (8x8 tokens), one Linear each
    "vit_cifar": _cifar("hard"),
    # The paper's comparisons at CIFAR scale, each within 5% of t2t_vit_cifar's 1,008,992 parameters:
    # ViT's hard split, its backbone widened 128 -> 132 for the T2T module's parameters (999,910)
    "vit_cifar_132": _cifar("hard", embed_dim=132),
    # performer T2T layers (T2T-ViT's default tokens), 1,010,208
    "t2t_vit_cifar_performer": _cifar("performer"),
    # convolutions in place of soft split + T2T layer, 981,802
    "t2t_vit_cifar_conv": _cifar("convolution"),
    # shallow-wide (as T2T-ViT-14-wide against T2T-ViT-14): depth 7 -> 2, width 128 -> 240, head dim 30,
    # 1,050,864
    "t2t_vit_cifar_wide": _cifar(embed_dim=240, depth=2, num_heads=8),
    # Shunted self-attention (Ren et al., CVPR 2022) in every backbone block, sr_ratio 2 (one group of heads on
    # a 4x4 grid of 2x2-aggregated keys, one on all 8x8): its attention holds 9 D^2 weights, not 4 D^2, so the
    # width 128 -> 100 (head dim 25: 96 or 104, the nearest with an even head dim, miss by 8% and 7%), 1,000,844
    "t2t_vit_cifar_shunted": _cifar(embed_dim=100, attention="shunted", sr_ratio=2),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURE = ("embed_dim", "depth", "num_heads", "mlp_ratio")      # a released variant's own: not given


def list_models():
    return sorted(VARIANTS) + sorted(CIFAR_VARIANTS)


def create_model(name, **kwargs):
    """A T2T-ViT variant with random (release-style) initialisation.

    kwargs: img_size, in_chans, num_classes, token_dim, qkv_bias, qk_scale, drop_rate,
    attn_drop_rate, drop_path_rate, soft_split ((k, s, p) of the three soft splits),
    tokens_type (to swap the T2T layers, e.g. "convolution" or "hard" for the paper's comparisons);
    DeiT III's options: layer_scale_init (None, or a number > 0: LayerScale in every backbone block,
    its per-channel gammas starting at that value, e.g. 1e-4) and drop_path_uniform (True: every block
    drops paths at drop_path_rate, not at a rate rising from 0 to it);
    attention ("standard", the release's, or "shunted": Shunted self-attention in every backbone block,
    minit2t.nn.shunted) and sr_ratio (its aggregation ratio: an even int >= 2 dividing the token grid's
    side, so 2, 4 or 8 on CIFAR's 8x8 grid; default 2), e.g. create_model("vit_cifar", attention="shunted");
    the CIFAR variants (t2t_vit_cifar, ...) also take embed_dim, depth, num_heads and mlp_ratio.
    The release's pretrained weights were trained with qk_scale = embed_dim ** -0.5
    (512 ** -0.5 for t2t_vit_14_wide); pass it when loading them.
    """
    if name not in VARIANTS and name not in CIFAR_VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    accepted = set(OPTIONS) - (set() if name in CIFAR_VARIANTS else set(ARCHITECTURE))
    unknown = set(kwargs) - accepted
    if unknown:
        raise TypeError(f"create_model({name!r}) got unexpected arguments {sorted(unknown)}; "
                        f"accepted: {sorted(accepted)}")
    if name in CIFAR_VARIANTS:
        model = T2T_ViT(**{**CIFAR_VARIANTS[name], **kwargs})
    else:
        tokens_type, embed_dim, depth, num_heads, mlp_ratio = VARIANTS[name]
        kwargs.setdefault("tokens_type", tokens_type)
        model = T2T_ViT(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, **kwargs)
    model.default_cfg = default_cfg(name, model.config, cifar=name in CIFAR_VARIANTS)
    return model


def default_cfg(architecture, config, cifar):
    """What a model's inputs must be: the size its config takes, normalised as its training data was
    (CIFAR-10's statistics, or ImageNet's with a 0.9 centre crop)."""
    mean, std, crop_pct = (CIFAR10_MEAN, CIFAR10_STD, 1.0) if cifar else (IMAGENET_MEAN, IMAGENET_STD, 0.9)
    return dict(architecture=architecture, input_size=(config["in_chans"], config["img_size"], config["img_size"]),
                mean=mean, std=std, num_classes=config["num_classes"], crop_pct=crop_pct,
                interpolation="bicubic", classifier="head")
