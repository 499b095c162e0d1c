"""What every figure shares: the palette and the colours of the four sets, units and names of targets, the order
of splits, and saving a figure as PNG and PDF atomically. Every figure has labelled axes with units, a title saying
what it shows, and a colour-blind-safe palette (seaborn's `colorblind`; `viridis`/`cividis` and the diverging
`vlag` for maps)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from matprobe.inputs.features import element_properties  # noqa: E402

from matprobe.io import atomic_path  # noqa: E402
from matprobe.prepare.sets import SETS  # noqa: E402
from matprobe.prepare.splits import split_base  # noqa: E402
from matprobe.vocabulary import SET_LABELS, target_units as units  # noqa: E402,F401 (the figures take them from here)

PALETTE = "colorblind"


def split_order(splits) -> list[str]:
    """Each omission followed by its control (omit-Fe, omit-Fe-control, omit-O, ...), then the rest."""
    return sorted(set(splits), key=split_base)


def split_model_order(pair: tuple[str, str]) -> tuple[str, str, bool]:
    """Per held-out element and model: the omission, then its control."""
    base, is_control = split_base(pair[0])
    return base, pair[1], is_control


def target_name(target: str) -> str:
    """'band gap' for the column band_gap: a figure's words, not a table's."""
    return target.replace("_", " ")


def set_colors() -> dict[str, tuple]:
    # blue, purple, green, vermilion: the palette's orange would sit beside the OOD set's vermilion
    palette = sns.color_palette(PALETTE, 10)
    return dict(zip(SETS, [palette[0], palette[4], palette[2], palette[3]]))


# The run a per-run figure job draws (target, split, model, seed), named above every figure it saves: a figure
# opened on its own, or among eight near-identical folders of the report, says which model it shows.
_RUN: dict | None = None


@contextmanager
def naming_run(keys):
    """Within the block, every saved figure carries the run's target, split, model and seed above it."""
    global _RUN
    previous, _RUN = _RUN, {name: keys[name] for name in ("target", "split", "model", "seed")}
    try:
        yield
    finally:
        _RUN = previous


def run_label(keys) -> str:
    model = {"cgcnn": "CGCNN", "schnet": "SchNet"}.get(keys["model"], keys["model"])
    return f"{target_name(keys['target'])} · {keys['split']} · {model} · seed {keys['seed']}"


def save(fig, png_path) -> None:
    """PNG and a PDF beside it, each written atomically (inside naming_run, the run named above the figure)."""
    png_path = Path(png_path)
    if _RUN is not None:
        # above everything the figure draws (bbox_inches="tight" grows the canvas to keep it)
        top = max([fig.get_tightbbox().y1 / fig.bbox_inches.height] + [1.0])
        fig.text(0.0, top + 0.01, run_label(_RUN), ha="left", va="bottom", fontsize=11, fontweight="bold")
    for path, fmt in ((png_path, "png"), (png_path.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def read_json(path):
    return json.loads(Path(path).read_text())


def seed_counts(seeds_per_group: pd.Series) -> str:
    """'3', or '1–3' while some runs of a study are still training."""
    low, high = seeds_per_group.min(), seeds_per_group.max()
    return str(high) if low == high else f"{low}–{high}"


def _periodic_position(z: int, group: int, period: int) -> tuple[int, int]:
    if 57 <= z <= 71:
        return 8, 3 + (z - 57)
    if 89 <= z <= 103:
        return 9, 3 + (z - 89)
    return period, group


def _luminance(rgba) -> float:
    """Relative luminance (ITU-R BT.709 weights on sRGB) of a matplotlib colour."""
    red, green, blue = matplotlib.colors.to_rgb(rgba)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def periodic_table(values: dict[str, float], omitted: list[str], title: str, colorbar_label: str, ax, cmap="vlag", center=0.0,
                   annotations: dict[str, str] | None = None, upper: float | None = None):
    """A periodic table on `ax`, each element's cell coloured by its value (grey: none), the omitted elements boxed;
    `annotations` adds a small text under a symbol (a count, say). A diverging map is symmetric about `center`, or,
    for a measure bounded above (`upper`: R² ≤ 1, with a `center` below it), runs from the lowest value (at least a
    twentieth of the bound's distance below `center`, so that the centre's colour shows) through `center` to the
    bound, each side with its own slope; the colour bar is drawn in the values' own, linear scale."""
    props = element_properties()
    finite = [v for v in values.values() if np.isfinite(v)]
    if not finite:
        finite = [0.0]
    if center is None:
        vmin, vmax = min(finite), max(finite)
        norm = matplotlib.colors.Normalize(vmin, vmax)
    elif upper is not None:
        if upper <= center:
            raise ValueError(f"periodic_table: upper {upper} must lie above center {center}")
        norm = matplotlib.colors.TwoSlopeNorm(center, vmin=min(min(finite), center - 0.05 * (upper - center)), vmax=upper)
    else:
        span = max(abs(min(finite) - center), abs(max(finite) - center)) or 1.0
        norm = matplotlib.colors.Normalize(center - span, center + span)
    colormap = sns.color_palette(cmap, as_cmap=True)
    for z, row in props.iterrows():
        if z > 94:
            continue
        r, c = _periodic_position(z, row["group"], row["period"])
        value = values.get(row["symbol"], np.nan)
        face = colormap(norm(value)) if np.isfinite(value) else (0.92, 0.92, 0.92)
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 0.95, 0.95, facecolor=face, edgecolor="0.6", lw=0.4))
        # white symbols on dark cells (the far end of a sequential map), so that every symbol stays legible
        ink = "white" if _luminance(face) < 0.4 else "black"
        ax.text(c - 0.02, r - (0.12 if annotations else 0), row["symbol"], ha="center", va="center", fontsize=6.5, color=ink)
        if annotations and row["symbol"] in annotations:
            ax.text(c - 0.02, r + 0.24, annotations[row["symbol"]], ha="center", va="center", fontsize=4.5, color=ink)
        if row["symbol"] in omitted:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 0.95, 0.95, fill=False, edgecolor="black", lw=2.2))
            # a large cross over the whole cell: the corner mark of 7 pt was a few pixels in the report
            ax.plot([c - 0.42, c + 0.37], [r - 0.42, r + 0.37], color=ink, lw=1.2, alpha=0.75)
            ax.plot([c - 0.42, c + 0.37], [r + 0.37, r - 0.42], color=ink, lw=1.2, alpha=0.75)
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(9.6, 0.4)
    ax.set_aspect("equal")
    ax.set_xticks(range(1, 19))
    ax.set_yticks(range(1, 8))
    ax.set_xlabel("group")
    ax.set_ylabel("period (rows 8–9: lanthanides, actinides)")
    ax.set_title(title, fontsize=9)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap)
    bar = plt.colorbar(mappable, ax=ax, label=colorbar_label, shrink=0.7)
    if isinstance(norm, matplotlib.colors.TwoSlopeNorm):
        bar.ax.set_yscale("linear")  # the bar in the values' units, not halved at the centre (matplotlib's recipe)
