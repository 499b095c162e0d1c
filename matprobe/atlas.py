"""The periodic table of generalisation: one row per omission (an element, a group or a period held out) of a sweep,
with its errors beside its size-matched control's, and the loss-landscape geometry of its held-out set; and the test
of whether that geometry predicts which omissions fail.

After Li et al. ("Probing out-of-distribution generalization in machine learning for materials", Commun. Mater. 6
(2025)), who map OOD error over hundreds of leave-one-element/group/period-out tasks. Here each omission also has a
control (the same number of training crystals, the element seen), so failure is read as OOD error over the control's
OOD error, not over the model's own ID error; and the landscape quantities of its OOD set are set against that
failure, beside the cheap predictor that needs no landscape (the OOD crystals' distance to the training crystals in
the model's latent space) and the plain count of OOD materials."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe.io import write_parquet
from matprobe.layout import RUN_KEYS
from matprobe.splits import CONTROL_SUFFIX, split_base, split_kind

# what may predict failure, and what each is
PREDICTORS = {
    "basin_divergence": "landscape", "ood_grid_minimum_offset": "landscape", "top_eigenvalue_ratio": "landscape",
    "flat_radius_ratio": "landscape", "latent_knn_distance": "cheap", "n_ood": "count",
}
CHEAP = next(p for p, kind in PREDICTORS.items() if kind == "cheap")  # what a landscape quantity must beat to be worth its cost
MEASURES = ["n_ood", "id_mae", "ood_mae", "ood_over_id", "ood_over_control", "ood_r2", "ood_bias", "latent_knn_distance",
            "basin_divergence", "ood_grid_minimum_offset", "top_eigenvalue_ratio", "flat_radius_ratio"]


def held_out(split: str) -> str:
    """What an omission holds out, as the atlas names it: Fe for omit-Fe, group16, period4, Fe-O."""
    return split_base(split)[0].removeprefix("omit-")


def per_seed(runs: list[dict], metrics_paths: list, analysed: list[dict], landscape_paths: list) -> pd.DataFrame:
    """One row per omission run (a seed), with its control's OOD error and its landscape quantities where analysed."""
    metrics = {tuple(run[k] for k in RUN_KEYS): json.loads(Path(path).read_text()) for run, path in zip(runs, metrics_paths)}
    landscapes = {tuple(run[k] for k in RUN_KEYS): json.loads(Path(path).read_text()) for run, path in zip(analysed, landscape_paths)}
    rows = []
    for key, metric in metrics.items():
        run = dict(zip(RUN_KEYS, key))
        if split_kind(run["split"]) != "omission":
            continue
        control = metrics.get(tuple({**run, "split": run["split"] + CONTROL_SUFFIX}[k] for k in RUN_KEYS), {})
        ood, ident = metric.get("ood_test", {}), metric.get("id_test", {})
        row = {**run, "held_out": held_out(run["split"]), "n_ood": ood.get("n"), "id_mae": ident.get("mae"), "ood_mae": ood.get("mae"),
               "ood_r2": ood.get("r2"), "ood_bias": ood.get("bias"), "ood_over_id": metric.get("ood_id_mae_ratio"),
               "control_ood_mae": control.get("ood_test", {}).get("mae"),
               "latent_knn_distance": metric.get("latent_knn_distance", {}).get("ood_test")}
        row["ood_over_control"] = row["ood_mae"] / row["control_ood_mae"] if row["ood_mae"] is not None and row["control_ood_mae"] else None
        landscape = landscapes.get(key)
        if landscape:
            sets = landscape["sets"]
            ood_set, id_set = sets.get("ood_test", {}), sets.get("id_test", {})
            row["basin_divergence"] = landscape.get("divergence_id_test_ood_test")
            row["ood_grid_minimum_offset"] = ood_set.get("grid_minimum_offset")
            row["top_eigenvalue_ratio"] = _ratio(ood_set.get("top_eigenvalue"), id_set.get("top_eigenvalue"))
            row["flat_radius_ratio"] = _ratio(ood_set.get("flat_radius_1d"), id_set.get("flat_radius_1d"))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=[*RUN_KEYS, "held_out", *MEASURES, "control_ood_mae"])


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def atlas_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, target, model and omission: the median of every measure over seeds, its range, and the seeds."""
    keys = ["dataset", "target", "model", "split", "held_out"]
    numeric = seeds[MEASURES + ["control_ood_mae"]].apply(pd.to_numeric, errors="coerce")
    frame = pd.concat([seeds[keys + ["seed"]], numeric], axis=1)
    grouped = frame.groupby(keys, sort=True)
    table = grouped[MEASURES + ["control_ood_mae"]].median()
    for measure in ("ood_mae", "ood_over_control", "basin_divergence"):
        table[f"{measure}_min"], table[f"{measure}_max"] = grouped[measure].min(), grouped[measure].max()
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index()


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pd.Series(x).corr(pd.Series(y), method="spearman")


def _interval(boot: list[float]) -> tuple[float, float]:
    """The percentile 95 % interval of bootstrap draws; a draw of tied values has no rank correlation (NaN) and is
    left out."""
    boot = np.asarray(boot, dtype=float)
    return tuple(np.percentile(boot[np.isfinite(boot)], [2.5, 97.5])) if np.isfinite(boot).any() else (np.nan, np.nan)


def rank_correlation(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float, float, int]:
    """Spearman ρ of x and y over the omissions where both are known, and a bootstrap 95 % interval (resampling
    omissions with replacement)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return float("nan"), float("nan"), float("nan"), int(len(x))
    draws = rng.integers(0, len(x), size=(resamples, len(x)))
    with warnings.catch_warnings():  # a resample of equal values has no rank correlation
        warnings.simplefilter("ignore")
        low, high = _interval([_spearman(x[d], y[d]) for d in draws])
    return float(_spearman(x, y)), float(low), float(high), int(len(x))


def rank_correlation_gain(x: np.ndarray, z: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                          resamples: int = 2000) -> tuple[float, float, float, int]:
    """|ρ(x, y)| − |ρ(z, y)| over the omissions where x, z and y are all known (how much better x ranks y than z does,
    in whichever direction each ranks it), with a paired bootstrap 95 % interval: each resample of omissions serves
    both correlations, so the interval is that of the difference, which two overlapping intervals of the correlations
    alone cannot tell. Also the number of omissions it used."""
    ok = np.isfinite(x) & np.isfinite(z) & np.isfinite(y)
    x, z, y = x[ok], z[ok], y[ok]
    if len(x) < 4:
        return float("nan"), float("nan"), float("nan"), int(len(x))

    def gain(rows):
        return abs(_spearman(x[rows], y[rows])) - abs(_spearman(z[rows], y[rows]))

    draws = rng.integers(0, len(x), size=(resamples, len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = _interval([gain(d) for d in draws])
    return float(gain(slice(None))), float(low), float(high), int(len(x))


def hypothesis_table(atlas: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per dataset, target and model: the rank correlation of each predictor with the OOD/control error ratio across
    omissions, with its bootstrap 95 % interval and whether that interval excludes zero; and, for every predictor but
    the cheap one, its gain in |ρ| over the cheap one with a paired bootstrap interval, the omissions that gain was
    computed on, and whether it is sure (`beats_cheap`: the interval lies above zero)."""
    rows = []
    for (dataset, target, model), frame in atlas.groupby(["dataset", "target", "model"], sort=True):
        rng = np.random.default_rng(seed)
        gain_rng = np.random.default_rng([seed, 1])  # apart, so that the correlations' intervals do not depend on it
        failure = frame["ood_over_control"].to_numpy(dtype=float)
        cheap = frame[CHEAP].to_numpy(dtype=float)
        for predictor, kind in PREDICTORS.items():
            values = frame[predictor].to_numpy(dtype=float)
            rho, low, high, n = rank_correlation(values, failure, rng)
            gain, gain_low, gain_high, gain_n = ((np.nan, np.nan, np.nan, 0) if predictor == CHEAP
                                                 else rank_correlation_gain(values, cheap, failure, gain_rng))
            rows.append({"dataset": dataset, "target": target, "model": model, "predictor": predictor, "kind": kind,
                         "spearman": rho, "ci_low": low, "ci_high": high, "omissions": n,
                         "interval_excludes_zero": bool(np.isfinite(low) and (low > 0 or high < 0)),
                         "gain_over_cheap": gain, "gain_ci_low": gain_low, "gain_ci_high": gain_high,
                         "gain_omissions": gain_n, "beats_cheap": bool(np.isfinite(gain_low) and gain_low > 0)})
    return pd.DataFrame(rows)


def write_atlas(runs: list[dict], metrics_paths: list, analysed: list[dict], landscape_paths: list, out_atlas, out_seeds,
                out_hypothesis) -> pd.DataFrame:
    seeds = per_seed(runs, metrics_paths, analysed, landscape_paths)
    atlas = atlas_table(seeds)
    write_parquet(seeds, out_seeds)
    write_parquet(atlas, out_atlas)
    write_parquet(hypothesis_table(atlas), out_hypothesis)
    return atlas
