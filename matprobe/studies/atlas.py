"""The periodic table of generalisation: one row per omission (an element, a group or a period held out) of a sweep,
with its errors beside its size-matched control's, and the loss-landscape geometry of its held-out set; and the test
of whether that geometry predicts which omissions fail.

After Li et al. ("Probing out-of-distribution generalization in machine learning for materials", Commun. Mater. 6
(2025)), who map OOD error over hundreds of leave-one-element/group/period-out tasks. Here each omission also has a
control (the same number of training crystals, the element seen), so failure is read as OOD error over the control's
OOD error, not over the model's own ID error; and the landscape quantities of its OOD set are set against that
failure, beside the cheap predictor that needs no landscape (the OOD crystals' distance to the training crystals in
the model's latent space) and the plain count of OOD materials.

Paired scoring: an omission and its control are scored on the same crystals, the control's OOD set (the held-out
element's crystals that the control drew into neither its training nor its validation set; the omission trained on
no crystal with the element, so neither model saw them). The ratio of the two MAEs has a bootstrap interval that
resamples composition families (config `atlas.family`), so that near-duplicates (polymorphs of one compound, one
chemical system at several stoichiometries) count once; the call against the declared `atlas.failure_threshold`
reads that interval. The offset question: how much of an omission's error is one energy per held-out atom (the
residuals regressed on the held-out element's atomic fraction; few-shot recalibration from k labelled crystals)."""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.io import write_parquet
from matprobe.layout import RUN_KEYS
from matprobe.prepare.splits import CONTROL_SUFFIX, load_split, split_base, split_kind

# what may predict failure, and what each is
PREDICTORS = {
    "basin_divergence": "landscape", "ood_grid_minimum_offset": "landscape", "top_eigenvalue_ratio": "landscape",
    "flat_radius_ratio": "landscape", "latent_knn_distance": "cheap", "n_ood": "count",
    "latent_distance_ratio": "baseline", "ood_over_id": "baseline", "bias_over_mae": "baseline", "same_sign_share": "baseline",
    "output_sensitivity_ratio": "sensitivity", "gauss_newton_top_ratio": "sensitivity", "direction_spread_ratio": "sensitivity",
}
CHEAP = next(p for p, kind in PREDICTORS.items() if kind == "cheap")  # what a landscape quantity must beat to be worth its cost
# Whether a predictor reads the held-out labels. Every landscape quantity here is a loss of the OOD set, so it does:
# a Hessian of an MAE weighs curvature by the residuals' signs, which a uniform bias aligns, and part of such a
# "prediction" may restate the failure. It is judged against the baselines that read the labels too.
LABELS = {"basin_divergence": "label-aware", "ood_grid_minimum_offset": "label-aware", "top_eigenvalue_ratio": "label-aware",
          "flat_radius_ratio": "label-aware", "latent_knn_distance": "label-free", "n_ood": "label-free",
          "latent_distance_ratio": "label-free", "ood_over_id": "label-aware", "bias_over_mae": "label-aware",
          "same_sign_share": "label-aware", "output_sensitivity_ratio": "label-free", "gauss_newton_top_ratio": "label-free",
          "direction_spread_ratio": "label-free"}
# Each predictor's name in a figure or a results table.
PREDICTOR_NAMES = {"basin_divergence": "ID/OOD basin divergence", "ood_grid_minimum_offset": "OOD grid-minimum offset (direction units)",
                   "top_eigenvalue_ratio": "top Hessian eigenvalue, OOD / ID", "flat_radius_ratio": "flat radius, OOD / ID",
                   "latent_knn_distance": "latent kNN distance of OOD crystals", "n_ood": "OOD materials",
                   "latent_distance_ratio": "latent kNN distance, OOD / ID", "ood_over_id": "OOD MAE / ID MAE (trained weights)",
                   "bias_over_mae": "|OOD bias| / OOD MAE", "same_sign_share": "share of same-signed OOD residuals",
                   "output_sensitivity_ratio": "mean ||∇θ f||², OOD / ID", "gauss_newton_top_ratio": "top Gauss–Newton eigenvalue, OOD / ID",
                   "direction_spread_ratio": "output change along the directions, OOD / ID"}
# The geometry whose worth the hypothesis test asks about, each against the best baseline of its own label use: the
# landscape quantities (losses of the OOD set: label-aware) and the output sensitivities (matprobe.probes.sensitivity:
# how far the OOD outputs move with the weights, from the inputs alone: label-free), each an OOD value over the
# model's own ID value. Where each sensitivity ratio comes from in sensitivity.json: (quantity per set).
GEOMETRY = ("landscape", "sensitivity")
SENSITIVITY = {"output_sensitivity_ratio": "gradient_norm_sq_mean", "gauss_newton_top_ratio": "gauss_newton_top_eigenvalue",
               "direction_spread_ratio": "direction_spread_mean"}
# the baselines of each kind: label-free (latent distance, raw and over the model's own ID distance; the element's
# frequency, n_ood) and label-aware (OOD over ID error at the trained weights, |bias| / MAE, the share of same-signed
# OOD residuals)
BASELINES = {labels: [p for p, kind in PREDICTORS.items() if kind in ("cheap", "count", "baseline") and LABELS[p] == labels]
             for labels in ("label-free", "label-aware")}
MEASURES = ["n_ood", "id_mae", "ood_mae", "ood_over_id", "ood_over_control", "ood_r2", "ood_bias", "latent_knn_distance",
            "basin_divergence", "ood_grid_minimum_offset", "top_eigenvalue_ratio", "flat_radius_ratio", "latent_distance_ratio",
            "bias_over_mae", *SENSITIVITY]


def held_out(split: str) -> str:
    """What an omission holds out, as the atlas names it: Fe for omit-Fe, group16, period4, Fe-O."""
    return split_base(split)[0].removeprefix("omit-")


def _run_rng(seed: int, run: dict) -> np.random.Generator:
    """A stream per run that depends on the run's keys, not on the order runs are listed in."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(str(run[k]) for k in RUN_KEYS).encode())])


def paired_runs(runs: list[dict], prediction_paths: list, materials_path, options: dict,
                omitted: Mapping[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per omission run (a seed): the paired ratio with its family-bootstrap interval and sizes, the offset fit (a) on
    its whole OOD set, and the few-shot recalibration (b) on the paired crystals; and the paired crystals themselves
    (the run's keys, id, family, fraction, y_true and both predictions). An omission without its control's
    predictions has n_paired 0 and no call, never a crash."""
    materials = pd.read_parquet(materials_path, columns=["id", "elements", "reduced_formula", "numbers"])
    families = crystal_families(materials, options["family"])
    offset = options["offset"]
    predictions = {tuple(run[k] for k in RUN_KEYS): path for run, path in zip(runs, prediction_paths)}
    rows, frames, fractions = [], [], {}
    for key, path in predictions.items():
        run = dict(zip(RUN_KEYS, key))
        if split_kind(run["split"]) != "omission":
            continue
        symbols = tuple(omitted[run["split"]])
        if symbols not in fractions:
            fractions[symbols] = atomic_fraction(materials, list(symbols))
        fraction = fractions[symbols]
        omission = pd.read_parquet(path)
        omission["id"] = omission["id"].astype(str)
        control_path = predictions.get(tuple({**run, "split": run["split"] + CONTROL_SUFFIX}[k] for k in RUN_KEYS))
        control = pd.read_parquet(control_path) if control_path else omission.iloc[:0]
        control["id"] = control["id"].astype(str)
        paired = paired_frame(omission, control, families, fraction)
        rng = _run_rng(options["seed"], run)
        row = {**run, **paired_ratio(paired, rng, options["bootstrap_resamples"])}
        ood = omission[omission["set"] == "ood_test"]
        residual = (ood["y_pred"] - ood["y_true"]).to_numpy(float)
        # a label-aware baseline: how one-sided the OOD residuals are (1: all of one sign, 0.5: balanced)
        row["same_sign_share"] = float(max((residual > 0).mean(), (residual < 0).mean())) if len(residual) else np.nan
        row.update(offset_fit(residual, fraction.reindex(ood["id"]).to_numpy(float)))
        row.update(recalibration(paired, offset["k"], offset["draws"], options["min_paired"], rng))
        rows.append(row)
        frames.append(paired.assign(**run))
    columns = [*RUN_KEYS, "id", "family", "fraction", "y_true", "omission_pred", "control_pred"]
    paired_all = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return pd.DataFrame(rows), paired_all


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
        row["latent_distance_ratio"] = _ratio(row["latent_knn_distance"], metric.get("latent_knn_distance", {}).get("id_test"))
        row["bias_over_mae"] = _ratio(abs(row["ood_bias"]) if row["ood_bias"] is not None else None, row["ood_mae"])
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


def add_sensitivity(seeds: pd.DataFrame, analysed: list[dict], sensitivity_paths: list) -> pd.DataFrame:
    """The per-seed table with each analysed omission run's label-free geometry (sensitivity.json of its landscape:
    `SENSITIVITY`), as the OOD set's value over the ID test set's of the same model; runs without one keep NaN."""
    seeds = seeds.copy()
    for column in SENSITIVITY:
        if column not in seeds:
            seeds[column] = np.nan
    if seeds.empty:
        return seeds
    index = {tuple(row): k for k, row in zip(seeds.index, seeds[list(RUN_KEYS)].astype(str).itertuples(index=False))}
    for run, path in zip(analysed, sensitivity_paths):
        row = index.get(tuple(str(run[k]) for k in RUN_KEYS))
        if row is None:
            continue
        sets = json.loads(Path(path).read_text())["sets"]
        ood, ident = sets.get("ood_test", {}), sets.get("id_test", {})
        for column, quantity in SENSITIVITY.items():
            value = _ratio(ood.get(quantity), ident.get(quantity))
            seeds.loc[row, column] = np.nan if value is None else value
    return seeds


# ---- paired scoring, the failure rule and the offset question ------------------------------------------------------

def check_options(options: dict) -> None:
    """Planning-time checks of config `atlas` that the schema cannot state: one line naming the key and the numbers."""
    offset = options["offset"]
    if offset["small_k"] not in offset["k"]:
        raise MatprobeError(f"config: atlas.offset.small_k is {offset['small_k']}, not one of atlas.offset.k {offset['k']}")


def omitted_by_split(split_paths) -> dict[str, list[str]]:
    """Each split's held-out elements as its split file records them (never parsed back from its name)."""
    return {split.name: split.omitted_elements for split in map(load_split, dict.fromkeys(map(str, split_paths)))}


def crystal_families(materials: pd.DataFrame, family: str) -> pd.Series:
    """Each crystal's composition family, indexed by id: its chemical system (sorted elements, "Fe-O"), its reduced
    formula, or the crystal itself."""
    if family == "chemical_system":
        values = ["-".join(sorted(map(str, e))) for e in materials["elements"]]
    elif family == "reduced_formula":
        values = materials["reduced_formula"].astype(str).tolist()
    elif family == "crystal":
        values = materials["id"].astype(str).tolist()
    else:
        raise MatprobeError(f"config: atlas.family: unknown family {family!r}")
    return pd.Series(values, index=materials["id"].astype(str), name="family")


def atomic_fraction(materials: pd.DataFrame, symbols: list[str]) -> pd.Series:
    """The fraction of each crystal's sites that hold one of `symbols`, indexed by id."""
    from pymatgen.core.periodic_table import Element

    numbers = {Element(s).Z for s in symbols}
    values = [float(np.isin(np.asarray(n), list(numbers)).mean()) if len(n) else 0.0 for n in materials["numbers"]]
    return pd.Series(values, index=materials["id"].astype(str), name="fraction")


def paired_frame(omission: pd.DataFrame, control: pd.DataFrame, families: pd.Series, fraction: pd.Series) -> pd.DataFrame:
    """The crystals both models are scored on: the control's OOD set, every one of which the omission also predicted
    (its OOD set is every crystal with the element). Columns id, family, fraction, y_true, omission_pred, control_pred."""
    om = omission[omission["set"] == "ood_test"].set_index("id")
    ct = control[control["set"] == "ood_test"].set_index("id")
    ids = ct.index[ct.index.isin(om.index)]
    frame = pd.DataFrame({"id": ids.astype(str), "y_true": ct.loc[ids, "y_true"].to_numpy(float),
                          "omission_pred": om.loc[ids, "y_pred"].to_numpy(float), "control_pred": ct.loc[ids, "y_pred"].to_numpy(float)})
    frame["family"] = families.reindex(frame["id"]).to_numpy()
    frame["fraction"] = fraction.reindex(frame["id"]).to_numpy(float)
    return frame


def family_weights(n_families: int, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """(resamples × n_families) counts of how often each family is drawn when families are resampled with replacement."""
    draws = rng.integers(0, n_families, size=(resamples, n_families))
    weights = np.zeros((resamples, n_families))
    np.add.at(weights, (np.repeat(np.arange(resamples), n_families), draws.ravel()), 1.0)
    return weights


def _family_sums(codes: np.ndarray, n_families: int, *columns: np.ndarray) -> list[np.ndarray]:
    return [np.bincount(codes, weights=column, minlength=n_families) for column in columns]


def paired_ratio(paired: pd.DataFrame, rng: np.random.Generator, resamples: int) -> dict:
    """The omission's MAE over the control's on the same crystals, with the percentile 95 % interval of a bootstrap
    that resamples families (every crystal of a drawn family comes along), the control's MAE with its interval, and
    the numbers of crystals and families."""
    om = np.abs(paired["omission_pred"] - paired["y_true"]).to_numpy(float)
    ct = np.abs(paired["control_pred"] - paired["y_true"]).to_numpy(float)
    return ratio_stats(om, ct, paired["family"].to_numpy(), rng, resamples)


def _draw_sums(codes: np.ndarray, seeds: np.ndarray, weights: np.ndarray, rng: np.random.Generator, *columns: np.ndarray) -> list[np.ndarray]:
    """Each column's total in every bootstrap draw: the families weighted by `weights` (draws × families), and, where
    there are several seeds, each seed by a resample of the seeds drawn from `rng` (a draw's sum over pair (s, f) is
    weighed by how often seed s and family f were drawn)."""
    own = np.unique(seeds)
    seed_weights = family_weights(len(own), rng, weights.shape[0]) if len(own) > 1 else np.ones((weights.shape[0], 1))
    totals = [np.zeros(weights.shape[0]) for _ in columns]
    for k, value in enumerate(own):
        part = seeds == value
        for total, sums in zip(totals, _family_sums(codes[part], weights.shape[1], *(column[part] for column in columns))):
            total += seed_weights[:, k] * (weights @ sums)
    return totals


def ratio_stats(om: np.ndarray, ct: np.ndarray, family: np.ndarray, rng: np.random.Generator, resamples: int,
                seed: np.ndarray | None = None) -> dict:
    """`paired_ratio` from the two models' absolute errors on the same crystals and the crystals' families. With
    `seed` (each pair's training seed, errors of several seeds pooled), each draw resamples the seeds as well as the
    families, so that the interval holds the spread between trained models and control draws, not only between
    crystals: a draw weighs pair (s, f) by how often seed s and family f were drawn."""
    n, codes = len(om), pd.factorize(pd.Series(family, dtype=object))[0]
    n_families = int(codes.max() + 1) if n else 0
    out = {"n_paired": n, "n_families": n_families}
    if n == 0:
        return {**out, **dict.fromkeys(["paired_ood_mae", "paired_control_mae", "ood_over_control", "ood_over_control_low",
                                        "ood_over_control_high", "control_mae_low", "control_mae_high"], np.nan)}
    weights = family_weights(n_families, rng, resamples)
    totals = _draw_sums(codes, np.zeros(n, dtype=int) if seed is None else np.asarray(seed), weights, rng, om, ct, np.ones(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = totals[0] / totals[1]
        control = totals[1] / totals[2]
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    control_low, control_high = np.nanpercentile(control, [2.5, 97.5])
    return {**out, "paired_ood_mae": float(om.mean()), "paired_control_mae": float(ct.mean()),
            "ood_over_control": float(om.sum() / ct.sum()) if ct.sum() > 0 else np.nan,
            "ood_over_control_low": float(low), "ood_over_control_high": float(high),
            "control_mae_low": float(control_low), "control_mae_high": float(control_high)}


def failure_call(n_paired: int, n_families: int, low: float, high: float, threshold: float, min_paired: int,
                 min_families: int) -> str:
    """The declared rule: fails when the paired interval lies above the threshold, passes when it lies below it,
    undecided when it straddles it; no call on fewer than min_paired paired crystals or min_families families (the
    bootstrap resamples families: a handful of them gives an interval that looks sure and is not)."""
    if n_paired < min_paired or n_families < min_families or not (np.isfinite(low) and np.isfinite(high)):
        return "too few paired"
    return "fails" if low > threshold else "passes" if high < threshold else "undecided"


def offset_fit(residual: np.ndarray, fraction: np.ndarray) -> dict:
    """(a) The OOD residuals (prediction − DFT, eV/atom) regressed on the held-out element's atomic fraction:
    residual ≈ intercept + slope × fraction, so the slope is eV per held-out atom, and R² says how much of the
    residuals' variance one energy per held-out atom explains."""
    ok = np.isfinite(residual) & np.isfinite(fraction)
    residual, fraction = residual[ok], fraction[ok]
    if len(residual) < 3 or np.ptp(fraction) == 0:
        return {"offset_slope": np.nan, "offset_intercept": np.nan, "offset_r2": np.nan, "offset_n": int(len(residual))}
    slope, intercept = np.polyfit(fraction, residual, 1)
    spread = ((residual - residual.mean()) ** 2).sum()
    r2 = 1 - ((residual - intercept - slope * fraction) ** 2).sum() / spread if spread > 0 else np.nan
    return {"offset_slope": float(slope), "offset_intercept": float(intercept), "offset_r2": float(r2), "offset_n": int(len(residual))}


def recalibration(paired: pd.DataFrame, ks: list[int], draws: int, min_paired: int, rng: np.random.Generator) -> dict:
    """(b) Few-shot recalibration: for each k, `draws` random draws of k labelled paired crystals fit one energy per
    held-out atom, c = argmin Σ (prediction + c·fraction − DFT)² over them; the omission's MAE on the rest, so
    corrected, over the control's MAE on the same rest. The median ratio over draws and its 2.5–97.5 % range; a k
    that would leave fewer than min_paired crystals to score is skipped and named."""
    residual = (paired["omission_pred"] - paired["y_true"]).to_numpy(float)
    control = np.abs(paired["control_pred"] - paired["y_true"]).to_numpy(float)
    fraction = paired["fraction"].to_numpy(float)
    n, out, skipped = len(paired), {}, []
    for k in ks:
        if n - k < min_paired:
            skipped.append(f"k={k} (n={n})")
            out[f"recal_k{k}"] = out[f"recal_k{k}_low"] = out[f"recal_k{k}_high"] = out[f"offset_k{k}"] = np.nan
            continue
        ratios, shifts = [], []
        for _ in range(draws):
            chosen = np.zeros(n, dtype=bool)
            chosen[rng.choice(n, size=k, replace=False)] = True
            f = fraction[chosen]
            c = -float((residual[chosen] * f).sum() / (f * f).sum()) if (f * f).sum() > 0 else 0.0
            rest = ~chosen
            denominator = control[rest].sum()
            ratios.append(np.abs(residual[rest] + c * fraction[rest]).sum() / denominator if denominator > 0 else np.nan)
            shifts.append(c)
        out[f"recal_k{k}"] = float(np.nanmedian(ratios))
        out[f"recal_k{k}_low"], out[f"recal_k{k}_high"] = (float(v) for v in np.nanpercentile(ratios, [2.5, 97.5]))
        out[f"offset_k{k}"] = float(np.median(shifts))  # the fitted eV per held-out atom (added to the prediction)
    out["offset_k_skipped"] = ", ".join(skipped)
    return out


def offset_call(row: dict, small_k: int, partial: float) -> str:
    """Only an offset: the recalibrated error at k = small_k is within the control's interval on the same crystals
    (its ratio to the control at most the control's upper bootstrap end over its MAE); partly: it is not, but the
    recalibration removes at least `partial` of the excess ratio; not an offset: it removes less. No gap: the
    uncorrected paired ratio is already within the control's interval. Every quantity is a seed's own, on that seed's
    paired crystals (the recalibration is fitted per seed): in the atlas table the medians over seeds
    (`offset_raw_ratio`, `recal_k{k}`, `control_upper_ratio`), so that a pooled, narrower interval over several
    control draws does not make the call stricter."""
    raw = row.get("offset_raw_ratio", row.get("ood_over_control", np.nan))
    recal = row.get(f"recal_k{small_k}", np.nan)
    upper = row.get("control_upper_ratio", np.nan)
    if not np.isfinite(upper):
        control, control_high = row.get("paired_control_mae", np.nan), row.get("control_mae_high", np.nan)
        upper = control_high / control if np.isfinite(control) and np.isfinite(control_high) and control > 0 else np.nan
    if not (np.isfinite(raw) and np.isfinite(upper)):
        return "too few crystals"
    if raw <= upper:
        return "no gap"
    if not np.isfinite(recal):
        return "too few crystals"
    if recal <= upper:
        return "only an offset"
    return "partly" if raw - recal >= partial * (raw - 1.0) else "not an offset"


def atlas_table(seeds: pd.DataFrame, paired: pd.DataFrame | None = None, options: dict | None = None) -> pd.DataFrame:
    """Per dataset, target, model and omission: the median of every measure over seeds, its range, and the seeds.
    Given the paired crystals (`paired_runs`) and config `atlas`: the paired ratio over every seed's paired crystals
    (`pooled_errors`) with its family-bootstrap interval, n_paired (distinct crystals), n_scored (seed-crystal pairs)
    and n_families, the failure call against the declared threshold, the offset measures' medians over seeds and the
    offset call."""
    keys = ["dataset", "target", "model", "split", "held_out"]
    measures = MEASURES + ["control_ood_mae"] + [c for c in ("ood_over_control_unpaired", "same_sign_share") if c in seeds]
    numeric = seeds.reindex(columns=measures).apply(pd.to_numeric, errors="coerce")  # a measure no run has: NaN
    frame = pd.concat([seeds[keys + ["seed"]], numeric], axis=1)
    grouped = frame.groupby(keys, sort=True)
    table = grouped[measures].median()
    for measure in ("ood_mae", "ood_over_control", "basin_divergence"):
        table[f"{measure}_min"], table[f"{measure}_max"] = grouped[measure].min(), grouped[measure].max()
    table["seeds"] = grouped["seed"].nunique()
    table = table.reset_index()
    if paired is None or options is None:
        return table
    if {"ood_over_control", "paired_control_mae", "control_mae_high"} <= set(seeds.columns):
        # the offset call's per-seed quantities (offset_call): each seed's paired ratio and its control's upper end
        with np.errstate(divide="ignore", invalid="ignore"):
            seeds = seeds.assign(offset_raw_ratio=pd.to_numeric(seeds["ood_over_control"], errors="coerce"),
                                 control_upper_ratio=pd.to_numeric(seeds["control_mae_high"], errors="coerce")
                                 / pd.to_numeric(seeds["paired_control_mae"], errors="coerce").where(lambda v: v > 0))
    extra = [c for c in seeds.columns if c.startswith(("recal_k", "offset_", "control_upper_ratio")) and c != "offset_k_skipped"]
    if extra:
        table = table.drop(columns=[c for c in extra if c in table]).merge(
            frame[keys].join(seeds[extra].apply(pd.to_numeric, errors="coerce")).groupby(keys, sort=True).median().reset_index(),
            on=keys, how="left")
    if "offset_k_skipped" in seeds:
        skipped = seeds.groupby(keys, sort=True)["offset_k_skipped"].agg(lambda v: "; ".join(sorted({x for x in v if isinstance(x, str) and x})))
        table = table.merge(skipped.reset_index(), on=keys, how="left")
    pooled_rows = []
    for _, crystals in pooled_errors(paired).groupby(["dataset", "target", "model", "split"], sort=True):
        first = crystals.iloc[0]
        run = {"dataset": first["dataset"], "target": first["target"], "model": first["model"], "split": first["split"], "seed": 0}
        pooled_rows.append({k: first[k] for k in ("dataset", "target", "model", "split")} | ratio_stats(
            crystals["omission_error"].to_numpy(float), crystals["control_error"].to_numpy(float), crystals["family"].to_numpy(),
            _run_rng(options["seed"], run), options["bootstrap_resamples"], crystals["seed"].to_numpy())
            # the rule's count is of distinct crystals; n_scored counts each seed's pairs
            | {"n_paired": int(crystals["id"].nunique()), "n_scored": len(crystals)})
    stats = pd.DataFrame(pooled_rows)
    table = table.drop(columns=[c for c in stats.columns if c in table and c not in ("dataset", "target", "model", "split")])
    table = table.merge(stats, on=["dataset", "target", "model", "split"], how="left") if len(stats) else table
    for column in ("n_paired", "n_scored", "n_families"):
        table[column] = table[column].fillna(0).astype(int) if column in table else 0
    records = table.to_dict("records")
    table["call"] = [failure_call(r["n_paired"], r["n_families"], r.get("ood_over_control_low", np.nan),
                                  r.get("ood_over_control_high", np.nan), options["failure_threshold"], options["min_paired"],
                                  options["min_families"]) for r in records]
    # the offset call reads the same family bootstrap's control interval: on too few crystals or families, none either
    table["offset_call"] = ["too few crystals" if call == "too few paired" else offset_call(r, options["offset"]["small_k"], options["offset"]["partial"])
                            for r, call in zip(records, table["call"])]
    table["failure_threshold"] = float(options["failure_threshold"])
    table["min_paired"], table["min_families"] = int(options["min_paired"]), int(options["min_families"])  # the call's minimums
    table["offset_small_k"] = int(options["offset"]["small_k"])  # the k whose recal_k{k} the offset call read
    return table


def pooled_errors(paired: pd.DataFrame) -> pd.DataFrame:
    """Per omission: every paired (seed, crystal) with both models' absolute errors. With one control draw every seed
    pairs the same crystals, and the ratio of the sums is that of the errors averaged over seeds; with the controls
    redrawn per seed (split_options.redraw_controls) each seed pairs the crystals its own control left out, and each
    pair counts once. The bootstrap resamples families, so a crystal's seeds and a family's crystals move together."""
    columns = ["dataset", "target", "model", "split", "seed", "id", "family", "fraction", "omission_error", "control_error"]
    if paired.empty:
        return pd.DataFrame(columns=columns)
    frame = paired.assign(omission_error=(paired["omission_pred"] - paired["y_true"]).abs(),
                          control_error=(paired["control_pred"] - paired["y_true"]).abs())
    return frame[columns].sort_values(["dataset", "target", "model", "split", "seed", "id"]).reset_index(drop=True)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pd.Series(x).corr(pd.Series(y), method="spearman")


def _interval(boot: list[float]) -> tuple[float, float]:
    """The percentile 95 % interval of bootstrap draws; a draw of tied values has no rank correlation (NaN) and is
    left out."""
    boot = np.asarray(boot, dtype=float)
    return tuple(np.percentile(boot[np.isfinite(boot)], [2.5, 97.5])) if np.isfinite(boot).any() else (np.nan, np.nan)


def rank_correlation(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, resamples: int = 2000,
                     y_draws: np.ndarray | None = None) -> tuple[float, float, float, int]:
    """Spearman ρ of x and y over the omissions where both are known, and a bootstrap 95 % interval (resampling
    omissions with replacement). With `y_draws` (resamples × omissions: y redrawn from crystals resampled jointly
    across omissions, `joint_failure_draws`), draw b takes its y from row b, so that omissions that share crystals
    move together instead of counting as independent."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return float("nan"), float("nan"), float("nan"), int(len(x))
    ys = y_draws[:resamples, ok] if y_draws is not None else None
    draws = rng.integers(0, len(x), size=(resamples, len(x)))
    with warnings.catch_warnings():  # a resample of equal values has no rank correlation
        warnings.simplefilter("ignore")
        low, high = _interval([_spearman(x[d], (y if ys is None else ys[b])[d]) for b, d in enumerate(draws)])
    return float(_spearman(x, y)), float(low), float(high), int(len(x))


def rank_correlation_gain(x: np.ndarray, z: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                          resamples: int = 2000, y_draws: np.ndarray | None = None) -> tuple[float, float, float, int]:
    """|ρ(x, y)| − |ρ(z, y)| over the omissions where x, z and y are all known (how much better x ranks y than z does,
    in whichever direction each ranks it), with a paired bootstrap 95 % interval: each resample of omissions serves
    both correlations, so the interval is that of the difference, which two overlapping intervals of the correlations
    alone cannot tell. Also the number of omissions it used."""
    ok = np.isfinite(x) & np.isfinite(z) & np.isfinite(y)
    x, z, y = x[ok], z[ok], y[ok]
    if len(x) < 4:
        return float("nan"), float("nan"), float("nan"), int(len(x))
    ys = y_draws[:resamples, ok] if y_draws is not None else None

    def gain(rows, target=y):
        return abs(_spearman(x[rows], target[rows])) - abs(_spearman(z[rows], target[rows]))

    draws = rng.integers(0, len(x), size=(resamples, len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = _interval([gain(d, y if ys is None else ys[b]) for b, d in enumerate(draws)])
    return float(gain(slice(None))), float(low), float(high), int(len(x))


def best_baseline_gain(x: np.ndarray, baselines: dict[str, np.ndarray], y: np.ndarray, rng: np.random.Generator,
                       resamples: int = 2000, y_draws: np.ndarray | None = None) -> tuple[float, float, float, int, str]:
    """|ρ(x, y)| − the largest |ρ(b, y)| over the baselines b, over the omissions where x, y and every baseline are
    known; with a paired bootstrap 95 % interval in which each resample picks its own best baseline (so that the
    choice of baseline is part of what the interval covers, and a predictor is not flattered by a baseline picked
    once on the full data). Also the omissions used and the baseline best on the full data."""
    names = list(baselines)
    ok = np.isfinite(x) & np.isfinite(y)
    for name in names:
        ok &= np.isfinite(baselines[name])
    if not names or ok.sum() < 4:
        return float("nan"), float("nan"), float("nan"), int(ok.sum()), ""
    x, y, base = x[ok], y[ok], [baselines[name][ok] for name in names]
    ys = y_draws[:resamples, ok] if y_draws is not None else None

    def strengths(rows, target):
        return np.array([abs(_spearman(b[rows], target[rows])) for b in base])

    def gain(rows, target=y):
        best = strengths(rows, target)
        return abs(_spearman(x[rows], target[rows])) - (np.nanmax(best) if np.isfinite(best).any() else np.nan)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = strengths(slice(None), y)
        best_name = names[int(np.nanargmax(full))] if np.isfinite(full).any() else ""
        draws = rng.integers(0, len(x), size=(resamples, len(x)))
        low, high = _interval([gain(d, y if ys is None else ys[b]) for b, d in enumerate(draws)])
        return float(gain(slice(None))), float(low), float(high), int(len(x)), best_name


def joint_failure_draws(pooled: pd.DataFrame, splits: list[str], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """(resamples × omissions) paired ratios, each row from one resample of the composition families of every paired
    crystal of all the omissions together: an oxyfluoride family drawn twice counts twice in both omit-O and omit-F.
    An omission without paired crystals is NaN throughout."""
    codes, uniques = pd.factorize(pooled["family"].astype(str)) if len(pooled) else (np.zeros(0, int), [])
    weights = family_weights(len(uniques), rng, resamples) if len(uniques) else np.zeros((resamples, 0))
    seeds = pooled["seed"].to_numpy() if "seed" in pooled else np.zeros(len(pooled), dtype=int)
    om_all, ct_all = pooled["omission_error"].to_numpy(float), pooled["control_error"].to_numpy(float)
    out = np.full((resamples, len(splits)), np.nan)
    for j, split in enumerate(splits):
        rows = (pooled["split"] == split).to_numpy() if len(pooled) else np.zeros(0, bool)
        if not rows.any():
            continue
        # an omission's seeds are its own trained models: resampled per omission, as in ratio_stats
        num, den = _draw_sums(codes[rows], seeds[rows], weights, rng, om_all[rows], ct_all[rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = num / den
    return out


def hypothesis_table(atlas: pd.DataFrame, seed: int = 0, paired: pd.DataFrame | None = None, resamples: int = 2000) -> pd.DataFrame:
    """Per dataset, target and model: the rank correlation of each predictor with the OOD/control error ratio across
    omissions, with its bootstrap 95 % interval and whether that interval excludes zero; and, for every predictor but
    the cheap one, its gain in |ρ| over the cheap one with a paired bootstrap interval, the omissions that gain was
    computed on, and whether it is sure (`beats_cheap`: the interval lies above zero). Given the paired crystals,
    the failure ratio of each draw is redrawn jointly over omissions (`joint_failure_draws`)."""
    rows = []
    pooled = pooled_errors(paired) if paired is not None else None
    for (dataset, target, model), frame in atlas.groupby(["dataset", "target", "model"], sort=True):
        rng = np.random.default_rng(seed)
        gain_rng = np.random.default_rng([seed, 1])  # apart, so that the correlations' intervals do not depend on it
        failure = frame["ood_over_control"].to_numpy(dtype=float)
        column = {p: frame[p].to_numpy(dtype=float) if p in frame else np.full(len(frame), np.nan) for p in PREDICTORS}
        # the baselines this atlas has (at least 4 omissions known), per kind
        usable = {labels: {b: column[b] for b in names if np.isfinite(column[b]).sum() >= 4} for labels, names in BASELINES.items()}
        base_rng = np.random.default_rng([seed, 3])
        y_draws = None
        if pooled is not None:
            mine = pooled[(pooled["dataset"] == dataset) & (pooled["target"] == target) & (pooled["model"] == model)]
            y_draws = joint_failure_draws(mine, frame["split"].tolist(), np.random.default_rng([seed, 2]), resamples)
        cheap = column[CHEAP]
        for predictor, kind in PREDICTORS.items():
            values = column[predictor]
            rho, low, high, n = rank_correlation(values, failure, rng, resamples, y_draws)
            gain, gain_low, gain_high, gain_n = ((np.nan, np.nan, np.nan, 0) if predictor == CHEAP
                                                 else rank_correlation_gain(values, cheap, failure, gain_rng, resamples, y_draws))
            rows.append({"dataset": dataset, "target": target, "model": model, "predictor": predictor, "kind": kind,
                         "spearman": rho, "ci_low": low, "ci_high": high, "omissions": n,
                         "interval_excludes_zero": bool(np.isfinite(low) and (low > 0 or high < 0)),
                         "gain_over_cheap": gain, "gain_ci_low": gain_low, "gain_ci_high": gain_high,
                         "gain_omissions": gain_n, "beats_cheap": bool(np.isfinite(gain_low) and gain_low > 0),
                         "labels": LABELS[predictor], **_baseline_columns(predictor, kind, values, usable[LABELS[predictor]],
                                                                          failure, base_rng, resamples, y_draws)})
    return pd.DataFrame(rows)


def _baseline_columns(predictor, kind, values, baselines, failure, rng, resamples, y_draws) -> dict:
    """A geometric predictor's gain (a landscape quantity's or an output sensitivity's) over the best baseline of its own
    kind (label-aware or label-free); none for a baseline itself."""
    if kind not in GEOMETRY:
        return {"best_baseline": "", "gain_over_baselines": np.nan, "baselines_ci_low": np.nan, "baselines_ci_high": np.nan,
                "baselines_omissions": 0, "beats_baselines": False}
    gain, low, high, n, best = best_baseline_gain(values, baselines, failure, rng, resamples, y_draws)
    return {"best_baseline": best, "gain_over_baselines": gain, "baselines_ci_low": low, "baselines_ci_high": high,
            "baselines_omissions": n, "beats_baselines": bool(np.isfinite(low) and low > 0)}


def write_atlas(runs: list[dict], metrics_paths: list, analysed: list[dict], landscape_paths: list, out_atlas, out_seeds,
                out_hypothesis, prediction_paths: list | None = None, materials_path=None, options: dict | None = None,
                out_paired=None, sensitivity_paths: list | None = None, split_paths: list | None = None) -> pd.DataFrame:
    """The atlas's tables. With predictions, the materials table and config `atlas`: paired scoring, the calls and the
    offset question; the ratio that the hypothesis is tested on is then the paired one (the unpaired one is kept as
    ood_over_control_unpaired), and its bootstrap redraws the crystals jointly across omissions. With the analysed
    runs' sensitivity.json files (in `analysed` order): the label-free geometry among the predictors. `split_paths`:
    the split files, whose held-out elements the paired scoring reads."""
    seeds = per_seed(runs, metrics_paths, analysed, landscape_paths)
    if sensitivity_paths is not None:
        seeds = add_sensitivity(seeds, analysed, sensitivity_paths)
    paired = None
    if prediction_paths is not None:
        by_run, paired = paired_runs(runs, prediction_paths, materials_path, options, omitted_by_split(split_paths or []))
        seeds = seeds.rename(columns={"ood_over_control": "ood_over_control_unpaired"})
        if len(by_run):
            seeds = seeds.merge(by_run, on=list(RUN_KEYS), how="left")
        else:
            seeds["ood_over_control"] = np.nan
    atlas = atlas_table(seeds, paired, options)
    write_parquet(seeds, out_seeds)
    write_parquet(atlas, out_atlas)
    if out_paired is not None:
        write_parquet(paired if paired is not None else pd.DataFrame(), out_paired)
    write_parquet(hypothesis_table(atlas, paired=paired, resamples=options["bootstrap_resamples"] if options else 2000,
                                   seed=options["seed"] if options else 0), out_hypothesis)
    return atlas
