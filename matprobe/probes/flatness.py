"""Flatness metrics read off stored landscape grids, and the merge of grid chunks.

Kept apart from matprobe.probes.landscape, which needs torch and PyTorch Geometric (about 6 s to import): the
merge and metrics jobs, two per model, need only pandas and start in under a second.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe.io import write_json, write_parquet


def merge_chunks(chunk_paths: list, out_path) -> pd.DataFrame:
    frame = pd.concat([pd.read_parquet(p) for p in chunk_paths], ignore_index=True)
    frame = frame.sort_values(["grid", "set", "alpha", "beta"], kind="stable").reset_index(drop=True)
    write_parquet(frame, out_path)
    return frame


def flat_radius(alphas: np.ndarray, losses: np.ndarray, threshold: float) -> tuple[float, bool]:
    """Mean over the two rays (alpha < 0, alpha > 0) of the distance at which the loss first exceeds
    `threshold`, linearly interpolated; a ray that never exceeds it counts its full length (censored=True)."""
    order = np.argsort(alphas)
    alphas, losses = alphas[order], losses[order]
    origin = int(np.argmin(np.abs(alphas)))
    radii, censored = [], False
    for direction in (1, -1):
        index = range(origin, len(alphas)) if direction == 1 else range(origin, -1, -1)
        previous = None
        radius = None
        for k in index:
            if losses[k] > threshold and previous is not None:
                a0, l0 = abs(alphas[previous]), losses[previous]
                a1, l1 = abs(alphas[k]), losses[k]
                radius = a0 + (threshold - l0) / (l1 - l0) * (a1 - a0)
                break
            previous = k
        if radius is None:
            radius = abs(alphas[index[-1]]) if len(index) else 0.0
            censored = True
        radii.append(radius)
    return float(np.mean(radii)), censored


def landscape_metrics(grid: pd.DataFrame, hessian: dict | None, options: dict) -> dict:
    """Flatness metrics per set (definitions in the README) and ID/OOD landscape divergences."""
    epsilon, delta = options["flatness"]["epsilon"], options["flatness"]["delta"]
    metrics: dict = {"epsilon": epsilon, "delta": delta, "sets": {}}
    divergence_radius = options["flatness"]["divergence_radius"]
    basin_log_loss = {}
    for set_name, frame in grid.groupby("set", sort=False):
        plane = frame[frame["grid"] == "2d"]
        line = frame[frame["grid"] == "1d"]
        origin = plane.loc[(plane["alpha"].abs() < 1e-12) & (plane["beta"].abs() < 1e-12), "loss"]
        l0 = float(origin.iloc[0]) if len(origin) else float(line.loc[line["alpha"].abs() < 1e-12, "loss"].iloc[0])
        radius = np.hypot(plane["alpha"], plane["beta"])
        within = plane[radius <= epsilon + 1e-12]
        sharpness = float((within["loss"].max() - l0) / l0) if len(within) else math.nan
        radius_1d, censored_1d = flat_radius(line["alpha"].to_numpy(), line["loss"].to_numpy(), (1 + delta) * l0)
        axis_a = plane[plane["beta"].abs() < 1e-12]
        axis_b = plane[plane["alpha"].abs() < 1e-12]
        ra, ca = flat_radius(axis_a["alpha"].to_numpy(), axis_a["loss"].to_numpy(), (1 + delta) * l0)
        rb, cb = flat_radius(axis_b["beta"].to_numpy(), axis_b["loss"].to_numpy(), (1 + delta) * l0)
        minimum = plane.loc[plane["loss"].idxmin()]
        entry = {
            "loss_at_origin": l0,
            "mae_at_origin": l0 * float(frame["mae"].iloc[0] / frame["loss"].iloc[0]) if frame["loss"].iloc[0] else math.nan,
            "epsilon_sharpness": sharpness,
            "flat_radius_1d": radius_1d,
            "flat_radius_1d_censored": censored_1d,
            "flat_radius_2d": float(np.mean([ra, rb])),
            "flat_radius_2d_censored": bool(ca or cb),
            "grid_minimum_offset": float(np.hypot(minimum["alpha"], minimum["beta"])),
            "grid_minimum_relative_loss": float(minimum["loss"] / l0),
        }
        if hessian and set_name in hessian.get("sets", {}):
            entry["top_eigenvalue"] = hessian["sets"][set_name]["top_eigenvalue_mean"]
            entry["top_eigenvalue_std"] = hessian["sets"][set_name]["top_eigenvalue_std"]
            entry["trace"] = hessian["sets"][set_name]["trace_mean"]
            entry["trace_std"] = hessian["sets"][set_name]["trace_std"]
        metrics["sets"][set_name] = entry
        # the basin only, in log units: far out every set's loss climbs to ~10^4 L0 alike, and on a linear scale
        # those few corners would decide the correlation
        basin = plane[radius <= divergence_radius + 1e-12].sort_values(["alpha", "beta"])
        if len(basin) >= 5 and (basin["loss"] > 0).all():
            basin_log_loss[set_name] = np.log(basin["loss"].to_numpy() / l0)
    metrics["divergence_radius"] = divergence_radius
    for a, b in (("id_test", "ood_test"), ("train", "ood_test"), ("train", "id_test")):
        if a in basin_log_loss and b in basin_log_loss and np.std(basin_log_loss[a]) > 0 and np.std(basin_log_loss[b]) > 0:
            metrics[f"divergence_{a}_{b}"] = float(1.0 - np.corrcoef(basin_log_loss[a], basin_log_loss[b])[0, 1])
    return metrics


def write_landscape_metrics(grid_path, hessian_path, out_path, options: dict) -> dict:
    grid = pd.read_parquet(grid_path)
    hessian = json.loads(Path(hessian_path).read_text()) if hessian_path else None
    metrics = landscape_metrics(grid, hessian, options)
    write_json(metrics, out_path)
    return metrics

