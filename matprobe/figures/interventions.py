"""Physical-intervention figures: the model's energy-volume curves under isotropic strain, ID beside OOD, the omission
beside its control; and the responses of an atom's contribution to a stretch of its first shell and to the
substitution of its element, with the substitutions into the held-out element paired between the two models."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from matprobe.figures.style import PALETTE, SET_LABELS, save, target_name, units
from matprobe.vocabulary import ENERGY_TARGETS

GROUP_LABELS = {"held_out": "the held-out element's atoms", "other": "other atoms", "neighbour_of_held_out": "its neighbours' atoms"}
PAIR_KEYS = ["set", "id", "site", "path", "step"]


def _read(splits: list[str], paths: list) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(path).assign(split=split) for split, path in zip(splits, paths)], ignore_index=True)


def _styles(splits: list[str]) -> dict[str, dict]:
    """The omission solid in the palette's first colour, its control dashed in its second."""
    colours = sns.color_palette(PALETTE, 2)
    return {split: {"color": colours[k], "ls": ("-", "--")[k]} for k, split in enumerate(splits)}


def _relative(curves: pd.DataFrame, column: str, keys: list[str]) -> pd.Series:
    """Each curve's values minus its value at step 0 (the unedited crystal)."""
    reference = curves[curves["step"] == 0].set_index(keys)[column]
    return curves[column].to_numpy() - reference.reindex(pd.MultiIndex.from_frame(curves[keys])).to_numpy()


def _median_band(ax, x: pd.Series, y: pd.Series, style: dict, label: str, thin: pd.DataFrame | None = None) -> None:
    """The median over curves at each x, the interquartile band around it, and (given) every curve thin behind."""
    if thin is not None:
        for _, curve in thin.groupby("curve", sort=False):
            ax.plot(curve["x"], curve["y"], color=style["color"], ls=style["ls"], lw=0.5, alpha=0.25)
    grouped = pd.DataFrame({"x": x, "y": y}).dropna().groupby("x")["y"]
    if grouped.ngroups == 0:
        return
    middle = grouped.median()
    ax.plot(middle.index, middle.to_numpy(), color=style["color"], ls=style["ls"], lw=2, label=label)
    ax.fill_between(middle.index, grouped.quantile(0.25).to_numpy(), grouped.quantile(0.75).to_numpy(), color=style["color"], alpha=0.12)


def strain_figure(splits: list[str], curve_paths: list, summary_paths: list, target: str, out_png) -> None:
    """Per set (ID test, OOD test): each crystal's prediction under isotropic strain relative to the unstrained crystal,
    with the median and its interquartile band, the omission solid, the control dashed; beside them, where each
    model puts the minimum of its curve (an energy target) or the slope at the DFT cell (a band gap)."""
    curves = _read(splits, curve_paths).query("intervention == 'strain'")
    summary = _read(splits, summary_paths).query("intervention == 'strain'")
    sets = [s for s in ("id_test", "ood_test") if s in set(curves["set"])]
    energy = target in ENERGY_TARGETS
    styles = _styles(splits)
    fig, axes = plt.subplots(1, len(sets) + 1, figsize=(3.9 * (len(sets) + 1), 3.6), squeeze=False)
    axes = axes[0]
    if not len(curves):
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.5, 0.5, "no strain curves (interventions.edits leaves strain out)", ha="center", va="center")
        save(fig, out_png)
        return
    curves = curves.assign(x=100 * curves["value"], y=_relative(curves, "prediction", ["split", "set", "id"]),
                           curve=curves["split"] + curves["id"])
    low, high = np.nanquantile(curves["y"], [0.01, 0.99])
    for ax, set_name in zip(axes, sets):
        for split in splits:
            subset = curves[(curves["set"] == set_name) & (curves["split"] == split)]
            _median_band(ax, subset["x"], subset["y"], styles[split], f"{split} (median, IQR)", thin=subset)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
        crystals = curves.loc[curves["set"] == set_name, "id"].nunique()
        ax.set_title(f"{SET_LABELS[set_name]} ({crystals} crystals)", fontsize=9)
        ax.set_xlabel("isotropic linear strain (%)")
        ax.set_ylabel(f"prediction − unstrained ({units(target)})")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="best")
    ax = axes[-1]
    shown = summary[summary["set"].isin(sets)].assign(set_label=lambda f: f["set"].map(SET_LABELS))
    order = [SET_LABELS[s] for s in sets]
    if energy:
        column, label = "minimum_strain_percent", "strain at the curve's minimum (%)"
        notes = [f"{SET_LABELS[s]}, {split}: {int(g['minimum_in_range'].sum())} of {len(g)} minima in range"
                 for (s, split), g in shown.groupby(["set", "split"], sort=False)]
        ax.set_title("where each model puts the minimum\n(0: the DFT structure)", fontsize=9)
    else:
        column, label = "slope_prediction", f"d(prediction)/d(strain) at the DFT cell ({units(target)})"
        notes = [f"{target_name(target)}: no minimum expected; the slope is the number"]
        ax.set_title("slope at the DFT structure", fontsize=9)
    if shown[column].notna().any():
        sns.stripplot(data=shown, x="set_label", y=column, hue="split", order=order, hue_order=splits, dodge=True, jitter=0.2, size=4,
                      palette=[styles[s]["color"] for s in splits], ax=ax)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the points, never on them
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("")
    ax.set_ylabel(label)
    ax.text(0.0, -0.2, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="top")
    fig.suptitle(f"Energy–volume physicality ({target_name(target)}): the model's prediction as the whole cell is strained "
                 f"(solid: {splits[0]}" + (f", dashed: {splits[1]})" if len(splits) > 1 else ")"), fontsize=9)
    fig.tight_layout()
    save(fig, out_png)


def responses_figure(splits: list[str], curve_paths: list, target: str, out_png) -> None:
    """Top: the centre atom's contribution as its first shell of bonds is stretched, per set and atom group (median
    and interquartile band over atoms). Bottom: the substituted atom's contribution change, omission against
    control, one point per atom and substitute: into the held-out element in the crystals both models trained on (S
    → O when O is held out), out of it in the OOD crystals (O → S), and along group and period elsewhere."""
    curves = _read(splits, curve_paths)
    styles = _styles(splits)
    stretch = curves[curves["intervention"] == "shell_stretch"]
    stretch = stretch.assign(x=100 * stretch["value"], y=_relative(stretch, "contribution", ["split", "set", "id", "site"]))
    panels = [(s, g) for s in ("id_test", "ood_test") for g in ("other", "held_out", "neighbour_of_held_out")
              if len(stretch[(stretch["set"] == s) & (stretch["atoms"] == g)])]
    substitution = curves[curves["intervention"] == "substitution"]
    substitution = substitution.assign(change=_relative(substitution, "contribution", ["split", "set", "id", "site", "path"]))
    pairs = [("into the held-out element\n(crystals both trained on)", substitution["into_held_out"] & (substitution["set"] == "train")),
             ("the held-out element's atoms\nsubstituted (OOD crystals)", (substitution["atoms"] == "held_out") & (substitution["step"] != 0)),
             ("other atoms along group\nand period (ID and OOD)", (substitution["atoms"] == "other") & (substitution["step"] != 0))]
    columns = max(len(panels), len(pairs), 1)
    fig, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 7.0), squeeze=False)
    for ax, (set_name, group) in zip(axes[0], panels):
        for split in splits:
            subset = stretch[(stretch["set"] == set_name) & (stretch["atoms"] == group) & (stretch["split"] == split)]
            _median_band(ax, subset["x"], subset["y"], styles[split], split)
        atoms = stretch.loc[(stretch["set"] == set_name) & (stretch["atoms"] == group), ["id", "site"]].drop_duplicates()
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(f"{SET_LABELS[set_name]}: {GROUP_LABELS[group]} ({len(atoms)})", fontsize=9)
        ax.set_xlabel("first-shell bond stretch (%)")
        ax.set_ylabel(f"centre's contribution − unstretched ({units(target)})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[0][len(panels):]:
        ax.axis("off")
    for ax, (title, chosen) in zip(axes[1], pairs):
        subset = substitution[chosen]
        ax.set_title(title, fontsize=8)
        if len(splits) < 2 or subset.empty:
            ax.text(0.5, 0.5, "none in this run" if subset.empty else "no control to pair with", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        wide = subset.pivot_table(index=PAIR_KEYS + ["substitute", "element"], columns="split", values="change").dropna().reset_index()
        if wide.empty:
            ax.text(0.5, 0.5, "no valid pair", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            continue
        x, y = wide[splits[1]], wide[splits[0]]
        ax.scatter(x, y, s=14, color=styles[splits[0]]["color"], alpha=0.7, linewidths=0)
        span = [min(x.min(), y.min()), max(x.max(), y.max())]
        ax.plot(span, span, color="0.5", lw=0.8, ls=":")
        ax.axhline(0, color="0.8", lw=0.5), ax.axvline(0, color="0.8", lw=0.5)
        # the largest gap of each of the four most different substitutions, each named once
        labelled = wide.assign(gap=(y - x).abs()).sort_values("gap", ascending=False).drop_duplicates(["element", "substitute"]).head(4)
        for _, row in labelled.iterrows():
            ax.annotate(f"{row['element']}→{row['substitute']}", (row[splits[1]], row[splits[0]]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
        transitions = wide.groupby(["element", "substitute"]).size().sort_values(ascending=False)
        # the counts in the title, where they cover no point
        ax.set_title(f"{title}\n{len(wide)} substitutions: " + ", ".join(f"{a}→{b} ×{n}" for (a, b), n in transitions.head(3).items()),
                     fontsize=8)
        ax.set_xlabel(f"{splits[1]}: Δ contribution ({units(target)})", fontsize=8)
        ax.set_ylabel(f"{splits[0]}: Δ contribution ({units(target)})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[1][len(pairs):]:
        ax.axis("off")
    fig.suptitle(f"Responses to edits of one atom ({target_name(target)}). Top: its first shell stretched (solid: {splits[0]}"
                 + (f", dashed: {splits[1]}" if len(splits) > 1 else "") + ").\nBottom: its element substituted, the change of its "
                 "contribution in the omission against the control (dotted: equal)", fontsize=9)
    fig.tight_layout()
    save(fig, out_png)
