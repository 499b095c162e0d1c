"""Atlas figures: periodic tables of how each element's omission fares (OOD error over the control's, OOD R², the
basin divergence), with each element's count of OOD materials, per target and model; and scatter plots of each
candidate predictor against the OOD/control ratio, with the rank correlation and its bootstrap interval."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter
import numpy as np
import pandas as pd

from matprobe.atlas import PREDICTORS
from matprobe.figures.style import periodic_table, save, target_name

MAPS = [("ood_over_control", "OOD MAE / control's OOD MAE", "rocket_r", None),
        ("ood_r2", "R² on the held-out materials", "vlag_r", 0.0),
        ("basin_divergence", "ID/OOD basin divergence", "mako_r", None)]
LABELS = {"basin_divergence": "ID/OOD basin divergence", "ood_grid_minimum_offset": "OOD grid-minimum offset (direction units)",
          "top_eigenvalue_ratio": "top Hessian eigenvalue, OOD / ID", "flat_radius_ratio": "flat radius, OOD / ID",
          "latent_knn_distance": "latent kNN distance of OOD crystals", "n_ood": "OOD materials"}


def atlas_maps(atlas_path, out_png) -> None:
    atlas = pd.read_parquet(atlas_path)
    elements = atlas[~atlas["held_out"].str.startswith(("group", "period"))]
    panels = list(elements.groupby(["target", "model"], sort=True))
    fig, axes = plt.subplots(max(1, len(panels)), len(MAPS), figsize=(6.2 * len(MAPS), 3.8 * max(1, len(panels))), squeeze=False)
    for row, ((target, model), frame) in enumerate(panels):
        counts = {held: f"n={int(n)}" for held, n in zip(frame["held_out"], frame["n_ood"]) if np.isfinite(n)}
        for col, (measure, label, cmap, centre) in enumerate(MAPS):
            values = dict(zip(frame["held_out"], frame[measure].astype(float)))
            seeds = int(frame["seeds"].max())
            spread = "median over " + (f"{seeds} seeds" if seeds > 1 else "1 seed")
            periodic_table(values, [], f"{target_name(target)}, {model}: {label} ({spread}; grey: not swept)", label, axes[row, col],
                           cmap=cmap, center=centre, annotations=counts)
    groups = atlas[atlas["held_out"].str.startswith(("group", "period"))]
    if not panels:
        axes[0, 0].set_title("no element omissions in this atlas")
    fig.suptitle("The periodic table of generalisation: each element held out of training in turn, judged against a control "
                 "trained on as many crystals with it" + (f" ({len(groups)} group/period omissions in atlas.parquet)" if len(groups) else ""),
                 fontsize=11)
    fig.tight_layout()
    save(fig, out_png)


def hypothesis_scatter(seeds_path, hypothesis_path, out_png) -> None:
    """One panel per predictor: each omission (median over seeds) against its OOD/control ratio, log scales where the
    quantity is a ratio or a count; titles give Spearman ρ with its bootstrap 95 % interval and, but for the cheap
    predictor, its gain in |ρ| over the cheap one with the paired interval."""
    atlas = pd.read_parquet(seeds_path)
    atlas = atlas.groupby(["target", "model", "held_out"], sort=True)[[*PREDICTORS, "ood_over_control"]].median().reset_index()
    hypothesis = pd.read_parquet(hypothesis_path)
    pairs = list(atlas.groupby(["target", "model"], sort=True))
    fig, axes = plt.subplots(max(1, len(pairs)), len(PREDICTORS), figsize=(3.6 * len(PREDICTORS), 3.4 * max(1, len(pairs))), squeeze=False)
    for row, ((target, model), frame) in enumerate(pairs):
        for col, (predictor, kind) in enumerate(PREDICTORS.items()):
            ax = axes[row, col]
            ax.scatter(frame[predictor], frame["ood_over_control"], s=14, color={"landscape": "C0", "cheap": "C2", "count": "0.4"}[kind])
            for x, y, label in zip(frame[predictor], frame["ood_over_control"], frame["held_out"]):
                if np.isfinite(x) and np.isfinite(y):
                    ax.annotate(label, (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.6, 2, 4 rather than 6×10⁻¹, 2×10⁰
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
            if predictor in ("n_ood", "top_eigenvalue_ratio"):
                ax.set_xscale("log")
            ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
            stats = hypothesis[(hypothesis["target"] == target) & (hypothesis["model"] == model) & (hypothesis["predictor"] == predictor)]
            if len(stats):
                s = stats.iloc[0]
                title = f"{kind}: ρ = {s['spearman']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}], n={s['omissions']}"
                if np.isfinite(s.get("gain_over_cheap", np.nan)):
                    title += f"\n|ρ| − |ρ(cheap)| = {s['gain_over_cheap']:+.2f} [{s['gain_ci_low']:+.2f}, {s['gain_ci_high']:+.2f}]"
                ax.set_title(title, fontsize=8)
            ax.set_xlabel(LABELS[predictor], fontsize=7)
            ax.set_ylabel(f"OOD / control MAE ({target_name(target)}, {model})" if col == 0 else "", fontsize=7)
            ax.tick_params(which="both", labelsize=6)
    fig.suptitle("Does landscape geometry predict which omissions fail? Each point an omission; Spearman ρ with its bootstrap "
                 "95 % interval over omissions (blue: landscape quantities, green: the cheap latent-distance predictor, grey: "
                 "the count)", fontsize=9)
    fig.tight_layout()
    save(fig, out_png)
