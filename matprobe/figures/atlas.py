"""Atlas figures: periodic tables of how each element's omission fares (OOD error over the control's on the same
crystals with the failure call and n paired, the same after recalibration by one energy per held-out atom with the
offset call, OOD R², the basin divergence), per target and model; and scatter plots of each candidate predictor
against the paired ratio with its interval, the rank correlation and its bootstrap interval."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter
import numpy as np
import pandas as pd

from matprobe.studies.atlas import LABELS as LABEL_USE, PREDICTOR_NAMES, PREDICTORS
from matprobe.inputs.features import element_properties
from matprobe.figures.style import _periodic_position, periodic_table, save, target_name

# measure, title, colour-bar label, colour map, centre of a diverging map, upper bound of the measure
MAPS = [("ood_over_control", "held-out MAE / control's, same crystals", "MAE ratio, same crystals", "rocket_r", None, None),
        ("offset_share", "excess removed by an energy per held-out atom", "share of (ratio − 1) removed",
         "crest", None, None),
        ("ood_r2", "R² on the held-out materials", "R²", "vlag_r", 0.0, 1.0),
        ("basin_divergence", "ID/OOD basin divergence", "basin divergence", "mako_r", None, None)]
CALL_MARK = {"fails": "F", "passes": "P", "undecided": "?", "too few paired": "–"}
OFFSET_MARK = {"only an offset": "offset", "partly": "partly", "not an offset": "not", "no gap": "no gap", "too few crystals": "–"}


def _call_note(row: dict) -> str:
    """Under an element: its call and paired crystals ("F 944": a cell holds no more at a legible size), or, for a call
    refused with enough crystals but too few families among them, those families ("– 3 fam.")."""
    if row["call"] == "too few paired" and row["n_paired"] >= row.get("min_paired", np.inf):
        return f"{CALL_MARK[row['call']]} {int(row['n_families'])} fam."
    return f"{CALL_MARK.get(row['call'], row['call'])} {int(row['n_paired'])}"


def _box(ax, symbols) -> None:
    """A thick frame around each element's cell: the omissions that fail (the table's own mark for an omitted element
    crosses the cell out, which would hide the call and n written in it)."""
    props = element_properties()
    for z, row in props[props["symbol"].isin(list(symbols))].iterrows():
        r, c = _periodic_position(z, row["group"], row["period"])
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 0.95, 0.95, fill=False, edgecolor="black", lw=2.2))


def atlas_maps(atlas_path, out_png) -> None:
    """Per target and model, four periodic tables: the paired ratio (held-out MAE over the control's on the same
    crystals; boxed: fails the declared threshold; under each symbol the call, F/P/?, and n paired crystals), the
    ratio after few-shot recalibration by one energy per held-out atom (under each symbol the offset call), the
    held-out R², and the basin divergence. An atlas without paired columns (made before paired scoring) shows the
    unpaired ratio and n held-out."""
    atlas = pd.read_parquet(atlas_path)
    elements = atlas[~atlas["held_out"].str.startswith(("group", "period"))]
    panels = list(elements.groupby(["target", "model"], sort=True))
    n = max(1, len(panels))
    fig, axes = plt.subplots(2 * n, 2, figsize=(12.4, 7.6 * n), squeeze=False)
    for row, ((target, model), frame) in enumerate(panels):
        seeds = int(frame["seeds"].max())
        spread = "errors pooled over " + (f"{seeds} seeds" if seeds > 1 else "1 seed")
        paired = "call" in frame
        threshold = float(frame["failure_threshold"].iloc[0]) if "failure_threshold" in frame else np.nan
        fails = frame.loc[frame["call"] == "fails", "held_out"].tolist() if paired else []
        for k, (measure, label, bar, cmap, centre, upper) in enumerate(MAPS):
            ax = axes[2 * row + k // 2, k % 2]
            if measure == "offset_share":
                small_k = int(frame["offset_small_k"].iloc[0]) if "offset_small_k" in frame else None
                if small_k is None or f"recal_k{small_k}" not in frame:
                    ax.axis("off")
                    continue
                raw, recal = frame["ood_over_control"].astype(float), frame[f"recal_k{small_k}"].astype(float)
                # the excess over the control that recalibration removes; none where there is no gap to remove
                share = ((raw - recal) / (raw - 1.0)).where(frame["offset_call"] != "no gap")
                frame = frame.assign(offset_share=share)
                label = f"{label}, k={small_k}"
                notes = {h: OFFSET_MARK.get(c, c) for h, c in zip(frame["held_out"], frame["offset_call"])}
            elif paired:
                notes = {h: _call_note(row) for h, row in zip(frame["held_out"], frame.to_dict("records"))}
            else:
                notes = {h: f"n={int(m)}" for h, m in zip(frame["held_out"], frame["n_ood"]) if np.isfinite(m)}
            values = dict(zip(frame["held_out"], frame[measure].astype(float)))
            title = f"{target_name(target)}, {model}: {label}"
            if measure == "ood_over_control" and paired:
                title += f"\n{spread}; boxed: fails (95 % CI above {threshold:g});\nF/P/?/–: fails/passes/undecided/too few, paired crystals (or families)"
            elif measure == "offset_share":
                title += "\n(share of ratio − 1; below each symbol the offset call:\noffset = only an offset, partly, not, no gap)"
            elif measure == "basin_divergence":  # a landscape quantity: of the seeds whose models were analysed
                title += "\n(median over the seeds with landscapes; grey: not swept)"
            else:
                title += f"\n(median over {seeds} seed{'s' if seeds > 1 else ''}; grey: not swept)"
            periodic_table(values, [], title, bar, ax, cmap=cmap, center=centre, annotations=notes, upper=upper)
            if measure == "ood_over_control":
                _box(ax, fails)
    groups = atlas[atlas["held_out"].str.startswith(("group", "period"))]
    if not panels:
        axes[0, 0].set_title("no element omissions in this atlas")
    fig.suptitle("The periodic table of generalisation: each element held out of training in turn,\nscored beside a control "
                 "trained on as many crystals with it, on the same held-out crystals"
                 + (f" ({len(groups)} group/period omissions in atlas.parquet)" if len(groups) else ""), fontsize=10)
    fig.tight_layout()
    save(fig, out_png)


def hypothesis_scatter(atlas_path, hypothesis_path, out_png) -> None:
    """One panel per predictor: each omission's predictor (median over seeds) against its OOD/control ratio, the
    pooled paired one with its interval (the numbers the correlations and the calls read: atlas.parquet), log scales
    where the quantity is a ratio or a count; titles give Spearman ρ with its bootstrap 95 % interval and, but for the
    cheap predictor, its gain in |ρ| over the cheap one with the paired interval."""
    atlas = pd.read_parquet(atlas_path)
    interval = [c for c in ("ood_over_control_low", "ood_over_control_high") if c in atlas]
    atlas = atlas.reindex(columns=[*atlas.columns, *(p for p in PREDICTORS if p not in atlas)])  # an older table lacks some
    atlas = atlas[["target", "model", "held_out", *PREDICTORS, "ood_over_control", *interval]].sort_values(["target", "model", "held_out"])
    hypothesis = pd.read_parquet(hypothesis_path)
    pairs = list(atlas.groupby(["target", "model"], sort=True))
    per_row = 5  # predictors per row of panels, so that the figure stays readable at the report's width
    lines = -(-len(PREDICTORS) // per_row)
    fig, axes = plt.subplots(lines * max(1, len(pairs)), per_row, figsize=(3.4 * per_row, 3.4 * lines * max(1, len(pairs))),
                             squeeze=False)
    for row, ((target, model), frame) in enumerate(pairs):
        for index, (predictor, kind) in enumerate(PREDICTORS.items()):
            col = index % per_row
            ax = axes[row * lines + index // per_row, col]
            colour = {"landscape": "C0", "sensitivity": "C4", "cheap": "C2", "count": "0.4",
                      "baseline": "C2" if LABEL_USE[predictor] == "label-free" else "C3"}[kind]
            ax.scatter(frame[predictor], frame["ood_over_control"], s=14, color=colour)
            if len(interval) == 2:  # the paired ratio's family-bootstrap interval
                ax.errorbar(frame[predictor], frame["ood_over_control"], fmt="none", ecolor=colour, elinewidth=0.6, alpha=0.6,
                            yerr=[frame["ood_over_control"] - frame[interval[0]], frame[interval[1]] - frame["ood_over_control"]])
            for x, y, label in zip(frame[predictor], frame["ood_over_control"], frame["held_out"]):
                if np.isfinite(x) and np.isfinite(y):
                    ax.annotate(label, (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.6, 2, 4 rather than 6×10⁻¹, 2×10⁰
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
            if predictor in ("n_ood", "top_eigenvalue_ratio", "gauss_newton_top_ratio") and (frame[predictor] > 0).any():  # none: no log axis to set
                ax.set_xscale("log")
            ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
            stats = hypothesis[(hypothesis["target"] == target) & (hypothesis["model"] == model) & (hypothesis["predictor"] == predictor)]
            if len(stats):
                s = stats.iloc[0]
                title = f"{kind}, {LABEL_USE[predictor]}: ρ = {s['spearman']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}], n={s['omissions']}"
                if np.isfinite(s.get("gain_over_baselines", np.nan)):
                    title += (f"\n|ρ| − best {LABEL_USE[predictor]} baseline's = {s['gain_over_baselines']:+.2f} "
                              f"[{s['baselines_ci_low']:+.2f}, {s['baselines_ci_high']:+.2f}]")
                elif np.isfinite(s.get("gain_over_cheap", np.nan)):
                    title += f"\n|ρ| − |ρ(cheap)| = {s['gain_over_cheap']:+.2f} [{s['gain_ci_low']:+.2f}, {s['gain_ci_high']:+.2f}]"
                ax.set_title(title, fontsize=7)
            ax.set_xlabel(PREDICTOR_NAMES[predictor], fontsize=7)
            ax.set_ylabel(f"OOD / control MAE, same crystals\n({target_name(target)}, {model})" if col == 0 else "", fontsize=7)
            ax.tick_params(which="both", labelsize=6)
    for row in range(len(pairs)):  # the empty panels of a last, short line
        for index in range(len(PREDICTORS), lines * per_row):
            axes[row * lines + index // per_row, index % per_row].axis("off")
    fig.suptitle("Does landscape geometry predict which omissions fail? Each point an omission; Spearman ρ with its bootstrap "
                 "95 % interval over omissions (crystals redrawn jointly across omissions);\nbars: each ratio's paired 95 % "
                 "interval (blue: landscape quantities, which read the held-out labels; purple: output sensitivities, which do "
                 "not; green: label-free baselines; red: label-aware baselines; grey: the count). Each geometric quantity is "
                 "judged against the best baseline of its kind",
                 fontsize=9)
    fig.tight_layout()
    save(fig, out_png)
