"""One row per trained model with its configuration keys and every scalar metric of the training,
landscape and attribution stages: results/summary/runs.parquet and .csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from matprobe.io import atomic_path, write_parquet


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (int, float, bool, str)) or value is None:
        out[prefix] = value


def summarise_runs(model_dirs: list, landscape_dirs: list, attribution_dirs: list, out_parquet, out_csv) -> pd.DataFrame:
    rows = []
    for model_dir, landscape_dir, attribution_dir in zip(model_dirs, landscape_dirs, attribution_dirs):
        parts = Path(model_dir).parts
        row = {"dataset": parts[-5], "target": parts[-4], "split": parts[-3], "model": parts[-2], "seed": int(parts[-1].removeprefix("seed"))}
        metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
        row["split_kind"] = "control" if row["split"].endswith("-control") else ("random" if row["split"] == "random" else "omission")
        _flatten("train", {k: v for k, v in metrics.items() if k not in ("target", "model", "split", "seed")}, row)
        landscape = json.loads((Path(landscape_dir) / "metrics.json").read_text())
        _flatten("landscape", landscape, row)
        attribution = json.loads((Path(attribution_dir) / "summary.json").read_text())
        _flatten("attribution", {k: v for k, v in attribution.items() if k not in ("split", "target", "topology_top_error_correlations")}, row)
        rows.append(row)
    frame = pd.DataFrame(rows)
    write_parquet(frame, out_parquet)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    return frame
