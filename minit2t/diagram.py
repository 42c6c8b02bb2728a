"""Figures for the notebooks: the T2T-ViT pipeline, with every shape read from the model
(draw_pipeline(ax, model)), and show_compact(fig), a figure shown as a small palette PNG.

    fig, ax = plt.subplots(figsize=(14, 3.8))
    fig.subplots_adjust(left=0, right=1)          # the labels are sized for about an inch per unit
    draw_pipeline(ax, mt.create_model("t2t_vit_14"))

Boxes are the stages (blue: the Tokens-to-Token module, orange: the backbone; a soft split is
labelled with its (kernel, stride, padding)), arrows carry the shape of one image's tensor between
them, batch dimension left out: tokens as count × width, images as channels × height × width.
Needs matplotlib (imported when a figure is drawn, not with this module).
"""
COLORS = {"data": "#e6e6e6", "t2t": "#cfe2f3", "vit": "#fde3c8"}


def pipeline_stages(model):
    """[(box label, group, shape of its output)] of `model`'s forward, from model.config and
    model.tokens_to_token.sides; group is "data", "t2t" (T2T module) or "vit" (backbone)."""
    cfg = model.config
    if cfg["tokens_type"] == "convolution":
        raise ValueError("draw_pipeline draws the soft-split T2T module; tokens_type 'convolution' has none")
    C, S, E, D = cfg["in_chans"], cfg["img_size"], cfg["token_dim"], cfg["embed_dim"]
    (k0, s0, p0), (k1, s1, p1), (k2, s2, p2) = cfg["soft_split"]
    H0, H1, H2 = model.tokens_to_token.sides
    N, F, layer = H2 * H2, int(D * cfg["mlp_ratio"]), cfg["tokens_type"]
    return [("image", "data", f"{C}×{S}×{S}"),
            (f"soft split\n({k0}, {s0}, {p0})", "t2t", f"{H0 * H0}×{C * k0 * k0}"),
            (f"T2T layer\n({layer})", "t2t", f"{H0 * H0}×{E}"),
            ("re-structurize", "t2t", f"{E}×{H0}×{H0}"),
            (f"soft split\n({k1}, {s1}, {p1})", "t2t", f"{H1 * H1}×{E * k1 * k1}"),
            (f"T2T layer\n({layer})", "t2t", f"{H1 * H1}×{E}"),
            ("re-structurize", "t2t", f"{E}×{H1}×{H1}"),
            (f"soft split\n({k2}, {s2}, {p2})", "t2t", f"{N}×{E * k2 * k2}"),
            (f"linear projection\n{E * k2 * k2} → {D}", "t2t", f"{N}×{D}"),
            ("+ cls token\n+ positions", "vit", f"{N + 1}×{D}"),
            (f"ViT blocks ×{cfg['depth']}\n{cfg['num_heads']} heads, MLP {F}", "vit", f"{N + 1}×{D}"),
            ("LayerNorm,\ncls token", "vit", f"{D}"),
            (f"head\n{D} → {cfg['num_classes']}", "vit", f"{cfg['num_classes']}"),
            ("logits", "data", None)]


def draw_pipeline(ax, model, per_row=7, fontsize=8):
    """Draw `model`'s pipeline on `ax` as boxes and arrows, in rows of `per_row` stages; returns ax."""
    from matplotlib.patches import FancyBboxPatch, Patch

    stages = pipeline_stages(model)
    rows = -(-len(stages) // per_row)
    w, h, slot, row_h = 1.25, 0.62, 2.0, 1.35
    centre = lambda i: (slot * (i % per_row) + slot / 2, row_h * (rows - 1 - i // per_row) + 0.75)
    for i, (label, group, _) in enumerate(stages):
        x, y = centre(i)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                                    fc=COLORS[group], ec="0.35", lw=0.8))
        ax.text(x, y, label, ha="center", va="center", size=fontsize)
    arrow = dict(arrowstyle="-|>", color="0.25", lw=1, shrinkA=0, shrinkB=0)
    for i, (_, _, shape) in enumerate(stages[:-1]):
        (x0, y0), (x1, y1) = centre(i), centre(i + 1)
        if y0 == y1:                                                  # same row: straight right
            ax.annotate("", (x1 - w / 2 - 0.04, y1), (x0 + w / 2 + 0.04, y0), arrowprops=arrow)
            ax.text((x0 + x1) / 2, y0 + 0.06, shape, ha="center", va="bottom", size=fontsize,
                    color="0.1", family="monospace")
        else:                                                         # end of a row: down, back, down
            mid = (y0 + y1) / 2
            ax.plot([x0, x0, x1, x1], [y0 - h / 2 - 0.04, mid, mid, mid + 0.05], color="0.25", lw=1)
            ax.annotate("", (x1, y1 + h / 2 + 0.04), (x1, mid), arrowprops=arrow)
            ax.text((x0 + x1) / 2, mid + 0.04, shape, ha="center", va="bottom", size=fontsize,
                    color="0.1", family="monospace")
    ax.set_xlim(0, slot * per_row)
    ax.set_ylim(0.2, row_h * (rows - 1) + 1.3)
    ax.axis("off")
    name = getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
    ax.set_title(f"{name}: shapes of one image's tensors (tokens: count×width, images: C×H×W)", size=fontsize + 2)
    ax.legend(handles=[Patch(fc=COLORS["t2t"], ec="0.35", label="Tokens-to-Token module"),
                       Patch(fc=COLORS["vit"], ec="0.35", label="deep-narrow ViT backbone")],
              loc="upper center", fontsize=fontsize, frameon=False, ncol=2, bbox_to_anchor=(0.5, 0.04))
    return ax


def show_compact(fig, colors=256):
    """Show a matplotlib figure in a notebook as a PNG of `colors` palette colours, and close it:
    figures of many small photos take a third of the bytes of a full-colour PNG."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display
    from PIL import Image as PILImage

    full, small = io.BytesIO(), io.BytesIO()
    fig.savefig(full, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    PILImage.open(full).convert("RGB").quantize(colors).save(small, format="png", optimize=True)
    display(Image(small.getvalue()))
