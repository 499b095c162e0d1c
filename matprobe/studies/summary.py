"""Tables across runs: one row per trained model with its run keys and every scalar metric of the training,
landscape and attribution stages (summary/runs.parquet and .csv of a study); the headline table and the worst
predictions per dataset, from training alone (summary/{dataset}/). Every function takes the keys of the run each
file belongs to beside the files (matprobe.layout.Run), never reading them off a path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe.io import atomic_path, write_parquet
from matprobe.layout import RUN_KEYS
from matprobe.prepare.splits import split_kind


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (int, float, bool, str)) or value is None:
        out[prefix] = value


def _run_id(key: dict) -> tuple:
    return tuple(key[name] for name in RUN_KEYS)


def summarise_runs(runs: list[dict], metrics_paths: list, analysed: list[dict], landscape_paths: list,
                   attribution_paths: list, out_parquet, out_csv) -> pd.DataFrame:
    """One row per trained model: its keys, training metrics and, for the models that were analysed (`analysed`,
    the runs of config `analysis_seeds`, beside their landscape metrics.json and attribution summary.json files),
    landscape and attribution metrics; the others' landscape and attribution columns are empty."""
    landscapes = {_run_id(key): Path(path) for key, path in zip(analysed, landscape_paths)}
    attributions = {_run_id(key): Path(path) for key, path in zip(analysed, attribution_paths)}
    rows = []
    for run, path in zip(runs, metrics_paths):
        row = dict(run)
        key = _run_id(row)
        metrics = json.loads(Path(path).read_text())
        row["split_kind"] = split_kind(row["split"])
        _flatten("train", {k: v for k, v in metrics.items() if k not in ("target", "model", "split", "seed")}, row)
        if key in landscapes:
            _flatten("landscape", json.loads(landscapes[key].read_text()), row)
        if key in attributions:
            attribution = json.loads(attributions[key].read_text())
            # lists (the top topology correlations, the omitted elements) are left out by _flatten itself
            _flatten("attribution", {k: v for k, v in attribution.items() if k not in ("split", "target")}, row)
        rows.append(row)
    frame = pd.DataFrame(rows)
    write_parquet(frame, out_parquet)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def headline_table(runs: list[dict], metrics_paths: list, out_csv, out_markdown) -> pd.DataFrame:
    """ID MAE, OOD MAE and their ratio per target x split x model (median, min and max over seeds), from training
    metrics alone, so that a study's headline can be read before its landscape and attribution jobs have run."""
    rows = []
    for run, path in zip(runs, metrics_paths):
        metrics = json.loads(Path(path).read_text())
        id_mae, ood_mae = metrics.get("id_test", {}).get("mae"), metrics.get("ood_test", {}).get("mae")
        rows.append({**run, "id_mae": id_mae, "ood_mae": ood_mae,
                     "ood_over_id": ood_mae / id_mae if id_mae and ood_mae is not None else None,
                     "n_id": metrics.get("id_test", {}).get("n"), "n_ood": metrics.get("ood_test", {}).get("n")})
    per_seed = pd.DataFrame(rows)
    keys = ["dataset", "target", "split", "model"]
    measures = ("id_mae", "ood_mae", "ood_over_id")
    spread = {f"{m}_{stat}": (m, stat) for m in measures for stat in ("min", "max")}
    table = (per_seed.groupby(keys, sort=True)
             .agg(**{m: (m, "median") for m in measures}, seeds=("seed", "count"), n_id=("n_id", "first"), n_ood=("n_ood", "first"),
                  **spread)
             .reset_index())
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    shown = table[keys + ["seeds"]].copy()
    for measure, decimals in (("id_mae", 3), ("ood_mae", 3), ("ood_over_id", 2)):
        shown[measure] = [_median_and_range(row, measure, decimals) for row in table.itertuples(index=False)]
    shown[["n_id", "n_ood"]] = table[["n_id", "n_ood"]]
    with atomic_path(out_markdown) as tmp:
        Path(tmp).write_text(markdown_table(shown, {}))
    return table


def _median_and_range(row, measure: str, decimals: int) -> str:
    """'0.073' for one seed, '0.073 (0.071–0.075)' for several: the median and the range over seeds."""
    median, low, high = getattr(row, measure), getattr(row, f"{measure}_min"), getattr(row, f"{measure}_max")
    if pd.isna(median):
        return "–"
    text = f"{median:.{decimals}f}"
    return text + (f" ({low:.{decimals}f}–{high:.{decimals}f})" if row.seeds > 1 else "")


def worst_predictions(runs: list[dict], prediction_paths: list, materials_path, out_csv, per_set: int = 10) -> pd.DataFrame:
    """The crystals each model gets most wrong, per test set (and train, where a model failed to fit): id, formula,
    sites, target, prediction and error. Data errors and unphysical predictions surface here before they skew a
    mean, e.g. a hypothetical crystal whose predicted formation energy is tens of eV/atom."""
    materials = pd.read_parquet(materials_path, columns=["id", "reduced_formula", "nsites"]).set_index("id")
    frames = []
    for run, path in zip(runs, prediction_paths):
        predictions = pd.read_parquet(path, columns=["id", "set", "y_true", "y_pred"])
        predictions["error"] = predictions["y_pred"] - predictions["y_true"]
        predictions["abs_error"] = predictions["error"].abs()
        worst = (predictions[predictions["set"].isin(["train", "id_test", "ood_test"])]
                 .sort_values("abs_error", ascending=False, kind="stable").groupby("set", sort=False).head(per_set))
        worst = worst.assign(**run, rank=worst.groupby("set").cumcount() + 1)
        frames.append(worst)
    columns = ["dataset", "target", "split", "model", "seed", "set", "rank", "id", "reduced_formula", "nsites", "y_true", "y_pred", "error"]
    table = pd.concat(frames, ignore_index=True).join(materials, on="id")[columns]
    table = table.sort_values(["target", "split", "model", "seed", "set", "rank"], kind="stable")
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def estimate_text(middle: float, low: float, high: float, digits: int = 2, signed: bool = False) -> str:
    """An estimate with its interval for a results table, "1.37 [1.05, 1.76]" ("+0.12 [...]" signed); "–" for none,
    the estimate alone where it has no interval."""
    form = f"{'+' if signed else ''}.{digits}f"
    if not np.isfinite(middle):
        return "–"
    return f"{middle:{form}} [{low:{form}}, {high:{form}}]" if np.isfinite(low) else f"{middle:{form}}"


def markdown_table(frame: pd.DataFrame, decimals: dict[str, int]) -> str:
    def cell(column, value):
        if pd.isna(value):
            return "–"
        # a | inside a cell (|bias|, ||∇f||) would end it
        return (f"{value:.{decimals[column]}f}" if column in decimals else str(value)).replace("|", "\\|")

    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"
