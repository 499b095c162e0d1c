"""Training figures: the headline (ID vs OOD error beside the controls), training curves and parity plots."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
import seaborn as sns

from matprobe.figures.style import (PALETTE, SET_LABELS, read_json, save, seed_counts, set_colors, split_model_order,
                                    split_order, target_name, units)
from matprobe.prepare.sets import SETS


def headline(runs: list[dict], metrics_paths: list, out_png) -> pd.DataFrame:
    """ID vs OOD MAE for every split x target x model, each omission beside its size-matched control; `runs`: the
    keys of the run each metrics file belongs to."""
    rows = []
    for key, path in zip(runs, metrics_paths):
        metrics = read_json(path)
        for set_name in ("id_test", "ood_test"):
            if metrics.get(set_name, {}).get("mae") is not None:
                rows.append({**key, "set": SET_LABELS[set_name], "mae": metrics[set_name]["mae"]})
    frame = pd.DataFrame(rows)
    targets = sorted(frame["target"].unique())
    fig, axes = plt.subplots(len(targets), 1, figsize=(max(6, 1.3 * frame["split"].nunique() * frame["model"].nunique()), 3.6 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        subset = frame[frame["target"] == target].copy()
        subset["split / model"] = subset["split"] + "\n" + subset["model"]
        pairs = sorted(set(zip(subset["split"], subset["model"])), key=split_model_order)
        order = [f"{split}\n{model}" for split, model in pairs]
        sns.pointplot(data=subset, x="split / model", y="mae", hue="set", order=order, hue_order=["ID test", "OOD test"],
                      palette=[set_colors()["id_test"], set_colors()["ood_test"]], dodge=0.3, linestyles="none",
                      estimator="median", errorbar=("pi", 100), capsize=0.1, ax=ax)
        ax.set_ylabel(f"MAE ({units(target)}, log scale)")
        ax.set_xlabel("split (omission beside its size-matched control) and model")
        seeds = subset.groupby(["split", "model", "set"])["seed"].nunique()
        spread = f"median and range over {seed_counts(seeds)} seeds" if seeds.max() > 1 else "one seed"
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


def training_curves(runs: list[dict], history_paths: list, out_png) -> None:
    frames = []
    for key, path in zip(runs, history_paths):
        frames.append(pd.read_parquet(path).assign(**key))
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
        fig.suptitle(f"Training curves, mean over {seed_counts(seeds)} seeds per split and model")
    fig.tight_layout()
    save(fig, out_png)


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
    sns.violinplot(data=errors, x="set", y="error", hue="set", order=[SET_LABELS[s] for s in SETS if s in set(frame["set"])],
                   palette={SET_LABELS[k]: v for k, v in colors.items()}, cut=0, ax=ax_err, legend=False)
    ax_err.axhline(0, color="0.3", lw=1)
    ax_err.set_xlabel("set")
    ax_err.set_ylabel(f"prediction − DFT ({units(target)})")
    ax_err.set_title("Error distributions per set")
    fig.tight_layout()
    save(fig, out_png)
