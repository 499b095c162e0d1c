"""Topology figures: persistence diagrams of example atoms and the descriptors that go with large errors."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from matprobe.figures.style import (PALETTE, SET_LABELS, save, set_colors)


def topology_figure(correlations_path, diagrams_path, curves_path, out_png) -> None:
    """Top row: persistence diagrams of one atom of an ID and an OOD example crystal (persistence_examples.parquet,
    made by the attribution stage), and the rank correlations of the descriptors, undirected and directed, with the
    error. Bottom row: the mean directed Betti curves (path homology) of the ID and OOD crystals, and of the held-out
    element's atoms in the OOD crystals."""
    correlations = pd.read_parquet(correlations_path)
    diagrams = pd.read_parquet(diagrams_path)
    curves = pd.read_parquet(curves_path)
    examples = list(diagrams.groupby(["set", "id", "formula", "site"], sort=False))
    dims = sorted(curves["dim"].unique())
    columns = max(len(examples) + 1, len(dims))
    fig, axes = plt.subplots(2, columns, figsize=(3.4 * columns, 7.4), squeeze=False)
    for ax in axes[0, len(examples) + 1:]:
        ax.axis("off")
    colours = set_colors()
    for ax, dim in zip(axes[1], dims):
        for (set_name, atoms), frame in curves[curves["dim"] == dim].groupby(["set", "atoms"], sort=False):
            label = f"{SET_LABELS[set_name]}" + (", held-out element's atoms" if atoms == "held_out" else ", crystals") + f" (n={frame['crystals'].iloc[0]})"
            ax.plot(frame["t"], frame["beta"], "--" if atoms == "held_out" else "-", color=colours[set_name], label=label)
        ax.set_xlabel("filtration distance t (Å)")
        ax.set_ylabel(f"mean directed β{dim}")
        ax.set_title(f"directed Betti curve β{dim} (path homology)", fontsize=9)
        if dim == dims[0]:  # one legend: the curves of every panel are the same sets
            ax.legend(fontsize=7, loc="best", framealpha=0.6)
    for ax in axes[1, len(dims):]:
        ax.axis("off")
    dim_colors = sns.color_palette(PALETTE, 3)
    for ax, ((set_name, _, formula, site), bars) in zip(axes[0], examples):
        for dim, points in bars.groupby("dim"):
            ax.scatter(points["birth"], points["death"], s=14, color=dim_colors[dim], label=f"H{dim}", alpha=0.8)
        longest = float(bars["max_death"].iloc[0])
        ax.plot([0, longest], [0, longest], color="0.5", lw=1, ls="--")
        ax.set_xlabel("birth radius (Å)")
        ax.set_ylabel("death radius (Å)")
        ax.set_title(f"persistence, site {site} of {formula}\n({SET_LABELS[set_name]})", fontsize=9)
        ax.legend(fontsize=8)
    ax = axes[0, len(examples)]
    raw = correlations[correlations["against"] == "abs_error"].pivot(index="descriptor", columns="set", values="spearman")
    # Bars: the correlation with the target held fixed (absent from results made before it existed); ticks: the raw one.
    given = correlations[correlations["against"] == "abs_error_given_target"].pivot(index="descriptor", columns="set", values="spearman")
    bars = given if not given.empty else raw
    order = pd.concat([raw.abs(), bars.abs()], axis=1).max(axis=1).sort_values(ascending=False).index[:12]
    test_sets = [k for k in ("id_test", "ood_test") if k in bars.columns]
    height = 0.8 / len(test_sets)
    for j, set_name in enumerate(test_sets):
        y = np.arange(len(order)) + (j - (len(test_sets) - 1) / 2) * height
        ax.barh(y, bars.loc[order, set_name], height=height, color=set_colors()[set_name], label=SET_LABELS[set_name])
        if not given.empty:
            ax.scatter(raw.loc[order, set_name], y, marker="|", s=120, color="black", zorder=3,
                       label="raw (target not held fixed)" if j == 0 else None)
    ax.set_yticks(np.arange(len(order)), order, fontsize=8)
    ax.invert_yaxis()  # strongest at the top
    ax.axvline(0, color="0.3", lw=1)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))  # six-digit ticks overlapped at the default density
    ax.set_xlabel("Spearman ρ with |error|" + ("" if given.empty else "\nbars: target held fixed; ticks: raw"))
    ax.set_ylabel("topological descriptor")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    ax.set_title("descriptors against |error|\n(12 strongest; ph_dir_*: directed)", fontsize=9)
    fig.tight_layout()
    save(fig, out_png)
