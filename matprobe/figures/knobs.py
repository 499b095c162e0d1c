"""Generative-knob figures: response curves of the atom contribution against each attribute, the omission model
beside its control; and the knob model's latent space (PGH-VAE's view), in-distribution against held-out atoms."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from matprobe.figures.style import SET_LABELS, save, set_colors, target_name, units
from matprobe import MatprobeError
from matprobe.vocabulary import ATTRIBUTE_UNITS


def _label(attribute: str) -> str:
    unit = ATTRIBUTE_UNITS.get(attribute)
    return attribute.replace("_", " ") + (f" ({unit})" if unit else "")


def _failed_check(attribute: str, splits: list[str], checks: list[dict]) -> tuple[str, str, str, str] | None:
    """Why a knob is not drawn (the first model whose check it fails): split, encoded R², fidelity R², reason."""
    for split, check in zip(splits, checks):
        if attribute not in check["attributes"]:
            return split, "–", "–", "not an attribute of this model's atoms (too few values)"
        encoded, fidelity = check["encoded_r2"][attribute], check["fidelity_r2"][attribute]
        if encoded < check["encoded_threshold"]:
            return split, f"{encoded:.2f}", f"{fidelity:.2f}", f"the model's h does not encode it (R² < {check['encoded_threshold']})"
        if fidelity < check["fidelity_goal"]:
            return split, f"{encoded:.2f}", f"{fidelity:.2f}", f"knob fidelity R² below its goal {check['fidelity_goal']}"
        judged = check.get("crystal", {}).get("knobs", {}).get(attribute)
        if judged and judged["verdict"] == "disagrees":
            return split, f"{encoded:.2f}", f"{fidelity:.2f}", (f"disagrees with the crystal's {judged['intervention'].replace('_', ' ')} "
                                                                f"(Spearman {judged['spearman']:.2f} over {judged['curves']} edited atoms)")
    return None


def knob_responses(splits: list[str], summary_paths: list, response_paths: list, check_paths: list, target: str, out_png) -> None:
    """Per attribute whose knob passes its checks in both models, the mean response (and its interquartile band over
    atoms) of each model: the held-out element's atoms where there are any, else all OOD atoms, and the ID atoms.
    The knobs that fail a check are not drawn as if they worked, nor as empty panels: a table below lists them with
    the numbers that failed."""
    responses = [pd.read_parquet(path) for path in response_paths]
    checks = [json.loads(Path(path).read_text()) for path in check_paths]
    every = list(dict.fromkeys(name for check in checks for name in check["attributes"]))
    if not every:
        raise MatprobeError(f"{check_paths[0]}: the knob checks list no attributes")
    failed = {attribute: _failed_check(attribute, splits, checks) for attribute in every}
    attributes = [attribute for attribute in every if failed[attribute] is None]
    failing = [(attribute, *why) for attribute, why in failed.items() if why is not None]
    columns = 3
    rows = int(np.ceil(len(attributes) / columns))
    table_height = 0.5 + 0.24 * len(failing) if failing else 0.0
    fig = plt.figure(figsize=(3.6 * columns, 2.9 * rows + table_height + 0.8))
    grid = fig.add_gridspec(rows + (1 if failing else 0), columns,
                            height_ratios=[2.9] * rows + ([table_height] if failing else []))
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(columns)] for r in range(rows)]).reshape(rows, columns)
    if failing:
        table_ax = fig.add_subplot(grid[rows, :])
        table_ax.axis("off")
        table_ax.set_title(f"{len(failing)} of {len(every)} knobs not drawn: the checks they failed "
                           "(encoded: R² of the attribute from h; fidelity: R² of the knob's value from the decoded h)", fontsize=8)
        table = table_ax.table(cellText=[[_label(a), split, enc, fid, why] for a, split, enc, fid, why in failing],
                               colLabels=["attribute", "model (split)", "encoded R²", "fidelity R²", "why not drawn"],
                               loc="upper center", cellLoc="left", colLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.auto_set_column_width(list(range(5)))
    colours = set_colors()
    for ax, attribute in zip(axes.ravel(), attributes):
        ax.set_title(_label(attribute), fontsize=9)
        ax.set_xlabel(_label(attribute), fontsize=7)
        ax.set_ylabel(f"atom contribution ({units(target)})", fontsize=7)
        ax.tick_params(labelsize=7)
        for split, frame, style in zip(splits, responses, ("-", "--")):
            held_out = frame[(frame["set"] == "ood_test") & (frame["atoms"] == "held_out")]
            groups = [("ood_test", held_out if len(held_out) else frame[(frame["set"] == "ood_test") & (frame["atoms"] == "all")]),
                      ("id_test", frame[(frame["set"] == "id_test") & (frame["atoms"] == "all")])]
            for set_name, subset in groups:
                curve = subset[subset["attribute"] == attribute].groupby("value")["contribution"]
                if curve.ngroups == 0:
                    continue
                middle = curve.mean()
                label = f"{split}, {SET_LABELS[set_name]}" + (" (the omitted element's atoms)" if set_name == "ood_test" and len(held_out) else "")
                ax.plot(middle.index, middle.to_numpy(), style, color=colours[set_name], label=label, lw=1.5)
                ax.fill_between(middle.index, curve.quantile(0.25).to_numpy(), curve.quantile(0.75).to_numpy(), color=colours[set_name],
                                alpha=0.12 if style == "-" else 0.06)
    for ax in axes.ravel()[len(attributes):]:
        ax.axis("off")
    handles, labels = next((ax.get_legend_handles_labels() for ax in axes.ravel() if ax.get_legend_handles_labels()[0]), ([], []))
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Knob responses ({target_name(target)}): one knob of an atom turned from its 5th to its 95th percentile, "
                 "its element and the other knobs held,\nthrough each model's frozen head (mean and interquartile band over atoms; solid: "
                 f"{splits[0]}, dashed: {splits[-1]})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, out_png)


def latent_map(atoms_path, target: str, out_png) -> None:
    """The knob model's z in two principal components, coloured by coordination, a topological descriptor and the
    contribution; ID atoms as dots, OOD atoms as triangles (held-out element's atoms ringed)."""
    atoms = pd.read_parquet(atoms_path)
    shown = atoms[atoms["set"].isin(["id_test", "ood_test"])]
    colour_by = [c for c in ("coordination", "h1_total_persistence", "contribution") if c in shown]
    fig, axes = plt.subplots(1, len(colour_by), figsize=(3.9 * len(colour_by), 3.6), squeeze=False)
    for ax, column in zip(axes[0], colour_by):
        values = shown[column]
        low, high = np.nanpercentile(values, [2, 98])
        for set_name, marker in (("id_test", "o"), ("ood_test", "^")):
            subset = shown[shown["set"] == set_name]
            points = ax.scatter(subset["z1"], subset["z2"], c=subset[column], cmap="viridis", vmin=low, vmax=high, s=9, marker=marker,
                                alpha=0.8, linewidths=0, label=SET_LABELS[set_name])
        held = shown[shown["is_held_out"]]
        if len(held):
            ax.scatter(held["z1"], held["z2"], s=30, facecolors="none", edgecolors="black", linewidths=0.5, label="held-out element's atoms")
        fig.colorbar(points, ax=ax, label=_label(column) if column != "contribution" else f"contribution ({units(target)})")
        ax.set_xlabel("z, first principal component")
        ax.set_ylabel("z, second principal component")
        ax.set_title(f"knob model's latent space, coloured by {column.replace('_', ' ')}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save(fig, out_png)


PANELS = [("shell_stretch", None, "first-shell stretch", "per unit stretch fraction"),
          ("substitution", "group", "substitution along the group", "per Pauling unit of the substitute"),
          ("substitution", "period", "substitution along the period", "per Pauling unit of the substitute")]


def knob_crystal(splits: list[str], crystal_paths: list, check_paths: list, target: str, out_png) -> None:
    """The knobs against the crystal: per atom the interventions edited, the slope of its contribution when the edit
    is made through the knob model against the slope when it is made in the crystal, one panel per edit (shell
    stretch; substitution along the group, along the period), the omission beside its control, each model's rank
    correlation and verdict in the legend."""
    compared = [pd.read_parquet(path) for path in crystal_paths]
    checks = [json.loads(Path(path).read_text()) for path in check_paths]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.8 * len(PANELS), 4.1))  # under twice the report's 920 px
    unit = units(target)
    for ax, (intervention, path, title, per) in zip(axes, PANELS):
        for split, frame, check, (marker, fill) in zip(splits, compared, checks, (("o", True), ("s", False))):
            part = frame[(frame["intervention"] == intervention) & ((frame["path"] == path) if path else True)]
            part = part[part["judged"].astype(bool)].dropna(subset=["crystal_slope", "knob_slope"])  # as the verdict counts them
            entry = next((p for p in check["crystal"]["paths"] if p["intervention"] == intervention and p["path"] == (path or "all")),
                         None)
            if entry is None and path:  # an intervention with one path only has its verdict under "all"
                entry = next((p for p in check["crystal"]["paths"] if p["intervention"] == intervention and p["path"] == "all"), None)
            verdict = (f"Spearman {entry['spearman']:.2f}, {entry['verdict']}" if entry and entry.get("spearman") is not None
                       else (entry["verdict"] if entry else "not compared"))
            colour = "#0072B2" if fill else "#D55E00"
            ax.scatter(part["crystal_slope"], part["knob_slope"], s=16, marker=marker, facecolors=colour if fill else "none",
                       edgecolors=colour, linewidths=0.8, alpha=0.8, label=f"{split} ({len(part)} edits; {verdict})")
        ax.axhline(0, color="0.7", lw=0.6)
        ax.axvline(0, color="0.7", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"slope in the crystal ({unit} {per})", fontsize=7.5)
        ax.set_ylabel(f"slope through the knob model ({unit} {per})", fontsize=7.5)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="upper left", frameon=False)
    fig.suptitle(f"Knobs against the crystal ({target_name(target)}): one point per edited atom; a knob agrees when its slopes "
                 "rank the atoms as the crystal's do\n(Spearman ≥ 0.3) with median slopes of one sign", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    save(fig, out_png)
