"""The knob and intervention answers of a study, as Markdown tables for a results page (issue 35, item 4):

    python -m matprobe.studies.knob_answers results/studies/default [--dataset demo] [--model cgcnn]

1. Per model, the knob checks: reconstruction, working knobs, disentanglement, realism, and the verdict of each
   intervention against the knob model (Spearman over atoms, atoms compared).
2. The omit-X question through substitution: the change of an atom's contribution when it becomes the held-out
   element (S → O, ...), in training crystals of both models and in ID test crystals, omission beside control on
   the same atoms, with the median and its bootstrap 95 % interval over atoms, and the paired difference.
3. Energy-volume physicality (energy targets): per set, on the crystals both models strained, how many curves have
   their minimum inside the strained range, and the median offset of the minimum (linear strain, %) with its
   interval over the crystals whose curve has one (of each model: the two sets of crystals may differ).
4. What the working knobs show on the held-out element: per knob that works in both models and that the crystal's
   interventions do not contradict, the slope of the held-out element's atoms' contributions (OOD crystals) as the
   knob turns, omission beside control.
5. What fidelity follows: per dataset and target, over every model's knobs, the range of the guide's reading of
   the sweeps (the regressor the decoder was trained against) beside the checker's, and the Spearman correlation of
   the checker's fidelity with the model's encoding of the knob (plain, and beyond the other attributes), its
   interval from resampling models (a model's knobs come together; the models of one study share their data, so
   they are not independent either).

Intervals: percentile bootstrap over atoms (or crystals), 2,000 resamples, seed 0."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from matprobe.layout import RUN_FILES
from matprobe.prepare.splits import CONTROL_SUFFIX
from matprobe.probes.knobs import cluster_bootstrap_spearman
from matprobe.studies.summary import estimate_text, markdown_table
from matprobe.vocabulary import ENERGY_TARGETS

RESAMPLES = 2000


def median_interval(values, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """The median and the percentile-bootstrap 95 % interval of the median (NaN for no values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return (np.nan, np.nan, np.nan)
    draws = np.random.default_rng(seed).choice(values, size=(resamples, len(values)), replace=True)
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return float(np.median(values)), float(low), float(high)


def _format(estimate: tuple[float, float, float], digits: int = 2) -> str:
    return estimate_text(*estimate, digits=digits, signed=True)


def runs(study: Path, stage: str, name: str, dataset: str | None, model: str | None) -> list[tuple[dict, Path]]:
    """(keys, path) of every run of a study that has the stage's file."""
    found = []
    for path in sorted((study / stage).glob(f"*/*/*/*/seed*/{RUN_FILES[stage][name]}")):
        data, target, split, model_name, seed = path.parts[-6:-1]
        if (dataset and data != dataset) or (model and model_name != model):
            continue
        found.append(({"dataset": data, "target": target, "split": split, "model": model_name, "seed": seed}, path))
    return found


def knob_checks(study: Path, dataset=None, model=None) -> pd.DataFrame:
    rows = []
    for keys, path in runs(study, "knobs", "checks", dataset, model):
        checks = json.loads(path.read_text())
        working = [a for a in checks["attributes"] if checks["encoded_r2"][a] >= checks["encoded_threshold"]
                   and checks["fidelity_r2"][a] >= checks["fidelity_goal"]]
        verdicts = {}
        for entry in checks.get("crystal", {}).get("paths", []):
            if entry["path"] == "all":
                rho = "–" if entry.get("spearman") is None else f"{entry['spearman']:.2f}"
                if entry.get("spearman_low") is not None:
                    rho += f" [{entry['spearman_low']:.2f}, {entry['spearman_high']:.2f}]"
                crystals = f" of {entry['crystals']} crystals" if entry.get("crystals") else ""
                verdicts[entry["intervention"]] = f"{entry['verdict']} ({rho}, {entry['curves']} edits{crystals})"
        disentanglement = checks.get("disentanglement_median")
        rows.append({**keys, "reconstruction R²": f"{checks['reconstruction_r2']:.3f}",
                     "working knobs": f"{len(working)} of {len(checks['attributes'])}: " + ", ".join(w.replace("_", " ") for w in working),
                     "disentanglement (median)": "–" if disentanglement is None else f"{disentanglement:.2f}",
                     "realism": f"{checks['realism']['ratio']:.2f}",
                     "shell stretch": verdicts.get("shell_stretch", "–"), "substitution": verdicts.get("substitution", "–"),
                     "steps": checks["training"].get("steps"), "seconds": checks.get("seconds")})
    return pd.DataFrame(rows)


def fidelity_follows(study: Path, dataset=None, model=None, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """5. above, one row per dataset and target: the number of knob sweeps and models, the guide's and the checker's
    fidelity ranges, and the Spearman correlations of fidelity with encoded_r2 and encoded_beyond_others_r2 with
    percentile intervals over models resampled. Checks made before the guide's reading was recorded are left out
    (rerun the knobs stage, `--forcerun knobs`, to include them)."""
    rows = []
    for number, (keys, path) in enumerate(runs(study, "knobs", "checks", dataset, model)):
        checks = json.loads(path.read_text())
        if "guide_fidelity_r2" not in checks:
            continue
        rows += [{"dataset": keys["dataset"], "target": keys["target"], "model": number, "fidelity": checks["fidelity_r2"][a],
                  "guide": checks["guide_fidelity_r2"][a], "encoded": checks["encoded_r2"][a],
                  "beyond": checks["encoded_beyond_others_r2"][a]} for a in checks["attributes"]]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame([{"dataset": dataset_name, "target": target, **_fidelity_row(knobs, resamples, seed)}
                         for (dataset_name, target), knobs in pd.DataFrame(rows).groupby(["dataset", "target"], sort=True)])


def _fidelity_row(knobs: pd.DataFrame, resamples: int, seed: int) -> dict:
    def correlation(column: str) -> str:
        estimate = spearmanr(knobs["fidelity"], knobs[column]).statistic
        low, high = cluster_bootstrap_spearman(knobs["fidelity"], knobs[column], knobs["model"], resamples, seed)
        return f"{estimate:.2f} [{low:.2f}, {high:.2f}]" if low is not None else f"{estimate:.2f}"

    span = lambda column: f"{knobs[column].min():.2f} to {knobs[column].max():.2f}"  # noqa: E731
    return {"knob sweeps": len(knobs), "models": int(knobs["model"].nunique()), "guide's reading": span("guide"),
            "guide ≥ 0.9": f"{int((knobs['guide'] >= 0.9).sum())} of {len(knobs)}", "checker's reading (fidelity)": span("fidelity"),
            "encoded beyond the others": span("beyond"), "ρ(fidelity, encoded)": correlation("encoded"),
            "ρ(fidelity, encoded beyond the others)": correlation("beyond")}


def _pairs(study: Path, dataset=None, model=None) -> list[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """(keys of the omission, its intervention summary, its control's) for every omission with a control."""
    summaries = {tuple(k.values()): (k, p) for k, p in runs(study, "interventions", "summary", dataset, model)}
    pairs = []
    for key, (keys, path) in summaries.items():
        control = (keys["dataset"], keys["target"], keys["split"] + CONTROL_SUFFIX, keys["model"], keys["seed"])
        if control in summaries:
            pairs.append((keys, pd.read_parquet(path), pd.read_parquet(summaries[control][1])))
    return pairs


def substitution_into_held_out(study: Path, dataset=None, model=None) -> pd.DataFrame:
    """Per omission: the change of the substituted site's contribution when it becomes the held-out element, in
    each model, on the atoms both evaluated, and the paired difference (omission − control)."""
    rows = []
    key = ["set", "id", "site", "path"]
    for keys, omission, control in _pairs(study, dataset, model):
        both = omission[omission["into_held_out"] != ""].merge(control[control["into_held_out"] != ""], on=key, suffixes=("", "_control"))
        column = "change_contribution_into_held_out"
        both = both.dropna(subset=[column, column + "_control"])
        if both.empty:
            continue
        for set_name, part in [("all", both), *both.groupby("set", sort=True)]:
            rows.append({**keys, "crystals": set_name, "atoms": len(part), "into": ", ".join(sorted(set(part["into_held_out"]))),
                         "from": ", ".join(sorted(set(part["element"]))),
                         "omission": _format(median_interval(part[column])), "control": _format(median_interval(part[column + "_control"])),
                         "omission − control": _format(median_interval(part[column] - part[column + "_control"]))})
    return pd.DataFrame(rows)


def energy_volume(study: Path, dataset=None, model=None) -> pd.DataFrame:
    """Per omission and set: the strain curves' minima, omission beside control on the same crystals."""
    rows = []
    for keys, omission, control in _pairs(study, dataset, model):
        if keys["target"] not in ENERGY_TARGETS:  # a band gap has no minimum to look for
            continue
        strain = omission[omission["intervention"] == "strain"].merge(control[control["intervention"] == "strain"], on=["set", "id"],
                                                                      suffixes=("", "_control"))
        for set_name, part in strain.groupby("set", sort=True):
            inside = part["minimum_in_range"].astype(bool)
            inside_control = part["minimum_in_range_control"].astype(bool)
            rows.append({**keys, "set": set_name, "crystals": len(part),
                         "minimum inside the range": f"{int(inside.sum())} of {len(part)}",
                         "minimum inside, control": f"{int(inside_control.sum())} of {len(part)}",
                         "offset of the minimum (%)": _format(median_interval(part.loc[inside, "minimum_strain_percent"]), 1),
                         "offset, control (%)": _format(median_interval(part.loc[inside_control, "minimum_strain_percent_control"]), 1),
                         "curvature at the DFT cell": _format(median_interval(part["curvature_prediction"])),
                         "curvature, control": _format(median_interval(part["curvature_prediction_control"]))})
    return pd.DataFrame(rows)


def atom_slopes(responses: pd.DataFrame) -> pd.DataFrame:
    """Per atom and knob of a response table: the least-squares slope of the atom's contribution over the knob's
    value (target units per attribute unit), one row per (set, atoms, attribute, id, site)."""
    keys = ["set", "atoms", "attribute", "id", "site"]
    frame = responses.assign(xc=responses["value"] - responses.groupby(keys)["value"].transform("mean"))
    frame = frame.assign(xy=frame["xc"] * frame["contribution"], xx=frame["xc"] ** 2)
    sums = frame.groupby(keys, sort=True)[["xy", "xx"]].sum()
    return (sums["xy"] / sums["xx"].where(sums["xx"] > 0)).rename("slope").reset_index()


def held_out_responses(study: Path, dataset=None, model=None) -> pd.DataFrame:
    """Per omission and each knob that works in both models and that the crystal does not contradict: the slope of
    the held-out element's atoms' contributions (in OOD crystals) as the knob turns, omission beside control, each the
    median over atoms with its interval, and the difference of the medians with the interval of independent
    resamples of both (each model samples its own atoms)."""
    found = {tuple(k.values()): (k, p) for k, p in runs(study, "knobs", "responses", dataset, model)}
    rows = []
    for key, (keys, path) in found.items():
        control_key = (keys["dataset"], keys["target"], keys["split"] + CONTROL_SUFFIX, keys["model"], keys["seed"])
        if control_key not in found:
            continue
        pair = (path, found[control_key][1])
        summaries = [pd.read_parquet(p.with_name(RUN_FILES["knobs"]["summary"])).query("set == 'ood_test' and atoms == 'all'") for p in pair]
        usable = set.intersection(*(set(part.loc[part["knob_works"].astype(bool) & (part["agrees_with_crystal"] != "disagrees"), "attribute"])
                                    for part in summaries))
        slopes = [atom_slopes(pd.read_parquet(p).query("set == 'ood_test' and atoms == 'held_out'")) for p in pair]
        for attribute in sorted(usable):
            om, ct = (frame.loc[frame["attribute"] == attribute, "slope"].to_numpy(float) for frame in slopes)
            om, ct = om[np.isfinite(om)], ct[np.isfinite(ct)]
            if not (len(om) and len(ct)):
                continue
            rng = np.random.default_rng(0)
            draws = (np.median(rng.choice(om, size=(RESAMPLES, len(om))), axis=1)
                     - np.median(rng.choice(ct, size=(RESAMPLES, len(ct))), axis=1))
            low, high = np.percentile(draws, [2.5, 97.5])
            rows.append({**keys, "knob": attribute.replace("_", " "), "atoms": f"{len(om)}, {len(ct)}",
                         "omission": _format(median_interval(om), 3), "control": _format(median_interval(ct), 3),
                         "omission − control": _format((float(np.median(om) - np.median(ct)), float(low), float(high)), 3)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study's results folder, e.g. results/studies/default")
    parser.add_argument("--dataset")
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    for title, table in (("Knob checks", knob_checks(args.study, args.dataset, args.model)),
                         ("Substitution into the held-out element", substitution_into_held_out(args.study, args.dataset, args.model)),
                         ("Energy-volume curves", energy_volume(args.study, args.dataset, args.model)),
                         ("Working knobs on the held-out element's atoms", held_out_responses(args.study, args.dataset, args.model)),
                         ("What fidelity follows", fidelity_follows(args.study, args.dataset, args.model))):
        print(f"### {title}\n")
        print(markdown_table(table.drop(columns=["dataset"], errors="ignore"), {}) if len(table) else "(no runs)")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
