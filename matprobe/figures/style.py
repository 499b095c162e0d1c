"""What every figure shares: the palette and the colours of the four sets, units and names of targets, the order
of splits, and saving a figure as PNG and PDF atomically. Every figure has labelled axes with units, a title saying
what it shows, and a colour-blind-safe palette (seaborn's `colorblind`; `viridis`/`cividis` and the diverging
`vlag` for maps)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from matprobe.io import atomic_path  # noqa: E402
from matprobe.sets import SETS  # noqa: E402
from matprobe.splits import split_base  # noqa: E402

PALETTE = "colorblind"
SET_LABELS = {"train": "train", "val": "val", "id_test": "ID test", "ood_test": "OOD test"}
UNITS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "band_gap_mbj": "eV", "e_above_hull": "eV/atom"}


def units(target: str) -> str:
    return UNITS.get(target, "target units")


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


def save(fig, png_path) -> None:
    """PNG and a PDF beside it, each written atomically."""
    png_path = Path(png_path)
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
