"""The atlas's answers, as Markdown tables for a results page (issue 36):

    python -m matprobe.studies.atlas_answers results/studies/atlas-demo/atlas/demo

1. The study: omissions, seeds, paired crystals and families, the omission models' ID error.
2. Every omission by its paired ratio (held-out MAE over the control's on the same crystals, pooled over seeds): the
   95 % interval, the call against the declared threshold, the OOD bias, the offset call and the ratio after
   few-shot recalibration by one energy per held-out atom.
3. The calls counted, and the share of omissions whose ratio lies below the threshold (the overall pattern Li et al.
   (2025) report: most single-element omissions are not hard).
4. Does geometry predict failure: each predictor's Spearman ρ with the paired ratio and, for the geometric ones,
   the gain in |ρ| over the best baseline of its own kind (label-free or label-aware), with their intervals.

Every number is read from the atlas's own tables (`atlas.parquet`, `hypothesis.parquet`): nothing is fitted here."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe.studies.atlas import PREDICTOR_NAMES
from matprobe.studies.summary import estimate_text, markdown_table

CALLS = ("fails", "passes", "undecided", "too few paired")


def _range(values: pd.Series, decimals: int = 0) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    low, middle, high = values.min(), values.median(), values.max()
    if low == high:
        return f"{low:,.{decimals}f}"
    return f"{low:,.{decimals}f}–{high:,.{decimals}f} (median {middle:,.{decimals}f})"


def elements(atlas: pd.DataFrame) -> pd.DataFrame:
    """The atlas's single-element omissions (a group or period held out has no place in these tables)."""
    return atlas[~atlas["held_out"].str.startswith(("group", "period"))]


def study(atlas: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (target, model), frame in elements(atlas).groupby(["target", "model"], sort=True):
        rows.append({"target": target, "model": model, "omissions": len(frame), "seeds": int(frame["seeds"].max()),
                     "held-out crystals": _range(frame["n_ood"]), "paired crystals": _range(frame["n_paired"]),
                     "families": _range(frame["n_families"]), "ID MAE of the omission models": _range(frame["id_mae"], 3),
                     "failure threshold": f"{frame['failure_threshold'].iloc[0]:g}"})
    return pd.DataFrame(rows)


def omissions(atlas: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in elements(atlas).sort_values(["target", "model", "ood_over_control"], ascending=[True, True, False]).iterrows():
        small_k = int(row["offset_small_k"]) if pd.notna(row.get("offset_small_k")) else None
        recalibrated = row.get(f"recal_k{small_k}", np.nan) if small_k else np.nan
        rows.append({"target": row["target"], "model": row["model"], "element": row["held_out"],
                     "paired (families)": f"{int(row['n_paired'])} ({int(row['n_families'])})",
                     "ratio [95 %]": estimate_text(row["ood_over_control"], row["ood_over_control_low"], row["ood_over_control_high"]),
                     "call": row["call"], "OOD bias": f"{row['ood_bias']:+.3f}" if np.isfinite(row["ood_bias"]) else "–",
                     "offset call": row["offset_call"],
                     f"ratio after an energy per atom (k={small_k})": f"{recalibrated:.2f}" if np.isfinite(recalibrated) else "–"})
    return pd.DataFrame(rows)


def calls(atlas: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (target, model), frame in elements(atlas).groupby(["target", "model"], sort=True):
        counts = frame["call"].value_counts()
        threshold = float(frame["failure_threshold"].iloc[0])
        ratios = frame["ood_over_control"].astype(float)
        rows.append({"target": target, "model": model, **{call: int(counts.get(call, 0)) for call in CALLS},
                     "ratio below the threshold": f"{int((ratios < threshold).sum())} of {int(ratios.notna().sum())}",
                     "median ratio": f"{ratios.median():.2f}",
                     "failing": ", ".join(frame.loc[frame["call"] == "fails"].sort_values("ood_over_control", ascending=False)["held_out"])})
    return pd.DataFrame(rows)


def hypothesis(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in table.iterrows():
        geometric = isinstance(row.get("best_baseline"), str) and row["best_baseline"] != ""
        rows.append({"target": row["target"], "model": row["model"], "predictor": PREDICTOR_NAMES.get(row["predictor"], row["predictor"]),
                     "kind": f"{row['kind']}, {row['labels']}", "omissions": int(row["omissions"]), "Spearman ρ [95 %]": estimate_text(row["spearman"], row["ci_low"], row["ci_high"]),
                     "best baseline of its kind": PREDICTOR_NAMES.get(row["best_baseline"], row["best_baseline"]) if geometric else "",
                     "gain in |ρ| [95 %]": estimate_text(row["gain_over_baselines"], row["baselines_ci_low"], row["baselines_ci_high"]) if geometric else "",
                     "beats it": ("yes" if row["beats_baselines"] else "no") if geometric else ""})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("atlas_dir", type=Path, help="an atlas's folder, e.g. results/studies/atlas-demo/atlas/demo")
    args = parser.parse_args(argv)
    atlas = pd.read_parquet(args.atlas_dir / "atlas.parquet")
    hypothesis_path = args.atlas_dir / "hypothesis.parquet"
    sections = [("The study", study(atlas)), ("Every omission, by its paired ratio", omissions(atlas)), ("The calls", calls(atlas))]
    if hypothesis_path.exists():
        sections.append(("Does geometry predict failure?", hypothesis(pd.read_parquet(hypothesis_path))))
    for title, table in sections:
        print(f"### {title}\n")
        print(markdown_table(table, {}) if len(table) else "(no omissions)")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
