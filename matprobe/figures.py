"""Figures (PNG and PDF) made from stored results only: editing a plotting function re-runs figure jobs and
nothing upstream. Every figure has labelled axes with units, a title saying what it shows, and a
colour-blind-safe palette (seaborn's `colorblind`; `viridis`/`cividis` and the diverging `vlag` for maps)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from matprobe.features import element_properties  # noqa: E402
from matprobe.io import atomic_path  # noqa: E402
from matprobe.splits import split_base  # noqa: E402
from matprobe.summary import run_key  # noqa: E402

log = logging.getLogger("matprobe.figures")

PALETTE = "colorblind"
SET_ORDER = ["train", "val", "id_test", "ood_test"]
SET_LABELS = {"train": "train", "val": "val", "id_test": "ID test", "ood_test": "OOD test"}
UNITS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "band_gap_mbj": "eV", "e_above_hull": "eV/atom"}


def units(target: str) -> str:
    return UNITS.get(target, "target units")


def split_order(splits) -> list[str]:
    """Each omission followed by its control (omit-Fe, omit-Fe-control, omit-O, ...), then the rest."""
    return sorted(set(splits), key=split_base)


def _split_model_order(pair: tuple[str, str]) -> tuple[str, str, bool]:
    """Per held-out element and model: the omission, then its control."""
    base, is_control = split_base(pair[0])
    return base, pair[1], is_control


def target_name(target: str) -> str:
    """'band gap' for the column band_gap: a figure's words, not a table's."""
    return target.replace("_", " ")


def set_colors() -> dict[str, tuple]:
    # blue, purple, green, vermilion: the palette's orange would sit beside the OOD set's vermilion
    palette = sns.color_palette(PALETTE, 10)
    return dict(zip(SET_ORDER, [palette[0], palette[4], palette[2], palette[3]]))


def save(fig, png_path) -> None:
    """PNG and a PDF beside it, each written atomically."""
    png_path = Path(png_path)
    for path, fmt in ((png_path, "png"), (png_path.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def _read_json(path):
    return json.loads(Path(path).read_text())


def _seed_counts(seeds_per_group: pd.Series) -> str:
    """'3', or '1–3' while some runs of a study are still training."""
    low, high = seeds_per_group.min(), seeds_per_group.max()
    return str(high) if low == high else f"{low}–{high}"


# ---- per dataset ------------------------------------------------------------------------------------------


def headline(metrics_paths: list, out_png) -> pd.DataFrame:
    """ID vs OOD MAE for every split x target x model, each omission beside its size-matched control."""
    rows = []
    for path in metrics_paths:
        metrics, key = _read_json(path), run_key(path)
        for set_name in ("id_test", "ood_test"):
            if metrics.get(set_name, {}).get("mae") is not None:
                rows.append({**key, "set": SET_LABELS[set_name], "mae": metrics[set_name]["mae"]})
    frame = pd.DataFrame(rows)
    targets = sorted(frame["target"].unique())
    fig, axes = plt.subplots(len(targets), 1, figsize=(max(6, 1.3 * frame["split"].nunique() * frame["model"].nunique()), 3.6 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        subset = frame[frame["target"] == target].copy()
        subset["split / model"] = subset["split"] + "\n" + subset["model"]
        pairs = sorted(set(zip(subset["split"], subset["model"])), key=_split_model_order)
        order = [f"{split}\n{model}" for split, model in pairs]
        sns.pointplot(data=subset, x="split / model", y="mae", hue="set", order=order, hue_order=["ID test", "OOD test"],
                      palette=[set_colors()["id_test"], set_colors()["ood_test"]], dodge=0.3, linestyles="none",
                      estimator="median", errorbar=("pi", 100), capsize=0.1, ax=ax)
        ax.set_ylabel(f"MAE ({units(target)}, log scale)")
        ax.set_xlabel("split (omission beside its size-matched control) and model")
        seeds = subset.groupby(["split", "model", "set"])["seed"].nunique()
        spread = f"median and range over {_seed_counts(seeds)} seeds" if seeds.max() > 1 else "one seed"
        ax.set_yscale("log")  # ratios read as distances: an OOD error 10x the ID error looks the same at any scale
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2, 3, 5)))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=8)
        ax.set_title(f"{target_name(target)}: error on in-distribution vs held-out chemistry ({spread})")
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    save(fig, out_png)
    return frame


def training_curves(history_paths: list, out_png) -> None:
    frames = []
    for path in history_paths:
        history = pd.read_parquet(path)
        frames.append(history.assign(**run_key(path)))
    frame = pd.concat(frames, ignore_index=True)
    targets = sorted(frame["target"].unique())
    # one colour per split in every panel, each omission beside its control
    order = {"hue": "split", "hue_order": split_order(frame["split"]), "style": "model", "style_order": sorted(frame["model"].unique())}
    fig, axes = plt.subplots(len(targets), 2, figsize=(12, 3.8 * len(targets)), squeeze=False)
    for row, target in enumerate(targets):
        subset = frame[frame["target"] == target]
        sns.lineplot(data=subset, x="epoch", y="train_loss", **order, palette=PALETTE, ax=axes[row, 0], errorbar=None, legend=row == 0)
        axes[row, 0].set_ylabel("train loss (MAE of standardised target, unitless)")
        axes[row, 0].set_title(f"{target_name(target)}: training loss per epoch")
        sns.lineplot(data=subset, x="epoch", y="val_mae", **order, palette=PALETTE, ax=axes[row, 1], errorbar=None, legend=False)
        axes[row, 1].set_ylabel(f"validation MAE ({units(target)})")
        axes[row, 1].set_title(f"{target_name(target)}: validation MAE per epoch (best epoch kept)")
        for ax in axes[row]:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # no epoch 2.5
    axes[0, 0].legend(fontsize=7, ncol=2)
    seeds = frame.groupby(["target", "split", "model"])["seed"].nunique()
    if seeds.max() > 1:
        fig.suptitle(f"Training curves, mean over {_seed_counts(seeds)} seeds per split and model")
    fig.tight_layout()
    save(fig, out_png)


def flatness_table(metric_paths: list, out_png) -> pd.DataFrame:
    rows = []
    for path in metric_paths:
        metrics, key = _read_json(path), run_key(path)
        for set_name in SET_ORDER:
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


def landscapes_1d(grid_paths: list, out_png) -> None:
    """1D landscapes of every model: train, ID and OOD on shared axes, relative to each set's L0."""
    frames = []
    for path in grid_paths:
        grid = pd.read_parquet(path)
        frames.append(grid[grid["grid"] == "1d"].assign(**run_key(path)))
    frame = pd.concat(frames, ignore_index=True)
    runs = list(frame.groupby(["target", "split", "model", "seed"], sort=True))
    columns = min(4, len(runs))
    rows = int(np.ceil(len(runs) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False, sharex=True)
    colors = set_colors()
    for ax, ((target, split, model, seed), subset) in zip(axes.ravel(), runs):
        for set_name in SET_ORDER:
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


# ---- per model --------------------------------------------------------------------------------------------


def parity(predictions_path, target: str, out_png) -> None:
    frame = pd.read_parquet(predictions_path)
    tests = frame[frame["set"].isin(["id_test", "ood_test"])]
    colors = set_colors()
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4.8))
    low, high = float(tests[["y_true", "y_pred"]].min().min()), float(tests[["y_true", "y_pred"]].max().max())
    for set_name in ("id_test", "ood_test"):
        subset = tests[tests["set"] == set_name]
        if subset.empty:
            continue
        mae = float((subset["y_pred"] - subset["y_true"]).abs().mean())
        label = f"{SET_LABELS[set_name]} (n={len(subset)}, MAE={mae:.3f})"
        if len(subset) > 3000:
            # Density in the set's own hue (light to full), so the legend's colour names the set.
            ax.hexbin(subset["y_true"], subset["y_pred"], gridsize=60, mincnt=1, bins="log",
                      cmap=sns.light_palette(colors[set_name], as_cmap=True), zorder=1)
            ax.plot([], [], "s", color=colors[set_name], label=f"{label}, density")
        else:
            ax.scatter(subset["y_true"], subset["y_pred"], s=8, alpha=0.6, color=colors[set_name], label=label, edgecolors="none",
                       zorder=2)
    ax.plot([low, high], [low, high], color="0.3", lw=1, ls="--")
    name = target_name(target)
    ax.set_xlabel(f"DFT {name} ({units(target)})")
    ax.set_ylabel(f"predicted {name} ({units(target)})")
    ax.set_title("Parity: in-distribution and held-out test crystals")
    ax.legend(fontsize=8)
    errors = frame.assign(error=frame["y_pred"] - frame["y_true"], set=frame["set"].map(SET_LABELS))
    sns.violinplot(data=errors, x="set", y="error", hue="set", order=[SET_LABELS[s] for s in SET_ORDER if s in set(frame["set"])],
                   palette={SET_LABELS[k]: v for k, v in colors.items()}, cut=0, ax=ax_err, legend=False)
    ax_err.axhline(0, color="0.3", lw=1)
    ax_err.set_xlabel("set")
    ax_err.set_ylabel(f"prediction − DFT ({units(target)})")
    ax_err.set_title("Error distributions per set")
    fig.tight_layout()
    save(fig, out_png)


def landscape_2d(grid_path, target: str, out_png, out_3d_png) -> None:
    grid = pd.read_parquet(grid_path)
    plane = grid[grid["grid"] == "2d"]
    sets = [s for s in SET_ORDER if s in set(plane["set"])]
    # Log-spaced levels: the loss spans orders of magnitude across the plane, and linear levels put the
    # whole basin around the trained weights into the lowest band.
    low = max(float(plane["mae"].min()), 1e-12)
    levels = np.geomspace(low, max(float(np.quantile(plane["mae"], 0.95)), low * 1.01), 16)
    fig, axes = plt.subplots(1, len(sets), figsize=(3.8 * len(sets), 3.8), squeeze=False, sharey=True, constrained_layout=True)
    for ax, set_name in zip(axes[0], sets):
        subset = plane[plane["set"] == set_name].pivot(index="beta", columns="alpha", values="mae")
        contour = ax.contourf(subset.columns, subset.index, subset.values, levels=levels, cmap="viridis", extend="max",
                              norm=matplotlib.colors.LogNorm(levels[0], levels[-1]))
        ax.plot(0, 0, "w+", ms=10)
        ax.set_title(f"{SET_LABELS[set_name]}", fontsize=9)
        ax.set_xlabel("α along d1 (filter-normalised)")
    axes[0, 0].set_ylabel("β along d2 (filter-normalised)")
    colorbar = fig.colorbar(contour, ax=axes[0].tolist(), label=f"MAE ({units(target)}, log scale)")
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
    hessian = _read_json(hessian_path)
    colors = set_colors()
    fig, ax = plt.subplots(figsize=(7, 4))
    for set_name in SET_ORDER:
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


def periodic_table(values: dict[str, float], omitted: list[str], title: str, colorbar_label: str, ax, cmap="vlag", center=0.0):
    props = element_properties()
    finite = [v for v in values.values() if np.isfinite(v)]
    if not finite:
        finite = [0.0]
    if center is None:
        vmin, vmax = min(finite), max(finite)
        norm = matplotlib.colors.Normalize(vmin, vmax)
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
        ax.text(c - 0.02, r, row["symbol"], ha="center", va="center", fontsize=6.5, color=ink)
        if row["symbol"] in omitted:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 0.95, 0.95, fill=False, edgecolor="black", lw=2.2))
            ax.text(c + 0.35, r - 0.32, "×", fontsize=7, color=ink)
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(9.6, 0.4)
    ax.set_aspect("equal")
    ax.set_xticks(range(1, 19))
    ax.set_yticks(range(1, 8))
    ax.set_xlabel("group")
    ax.set_ylabel("period (rows 8–9: lanthanides, actinides)")
    ax.set_title(title, fontsize=9)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap)
    plt.colorbar(mappable, ax=ax, label=colorbar_label, shrink=0.7)


def periodic_tables(elements_path, predictions_path, omitted: list[str], target: str, out_png) -> None:
    elements = pd.read_parquet(elements_path)
    predictions = pd.read_parquet(predictions_path)
    fig, axes = plt.subplots(1, 2, figsize=(16, 5))
    mean_contribution = elements.groupby("element").apply(lambda g: np.average(g["mean"], weights=g["count"]), include_groups=False).to_dict()
    periodic_table(mean_contribution, omitted, "Mean atom contribution per element (ID and OOD test; boxed ×: omitted)",
                   f"mean contribution ({units(target)})", axes[0], cmap="vlag", center=0.0)
    tests = predictions[predictions["set"].isin(["ood_test"] if "ood_test" in set(predictions["set"]) else ["id_test"])]
    tests = tests.assign(abs_error=(tests["y_pred"] - tests["y_true"]).abs()).explode("elements")
    per_element_error = tests.groupby("elements")["abs_error"].mean().to_dict()
    which = "OOD" if "ood_test" in set(predictions["set"]) else "ID"
    periodic_table(per_element_error, omitted, f"{which} test MAE of crystals containing each element (boxed ×: omitted)",
                   f"MAE ({units(target)})", axes[1], cmap="rocket_r", center=None)
    fig.tight_layout()
    save(fig, out_png)


def structures_3d(atoms_path, materials_path, omitted: list[str], target: str, out_png, per_set: int = 3) -> None:
    """Example crystals with atoms coloured by their contribution (Schütt et al.), ID and OOD."""
    from matprobe.structures import Crystal

    atoms = pd.read_parquet(atoms_path)
    materials = pd.read_parquet(materials_path).set_index("id")
    examples = []
    for set_name in ("id_test", "ood_test"):
        ids = atoms.loc[atoms["set"] == set_name, "id"].unique()
        if set_name == "ood_test" and omitted:
            ids = [i for i in ids if set(materials.loc[i, "elements"]) & set(omitted)]
        small_first = sorted(ids, key=lambda i: (materials.loc[i, "nsites"] > 24, i))
        examples += [(set_name, i) for i in small_first[:per_set]]
    span = atoms["contribution"].abs().quantile(0.98) or 1.0
    center = float(atoms["contribution"].median())
    norm = matplotlib.colors.Normalize(center - span, center + span)
    colormap = sns.color_palette("vlag", as_cmap=True)
    props = element_properties()
    radii = dict(zip(props["symbol"], props["covalent_radius"]))
    fig = plt.figure(figsize=(4 * per_set, 8))
    for k, (set_name, crystal_id) in enumerate(examples):
        ax = fig.add_subplot(2, per_set, k + 1, projection="3d")
        crystal = Crystal.from_row(materials.loc[crystal_id])
        xyz = crystal.cart_coords()
        values = atoms[atoms["id"] == crystal_id].sort_values("site")
        held_out = [e in omitted for e in values["element"]]
        # marker area follows the covalent radius; a held-out atom is drawn no smaller than a medium one, so that its
        # colour, the figure's point, shows inside its rim (O's radius alone leaves a black ring)
        sizes = [max(120 * radii.get(e, 1.0) ** 2, 110 if out else 0) for e, out in zip(values["element"], held_out)]
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colormap(norm(values["contribution"].to_numpy())), s=sizes,
                   edgecolors=["black" if out else "0.4" for out in held_out], linewidths=[1.3 if out else 0.4 for out in held_out],
                   depthshade=False)
        for (i, j) in [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]:
            corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) @ crystal.lattice
            ax.plot(*zip(corners[i], corners[j]), color="0.7", lw=0.6)
        ax.set_title(f"{SET_LABELS[set_name]}: {materials.loc[crystal_id, 'reduced_formula']} ({crystal_id})", fontsize=8)
        ax.set_xlabel("x (Å)", fontsize=7)
        ax.set_ylabel("y (Å)", fontsize=7)
        ax.set_zlabel("z (Å)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_box_aspect(None, zoom=0.85)  # leaves room for the z label, clipped by the next panel otherwise
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap)
    # centred on the median atom, not on zero: formation-energy contributions are nearly all negative
    fig.colorbar(mappable, ax=fig.axes, shrink=0.6, label=f"atom contribution ({units(target)}; white: the median atom, {center:.2f})")
    fig.suptitle("Atom-wise contributions in example crystals (black rims: atoms of the omitted element)", fontsize=10)
    save(fig, out_png)


def element_map(pca_path, out_png) -> None:
    frame = pd.read_parquet(pca_path)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, column, cmap in ((axes[0], "group", "viridis"), (axes[1], "period", "cividis")):
        points = ax.scatter(frame["pc1"], frame["pc2"], c=frame[column], cmap=cmap, s=40, edgecolors="0.3", linewidths=0.3)
        for _, row in frame.iterrows():
            weight = "bold" if row["omitted"] else "normal"
            # The omitted element's label sits outside its ring, which would hide it otherwise.
            offset = (7, 7) if row["omitted"] else (2, 2)
            ax.annotate(row["symbol"], (row["pc1"], row["pc2"]), fontsize=8 if row["omitted"] else 6.5, xytext=offset,
                        textcoords="offset points", fontweight=weight,
                        color="black" if row["seen_in_training"] else "0.45")
        omitted = frame[frame["omitted"]]
        ax.scatter(omitted["pc1"], omitted["pc2"], s=160, facecolors="none", edgecolors="black", linewidths=1.5, label="omitted from training")
        plt.colorbar(points, ax=ax, label=f"periodic-table {column}")
        ax.set_xlabel("principal component 1 of the element representation")
        ax.set_ylabel("principal component 2")
        ax.set_title(f"Element representations coloured by {column} (grey labels: not in training data)", fontsize=9)
        if len(omitted):
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save(fig, out_png)


def trim_bars(trim_summary_path, target: str, out_png) -> None:
    frame = pd.read_parquet(trim_summary_path)
    frame = frame.assign(set=frame["set"].map(SET_LABELS))
    spaces = [s for s in ("properties", "distance_bands") if s in set(frame["space"])]
    fig, axes = plt.subplots(1, max(1, len(spaces)), figsize=(7 * max(1, len(spaces)), 4.5), squeeze=False)
    colors = set_colors()
    for ax, space in zip(axes[0], spaces):
        subset = frame[frame["space"] == space]
        sns.barplot(data=subset, x="name", y="mean_abs_attribution", hue="set", palette={SET_LABELS[k]: v for k, v in colors.items()},
                    hue_order=[h for h in ("ID test", "OOD test") if h in set(subset["set"])], ax=ax)
        ax.set_xlabel("element property" if space == "properties" else "interatomic distance band")
        ax.set_ylabel(f"mean |attribution| ({units(target)})")
        ax.set_title(f"TRIM importance in {'element-property' if space == 'properties' else 'distance-band'} space, ID vs OOD", fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    if not spaces:
        axes[0, 0].axis("off")
        axes[0, 0].set_title("no TRIM attributions (learned embeddings have no property space)")
    fig.tight_layout()
    save(fig, out_png)


def topology_figure(correlations_path, atoms_path, materials_path, radius: float, out_png) -> None:
    from matprobe.structures import Crystal
    from matprobe.topology import neighbourhood_clouds, persistence_diagrams

    correlations = pd.read_parquet(correlations_path)
    materials = pd.read_parquet(materials_path).set_index("id")
    atoms = pd.read_parquet(atoms_path)
    examples = []
    for set_name in ("id_test", "ood_test"):
        ids = sorted(atoms.loc[atoms["set"] == set_name, "id"].unique(), key=lambda i: (materials.loc[i, "nsites"], i))
        if ids:
            examples.append((set_name, ids[0]))
    fig, axes = plt.subplots(1, len(examples) + 1, figsize=(5 * (len(examples) + 1), 4.5), squeeze=False)
    dim_colors = sns.color_palette(PALETTE, 3)
    for ax, (set_name, crystal_id) in zip(axes[0], examples):
        crystal = Crystal.from_row(materials.loc[crystal_id])
        diagrams = persistence_diagrams(neighbourhood_clouds(crystal, radius)[0], radius / 2)
        for dim, bars in diagrams.items():
            ax.scatter(bars[:, 0], bars[:, 1], s=14, color=dim_colors[dim], label=f"H{dim}", alpha=0.8)
        ax.plot([0, radius / 2], [0, radius / 2], color="0.5", lw=1, ls="--")
        ax.set_xlabel("birth radius (Å)")
        ax.set_ylabel("death radius (Å)")
        ax.set_title(f"Persistence diagram, site 0 of {materials.loc[crystal_id, 'reduced_formula']} ({SET_LABELS[set_name]})", fontsize=8)
        ax.legend(fontsize=8)
    ax = axes[0, -1]
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
    ax.set_yticks(np.arange(len(order)), order)
    ax.invert_yaxis()  # strongest at the top
    ax.axvline(0, color="0.3", lw=1)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))  # six-digit ticks overlapped at the default density
    ax.set_xlabel("Spearman ρ with |prediction error| (unitless)" + ("" if given.empty else "\nbars: DFT target held fixed; ticks: raw"))
    ax.set_ylabel("topological descriptor")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title("Which topology goes with large errors (12 strongest)", fontsize=9)
    fig.tight_layout()
    save(fig, out_png)
