"""Loss-landscape figures: the flatness table and 1D lines of every model, and per model the 2D plane, its 3D surface
and the Hessian spectral density."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from matprobe.figures.style import (SET_LABELS, read_json, save, set_colors, target_name, units)
from matprobe.prepare.sets import SETS


def flatness_table(runs: list[dict], metric_paths: list, out_png) -> pd.DataFrame:
    rows = []
    for key, path in zip(runs, metric_paths):
        metrics = read_json(path)
        for set_name in SETS:
            entry = metrics["sets"].get(set_name)
            if entry:
                rows.append({"target": target_name(key["target"]), "split": key["split"], "model": key["model"], "seed": key["seed"], "set": SET_LABELS[set_name],
                             "L0": entry["loss_at_origin"], "eps-sharp": entry["epsilon_sharpness"], "flat r (1D)": entry["flat_radius_1d"],
                             "min offset": entry["grid_minimum_offset"], "top eig": entry.get("top_eigenvalue", np.nan), "trace": entry.get("trace", np.nan),
                             "trace sd": entry.get("trace_std", np.nan),
                             "ID/OOD basin div": metrics.get("divergence_id_test_ood_test", np.nan) if set_name == "ood_test" else np.nan})
    frame = pd.DataFrame(rows)
    shown = frame.drop(columns="trace sd")
    for column in ["L0", "eps-sharp", "flat r (1D)", "min offset", "top eig", "trace", "ID/OOD basin div"]:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    # A Hutchinson trace from a few probe vectors is noisy and can be negative where the Hessian is indefinite:
    # its spread over the estimator's runs is shown beside it.
    shown["trace"] = [text if pd.isna(sd) else f"{text} ± {sd:.2g}" for text, sd in zip(shown["trace"], frame["trace sd"])]
    fig, ax = plt.subplots(figsize=(13, 0.28 * len(shown) + 1.2))
    ax.axis("off")
    # The table fills the axes (bbox), so its height follows the figure's and no blank band opens under the title.
    table = ax.table(cellText=shown.values, colLabels=shown.columns, bbox=[0, 0, 1, 1], cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(shown.columns))))  # long target names stay inside their cells
    ax.set_title("Flatness metrics per model and set (L0: loss at the trained weights, standardised MAE; "
                 "radii and offsets in direction units; eigenvalues and trace of the Hessian, trace ± sd over runs)", fontsize=9)
    save(fig, out_png)
    return frame


def landscapes_1d(runs: list[dict], grid_paths: list, out_png) -> None:
    """1D landscapes of every model: train, ID and OOD on shared axes, relative to each set's L0."""
    frames = []
    for key, path in zip(runs, grid_paths):
        grid = pd.read_parquet(path)
        frames.append(grid[grid["grid"] == "1d"].assign(**key))
    frame = pd.concat(frames, ignore_index=True)
    runs = list(frame.groupby(["target", "split", "model", "seed"], sort=True))
    columns = min(3, len(runs))
    rows = int(np.ceil(len(runs) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.5 * columns, 2.9 * rows), squeeze=False, sharex=True)
    colors = set_colors()
    for ax, ((target, split, model, seed), subset) in zip(axes.ravel(), runs):
        for set_name in SETS:
            line = subset[subset["set"] == set_name].sort_values("alpha")
            if len(line):
                ax.plot(line["alpha"], line["mae"], color=colors[set_name], label=SET_LABELS[set_name])
        ax.set_title(f"{target_name(target)} | {split} | {model} | seed {seed}", fontsize=7)
        ax.set_xlabel("step along d1 (filter-normalised units)", fontsize=7)
        # log scale: the edges of the line reach 10-1000x the loss at the trained weights, and would flatten the basin
        ax.set_yscale("log")
        ax.set_ylabel(f"MAE ({units(target)}, log scale)", fontsize=7)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.tick_params(which="both", labelsize=7)  # a line spanning less than a decade gets labelled minor ticks
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    fig.suptitle("1D loss landscapes: MAE along one random direction from the trained weights (α = 0)", fontsize=10)
    fig.tight_layout()
    # one legend for all panels, under them, so that no panel's lines are covered
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=8, frameon=False)
    save(fig, out_png)


def landscape_2d(grid_path, target: str, out_png, out_3d_png) -> None:
    grid = pd.read_parquet(grid_path)
    plane = grid[grid["grid"] == "2d"]
    sets = [s for s in SETS if s in set(plane["set"])]
    # Log-spaced levels: the loss spans orders of magnitude across the plane, and linear levels put the
    # whole basin around the trained weights into the lowest band.
    low = max(float(plane["mae"].min()), 1e-12)
    levels = np.geomspace(low, max(float(np.quantile(plane["mae"], 0.95)), low * 1.01), 16)
    # two columns: four sets in one row shrink each panel to a quarter of the report's width
    columns = min(2, len(sets))
    rows = int(np.ceil(len(sets) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns + 1.0, 3.3 * rows), squeeze=False, sharex=True, sharey=True,
                             constrained_layout=True)
    for ax in axes.ravel()[len(sets):]:
        ax.axis("off")
    for ax, set_name in zip(axes.ravel(), sets):
        subset = plane[plane["set"] == set_name].pivot(index="beta", columns="alpha", values="mae")
        contour = ax.contourf(subset.columns, subset.index, subset.values, levels=levels, cmap="viridis", extend="max",
                              norm=matplotlib.colors.LogNorm(levels[0], levels[-1]))
        ax.plot(0, 0, "w+", ms=10)
        ax.set_title(f"{SET_LABELS[set_name]}", fontsize=9)
        ax.set_xlabel("α along d1 (filter-normalised)")
    for ax in axes[:, 0]:
        ax.set_ylabel("β along d2 (filter-normalised)")
    colorbar = fig.colorbar(contour, ax=axes.ravel().tolist(), label=f"MAE ({units(target)}, log scale)")
    colorbar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    fig.suptitle("2D loss landscapes with the same directions and contour levels for every set (+: trained weights)", fontsize=10)
    save(fig, out_png)

    # log10 height on one shared scale: on a linear one a single corner spike flattens the basin to nothing
    fig = plt.figure(figsize=(10, 4.5))
    shown = [s for s in ("train", "ood_test") if s in sets]
    surfaces = plane[plane["set"].isin(shown)].assign(log_mae=lambda f: np.log10(f["mae"].clip(lower=1e-12)))
    z_low, z_high = surfaces["log_mae"].min(), surfaces["log_mae"].max()
    for k, set_name in enumerate(shown):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax.computed_zorder = False  # draw order, so the trained-weights marker stays visible on the surface
        subset = surfaces[surfaces["set"] == set_name].pivot(index="beta", columns="alpha", values="log_mae")
        a, b = np.meshgrid(subset.columns, subset.index)
        ax.plot_surface(a, b, subset.values, cmap="viridis", norm=matplotlib.colors.Normalize(z_low, z_high), linewidth=0,
                        antialiased=True, alpha=0.9)
        at_origin = subset.loc[subset.index[np.argmin(np.abs(subset.index))], subset.columns[np.argmin(np.abs(subset.columns))]]
        ax.scatter([0], [0], [at_origin], color="red", s=25, depthshade=False, label="trained weights")
        ax.set_zlim(z_low, z_high)
        ax.set_xlabel("α (d1)")
        ax.set_ylabel("β (d2)")
        ax.set_zlabel(f"log10 MAE ({units(target)})")
        ax.set_box_aspect(None, zoom=0.85)
        ax.set_title(f"{SET_LABELS[set_name]} loss surface", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Loss surface around the trained weights, training data vs held-out chemistry", fontsize=10)
    save(fig, out_3d_png)


def hessian_density(hessian_path, out_png) -> None:
    hessian = read_json(hessian_path)
    colors = set_colors()
    fig, ax = plt.subplots(figsize=(7, 4))
    for set_name in SETS:
        entry = hessian["sets"].get(set_name)
        if entry:
            density = entry["density"]
            ax.plot(density["grid"], np.maximum(density["density"], 1e-12), color=colors[set_name],
                    label=f"{SET_LABELS[set_name]} (top {entry['top_eigenvalue_mean']:.3g}, trace {entry['trace_mean']:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("Hessian eigenvalue (standardised-MAE loss per unit² of weight)")
    ax.set_ylabel("spectral density (SLQ, log scale)")
    ax.set_title("Hessian spectral density of the loss, per set")
    ax.legend(fontsize=8)
    save(fig, out_png)
