"""Sweeps over the periodic table, splits read from a file, and the atlas built from per-run metrics."""

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import copy_workflow
from matprobe import MatprobeError
from matprobe.studies.atlas import PREDICTORS, atlas_table, hypothesis_table, per_seed, rank_correlation, rank_correlation_gain
from matprobe.studies.atlas import atlas_table as _atlas_table
from matprobe.studies.atlas import (check_options, failure_call, joint_failure_draws, paired_runs, pooled_errors, ratio_stats,
                            write_atlas)
from matprobe.config import validate_config
from matprobe.prepare.splits import cgcnn_split, expand_sweeps, make_split, read_ids_file, split_names

ELEMENTS = pd.Series([["Fe", "O"]] * 30 + [["O", "Si"]] * 50 + [["Na", "Cl"]] * 600 + [["Cu"]] * 12 + [["S", "Zn"]] * 40)


def test_a_sweep_expands_to_omissions_with_enough_materials_each_beside_a_control():
    definitions = expand_sweeps([{"omit_each": "element", "min_ood": 40}], ELEMENTS, min_ood=20)
    # O: 80, Si: 50, S and Zn: 40 (ordered by atomic number); Na and Cl: 600 but only 132 left (< 500); Fe 30, Cu 12: too few
    assert [d["omit"] for d in definitions] == ["O", "Si", "S", "Zn"]
    assert split_names(definitions)[:4] == ["omit-O", "omit-O-control", "omit-Si", "omit-Si-control"]
    loose = expand_sweeps([{"omit_each": "element", "min_left": 100}], ELEMENTS, min_ood=20)
    assert [d["omit"] for d in loose] == ["O", "Na", "Si", "S", "Cl", "Fe", "Zn"]  # the dataset's min_ood (20) when the sweep gives none
    only = expand_sweeps([{"omit_each": "element", "min_ood": 40, "exclude": ["S"]}, {"omit": "O"}], ELEMENTS, min_ood=20)
    assert [d["omit"] for d in only] == ["O", "Si", "Zn"]  # exclude honoured; the explicit omit-O is not repeated
    groups = expand_sweeps([{"omit_each": "group", "min_ood": 40, "only": [16, 12, 1]}], ELEMENTS, min_ood=20)
    assert groups == [{"omit_group": 12, "min_ood": 40}, {"omit_group": 16, "min_ood": 40}]  # group 16: O or S (120); group 1: too few left
    assert split_names(expand_sweeps([{"omit_each": "period", "min_ood": 10, "min_left": 10}], ELEMENTS, 20), controls=False)[:2] == [
        "omit-period2", "omit-period3"]
    # each split keeps its sweep's threshold, which the split job applies instead of split_options.min_ood
    materials = pd.DataFrame({"id": [f"m{k}" for k in range(len(ELEMENTS))], "elements": ELEMENTS})
    options = {"seed": 0, "val_fraction": 0.1, "id_test_fraction": 0.1, "min_ood": 1000}
    assert make_split(materials, "omit-S", definitions, options)["counts"]["ood_test"] == 40


def test_an_ids_file_is_read_and_every_problem_reported(tmp_path):
    known = {f"m{k}" for k in range(10)}
    good = tmp_path / "fold.json"
    good.write_text(json.dumps({"train": ["m0", "m1", "m2", "m3"], "val": ["m4"], "id_test": ["m5"], "ood_test": ["m6", "m7"]}))
    assert read_ids_file(good, known)["ood_test"] == ["m6", "m7"]
    table = tmp_path / "fold.csv"
    pd.DataFrame({"id": ["m0", "m1", "m2", "m3"], "set": ["train", "train", "val", "id_test"]}).to_csv(table, index=False)
    assert read_ids_file(table, known) == {"train": ["m0", "m1"], "val": ["m2"], "id_test": ["m3"]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["m0", "x9"], "val": ["m0"], "tests": ["m5"]}))
    with pytest.raises(MatprobeError) as error:
        read_ids_file(bad, known)
    lines = str(error.value).splitlines()
    assert any("unknown set(s) ['tests']" in line for line in lines)
    assert any("set id_test is missing or empty" in line for line in lines)
    assert any("1 train id(s) are not in the materials table (e.g. x9)" in line for line in lines)
    assert any("id m0 is in both train and val" in line for line in lines)
    assert all(line.startswith(str(bad)) for line in lines)
    with pytest.raises(MatprobeError, match="needs columns id and set"):
        (tmp_path / "cols.csv").write_text("material,fold\nm0,train\n")
        read_ids_file(tmp_path / "cols.csv", known)
    with pytest.raises(MatprobeError, match="split ids file not found"):
        read_ids_file(tmp_path / "none.json", known)


def test_cgcnn_split_follows_cgcnn_and_trains_through_an_ids_file(small, tmp_path):
    import random

    from matprobe.models.training import train_model

    materials = pd.read_parquet(small / "materials.parquet", columns=["id", "elements"])
    ids = materials["id"].tolist()
    split = cgcnn_split(ids)
    shuffled = list(ids)
    random.seed(123)
    random.shuffle(shuffled)  # CGCNN shuffles its id_prop rows with random.seed(123)
    n = len(ids)
    assert split["train"] == shuffled[: int(0.8 * n)] and split["id_test"] == shuffled[n - int(0.1 * n):]
    assert split["val"] == shuffled[n - 2 * int(0.1 * n): n - int(0.1 * n)]
    (tmp_path / "cgcnn.json").write_text(json.dumps(split))
    definitions = [{"ids_file": str(tmp_path / "cgcnn.json"), "name": "cgcnn"}]
    assert split_names(definitions) == ["file-cgcnn"]  # no control for a published split
    made = make_split(materials, "file-cgcnn", definitions, {"seed": 0, "val_fraction": 0.1, "id_test_fraction": 0.1, "min_ood": 1})
    assert made["kind"] == "file" and made["counts"] == {"train": 240, "val": 30, "id_test": 30}
    (tmp_path / "file-cgcnn.json").write_text(json.dumps(made))
    training = {"epochs": 2, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-5, "patience": 5, "clip_norm": 5.0, "device": "cpu",
                "deterministic": True, "knn": 3}
    metrics = train_model(small / "graphs.pt", small / "materials.parquet", tmp_path / "file-cgcnn.json", tmp_path / "run",
                          "formation_energy_per_atom", "cgcnn", {"hidden": 8}, training, seed=0, progress=False)
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert sorted(predictions.loc[predictions["set"] == "id_test", "id"]) == sorted(split["id_test"])
    assert metrics["id_test"]["n"] == 30 and "ood_test" not in metrics


def _metrics(root, name, seed, ood, idm=0.1, n=50, knn=1.0):
    path = root / f"{name}-{seed}.json"
    path.write_text(json.dumps({"id_test": {"mae": idm, "n": 100}, "ood_test": {"mae": ood, "n": n, "r2": 0.5, "bias": ood / 2},
                                "ood_id_mae_ratio": ood / idm, "latent_knn_distance": {"ood_test": knn}}))
    return path


def test_the_atlas_holds_the_per_run_numbers_and_tests_the_hypothesis(tmp_path):
    runs, paths, analysed, landscapes = [], [], [], []
    rng = np.random.default_rng(0)
    for k, element in enumerate(["Li", "O", "Fe", "S", "Cu", "Zn"]):
        for seed in (0, 1):
            failure = 1.0 + k + 0.1 * seed  # the omissions fail more and more, in this order
            key = {"dataset": "d", "target": "t", "model": "cgcnn", "seed": seed}
            runs += [{**key, "split": f"omit-{element}"}, {**key, "split": f"omit-{element}-control"}]
            paths += [_metrics(tmp_path, f"omit-{element}", seed, 0.2 * failure, knn=rng.random()),
                      _metrics(tmp_path, f"omit-{element}-control", seed, 0.2)]
            landscape = tmp_path / f"landscape-{element}-{seed}.json"
            landscape.write_text(json.dumps({"divergence_id_test_ood_test": 0.1 * k, "sets": {
                "ood_test": {"grid_minimum_offset": 0.0, "top_eigenvalue": 2.0 * (k + 1), "flat_radius_1d": 1.0},
                "id_test": {"top_eigenvalue": 2.0, "flat_radius_1d": 0.5}}}))
            analysed.append({**key, "split": f"omit-{element}"})
            landscapes.append(landscape)
    seeds = per_seed(runs, paths, analysed, landscapes)
    assert len(seeds) == 12  # omissions only, one row per seed
    atlas = atlas_table(seeds).set_index("held_out")
    assert atlas.loc["O", "ood_mae"] == pytest.approx(np.median([0.2 * 2.0, 0.2 * 2.1]))
    assert atlas.loc["O", "ood_over_control"] == pytest.approx(2.05)
    assert (atlas.loc["O", "ood_over_control_min"], atlas.loc["O", "ood_over_control_max"]) == pytest.approx((2.0, 2.1))
    assert atlas.loc["Fe", "top_eigenvalue_ratio"] == pytest.approx(3.0) and atlas.loc["Fe", "flat_radius_ratio"] == pytest.approx(2.0)
    assert atlas.loc["S", "basin_divergence"] == pytest.approx(0.3) and atlas.loc["S", "seeds"] == 2
    hypothesis = hypothesis_table(atlas.reset_index()).set_index("predictor")
    assert hypothesis.loc["basin_divergence", "spearman"] == pytest.approx(1.0)
    assert hypothesis.loc["basin_divergence", "interval_excludes_zero"]
    assert hypothesis.loc["top_eigenvalue_ratio", "spearman"] == pytest.approx(1.0)
    assert np.isnan(hypothesis.loc["ood_grid_minimum_offset", "spearman"])  # constant: no ranking
    assert hypothesis.loc["latent_knn_distance", "kind"] == "cheap" and hypothesis.loc["n_ood", "kind"] == "count"
    # each predictor's gain over the cheap one is the difference of the two correlations on the same omissions
    assert np.isnan(hypothesis.loc["latent_knn_distance", "gain_over_cheap"])
    assert hypothesis.loc["basin_divergence", "gain_over_cheap"] == pytest.approx(
        1.0 - abs(hypothesis.loc["latent_knn_distance", "spearman"]))
    assert hypothesis.loc["basin_divergence", "gain_omissions"] == 6
    assert hypothesis.loc["basin_divergence", "beats_cheap"] == (hypothesis.loc["basin_divergence", "gain_ci_low"] > 0)
    # the correlations' intervals are those of one seeded stream over the predictors in order, as before the gains
    # were added: the gains draw from their own stream
    replay, frame = np.random.default_rng(0), atlas.reset_index()
    for predictor in PREDICTORS:
        values = frame[predictor] if predictor in frame else pd.Series(np.nan, index=frame.index)  # read from predictions
        expected = rank_correlation(values.to_numpy(float), frame["ood_over_control"].to_numpy(float), replay)
        got = hypothesis.loc[predictor, ["spearman", "ci_low", "ci_high", "omissions"]].to_numpy(float)
        np.testing.assert_allclose(got, expected, equal_nan=True)


def test_the_gain_over_the_cheap_predictor_is_paired_and_counts_only_omissions_known_to_all():
    rng = np.random.default_rng(1)
    failure, noise = rng.random(40), rng.random(40)

    def strength(a, b):
        return abs(pd.Series(a).corr(pd.Series(b), method="spearman"))

    gain, low, high, n = rank_correlation_gain(failure, noise, failure, np.random.default_rng(0))
    assert gain == pytest.approx(1.0 - strength(noise, failure)) and n == 40
    assert 0 < low <= gain <= high  # a perfect ranker beats noise, surely
    # paired: a predictor against itself gains exactly nothing in every resample (unpaired draws would spread about 0)
    assert rank_correlation_gain(noise, noise, failure, np.random.default_rng(0))[:3] == pytest.approx((0.0, 0.0, 0.0))
    # the gain is in |ρ|: a predictor that ranks failure backwards ranks it as well as one that ranks it forwards
    assert rank_correlation_gain(-failure, failure, failure, np.random.default_rng(0))[:3] == pytest.approx((0.0, 0.0, 0.0))
    # omissions where the cheap predictor is unknown leave both correlations, and the count says so
    gappy = noise.copy()
    gappy[:10] = np.nan
    ranker = failure + 0.3 * noise
    gain, low, high, n = rank_correlation_gain(ranker, gappy, failure, np.random.default_rng(0))
    assert n == 30 and gain == pytest.approx(strength(ranker[10:], failure[10:]) - strength(noise[10:], failure[10:]))
    assert np.isnan(rank_correlation_gain(failure[:3], noise[:3], failure[:3], np.random.default_rng(0))[0])


def test_a_dry_run_lists_the_sweep_once_the_data_exist(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "sweep.yaml").write_text("study: sweep\nsplits: [{omit_each: element, min_ood: 150}]\nmodels: [cgcnn]\n"
                                        "datasets: {demo: {source: embedded, limit: 1500}}\nseeds: [0, 1]\n"
                                        "split_options: {redraw_controls: true}\n")
    data = subprocess.run(["snakemake", "data", "--cores", "2", "--configfile", "sweep.yaml"], cwd=workdir, capture_output=True,
                          text=True, timeout=600)
    assert data.returncode == 0, data.stderr[-2000:]
    plan = subprocess.run(["snakemake", "-n", "--configfile", "sweep.yaml"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
    counts = json.loads((workdir / "results/data/demo/summary.json").read_text())["elements"]
    expected = {f"omit-{e}" for e, n in counts.items() if n >= 150 and 1500 - n >= 500}
    planned = {line.split("split=")[1].split(",")[0] for line in plan.stdout.splitlines() if "split=" in line and "rule" not in line}
    assert expected and {name.removesuffix("-control") for name in planned} == expected
    # seed 1's controls are drawn again (seed 0's is the split file itself); the omissions are one draw
    jobs = [job.split("\n\n")[0] for job in plan.stdout.split("rule make_control_draw:")[1:]]
    redrawn = {re.search(r"split=([^,\s]+)", job).group(1) for job in jobs if re.search(r"draw=1\b", job)}
    assert redrawn == {f"{name}-control" for name in expected} and "draw=0" not in plan.stdout
    # the atlas tables read the statistics' module as an input: changing how the atlas scores re-runs its tables
    tables = plan.stdout.split("rule atlas_tables:")[1].split("\n\n")[0]
    assert "matprobe/studies/atlas.py" in tables.split("output:")[0]


# ---- paired scoring, the failure rule and the offset question (issue 36) -------------------------------------------


OPTIONS = {"failure_threshold": 1.5, "min_paired": 20, "min_families": 5, "family": "chemical_system", "bootstrap_resamples": 500, "seed": 0,
           "offset": {"k": [1, 3, 10, 30], "draws": 20, "small_k": 10, "partial": 0.5}}
# the held-out elements of the synthetic omission, as its split file records them
OMITTED = {"omit-Na": ["Na"]}


def _synthetic(tmp_path, omission_residual, n_ood=120, n_paired=60, seed=0, families_per=1):
    """A materials table whose crystals 0..n_ood-1 hold X (here Na, one site in four or in two), the rest only Cl; an
    omission's and its control's predictions: the control predicts its OOD set (the first n_paired X crystals, which
    it did not train on) with errors of ±0.1, the omission every X crystal with `omission_residual(fraction, rng)`."""
    rng = np.random.default_rng(seed)
    n = n_ood + 200
    fraction = np.where(np.arange(n) % 2 == 0, 0.25, 0.5)
    ids = [f"m{k}" for k in range(n)]
    elements = [["Cl", "Na"] if k < n_ood else ["Cl"] for k in range(n)]
    numbers = [[11] * int(4 * f) + [17] * (4 - int(4 * f)) if k < n_ood else [17] * 4 for k, f in enumerate(fraction)]
    # families: a new chemical system every `families_per` crystals (a third element names it)
    elements = [e + [f"X{k // families_per}"] if k < n_ood else e for k, e in enumerate(elements)]
    materials = pd.DataFrame({"id": ids, "elements": elements, "reduced_formula": ids, "numbers": numbers})
    materials_path = tmp_path / "materials.parquet"
    materials.to_parquet(materials_path)
    y = rng.normal(-1, 0.5, n)
    omission = pd.DataFrame({"id": ids, "set": ["ood_test" if k < n_ood else "train" for k in range(n)], "y_true": y})
    omission["y_pred"] = y + np.where(np.arange(n) < n_ood, omission_residual(fraction, rng), rng.normal(0, 0.05, n))
    control = pd.DataFrame({"id": ids, "set": ["ood_test" if k < n_paired else "train" for k in range(n)], "y_true": y})
    control["y_pred"] = y + rng.choice([-0.1, 0.1], n)
    paths = {}
    for name, frame in (("omit-Na", omission), ("omit-Na-control", control)):
        paths[name] = tmp_path / f"{name}.parquet"
        frame.to_parquet(paths[name])
    runs = [{"dataset": "d", "target": "t", "model": "cgcnn", "seed": seed, "split": name} for name in paths]
    return runs, list(paths.values()), materials, materials_path


def test_an_omission_and_its_control_are_scored_on_the_same_crystals_with_a_family_bootstrap(tmp_path):
    runs, paths, materials, materials_path = _synthetic(tmp_path, lambda f, rng: rng.normal(0, 0.4, len(f)))
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = by_run.iloc[0]
    # the pairs are the control's OOD set, and the omission is scored on exactly those crystals, not on its own 120
    assert sorted(paired["id"]) == sorted(f"m{k}" for k in range(60)) and row["n_paired"] == 60
    omission = pd.read_parquet(paths[0]).set_index("id").loc[[f"m{k}" for k in range(60)]]
    expected = (omission["y_pred"] - omission["y_true"]).abs().mean()
    assert row["paired_control_mae"] == pytest.approx(0.1) and row["paired_ood_mae"] == pytest.approx(expected)
    assert row["ood_over_control"] == pytest.approx(expected / 0.1)
    assert row["ood_over_control_low"] < expected / 0.1 < row["ood_over_control_high"]
    assert row["n_families"] == 60  # every crystal its own chemical system here


def test_near_duplicates_do_not_count_twice_in_the_interval():
    rng = np.random.default_rng(3)
    om, ct = rng.exponential(0.3, 40), rng.exponential(0.1, 40)
    single = ratio_stats(om, ct, np.arange(40), np.random.default_rng(0), 2000)
    # each crystal five times over (five polymorphs of one system with the same errors): the family bootstrap gives the
    # interval of the 40 systems, a crystal bootstrap would shrink it as if there were 200 independent crystals
    repeated = ratio_stats(np.repeat(om, 5), np.repeat(ct, 5), np.repeat(np.arange(40), 5), np.random.default_rng(0), 2000)
    naive = ratio_stats(np.repeat(om, 5), np.repeat(ct, 5), np.arange(200), np.random.default_rng(0), 2000)
    width = lambda s: s["ood_over_control_high"] - s["ood_over_control_low"]  # noqa: E731
    assert repeated["n_paired"] == 200 and repeated["n_families"] == 40
    assert repeated["ood_over_control"] == pytest.approx(single["ood_over_control"])
    assert width(repeated) == pytest.approx(width(single), rel=1e-9)  # same draws of the same 40 families
    assert width(naive) < 0.7 * width(repeated)


def test_the_failure_rule_reads_the_interval_against_the_declared_threshold():
    assert failure_call(50, 30, 1.6, 2.4, 1.5, 20, 5) == "fails"
    assert failure_call(50, 30, 0.8, 1.4, 1.5, 20, 5) == "passes"
    assert failure_call(50, 30, 1.2, 1.9, 1.5, 20, 5) == "undecided"
    assert failure_call(19, 19, 3.0, 4.0, 1.5, 20, 5) == "too few paired"  # sure-looking, but on too few crystals for a call
    # enough crystals, but all of four chemical systems: the family bootstrap has four units to draw, too few to call
    assert failure_call(200, 4, 3.0, 4.0, 1.5, 20, 5) == "too few paired"
    assert failure_call(50, 30, np.nan, np.nan, 1.5, 20, 5) == "too few paired"


def test_a_threshold_at_or_below_one_and_a_small_k_outside_k_are_refused_in_one_line():
    for bad in (0, -1, 1.0):
        with pytest.raises(MatprobeError, match="atlas.failure_threshold"):
            validate_config({"atlas": {"failure_threshold": bad}})
    config = validate_config({"atlas": {"offset": {"k": [1, 10]}}})  # small_k (3 by default) is not among them
    with pytest.raises(MatprobeError, match=r"atlas.offset.small_k is 3, not one of atlas.offset.k \[1, 10\]") as error:
        check_options(config["atlas"])
    assert "\n" not in str(error.value)
    check_options(validate_config({})["atlas"])  # the defaults agree


def test_an_error_that_is_one_energy_per_held_out_atom_is_called_only_an_offset(tmp_path):
    # the omission is off by 2 eV per Na atom (plus the control's noise): a few labelled crystals remove it
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: 2.0 * f + rng.choice([-0.1, 0.1], len(f)))
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = by_run.iloc[0]
    assert row["offset_slope"] == pytest.approx(2.0, abs=0.05) and row["offset_r2"] > 0.8  # 0.0625 of 0.0725
    assert row["offset_k10"] == pytest.approx(-2.0, abs=0.1)  # the energy added per held-out atom
    assert row["recal_k10"] < 1.2 < row["ood_over_control"]
    assert row["offset_k_skipped"] == ""  # k=30 leaves 30 crystals to score, at least min_paired (20)
    atlas = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert atlas["call"] == "fails" and atlas["offset_call"] == "only an offset"
    assert atlas["failure_threshold"] == 1.5 and atlas["n_paired"] == 60


def _seeds_for(runs, by_run):
    """The per-seed rows `write_atlas` would make, without metrics or landscapes (those columns NaN)."""
    seeds = pd.DataFrame([{**run, "held_out": "Na"} for run in runs if not run["split"].endswith("-control")])
    seeds = seeds.merge(by_run, on=["dataset", "target", "split", "model", "seed"])
    for column in ("n_ood", "id_mae", "ood_mae", "ood_over_id", "ood_r2", "ood_bias", "latent_knn_distance", "basin_divergence",
                   "ood_grid_minimum_offset", "top_eigenvalue_ratio", "flat_radius_ratio", "control_ood_mae"):
        seeds[column] = np.nan
    return seeds


def test_the_offset_call_tells_an_offset_from_a_wrong_bonding_model_and_from_no_gap(tmp_path):
    # errors that no energy per atom explains: the sign is random, independent of the fraction
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: rng.choice([-0.6, 0.6], len(f)))
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["call"] == "fails" and row["offset_call"] == "not an offset" and row["recal_k10"] > 5
    # half offset, half noise beyond the control's: partly
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: 2.0 * f + rng.choice([-0.3, 0.3], len(f)))
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["offset_call"] == "partly" and 1.5 < row["recal_k10"] < 0.5 * (1 + row["ood_over_control"])
    # as good as the control on the same crystals: nothing to explain
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: rng.choice([-0.1, 0.1], len(f)))
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["offset_call"] == "no gap" and row["call"] == "passes"


def test_too_few_paired_crystals_and_too_large_a_k_are_counted_and_named_not_a_crash(tmp_path):
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: 2.0 * f, n_paired=25)
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["n_paired"] == 25 and row["call"] == "fails"
    assert row["offset_k_skipped"] == "k=10 (n=25), k=30 (n=25)"  # each k that would leave < min_paired (20) to score
    assert np.isnan(row["recal_k10"]) and row["offset_call"] == "too few crystals"  # small_k could not be scored: said so
    assert np.isfinite(row["recal_k3"])
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: 2.0 * f, n_paired=12)
    by_run, paired = paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["n_paired"] == 12 and row["call"] == "too few paired" and row["offset_call"] == "too few crystals"
    # an omission whose control has no predictions: nothing paired, a call that says so
    by_run, paired = paired_runs(runs[:1], paths[:1], materials_path, OPTIONS, OMITTED)
    assert by_run.iloc[0]["n_paired"] == 0 and paired.empty
    row = _atlas_table(_seeds_for(runs, by_run), paired, OPTIONS).iloc[0]
    assert row["n_paired"] == 0 and row["call"] == "too few paired"


def test_every_seeds_paired_crystals_count_once_and_a_redrawn_control_adds_crystals(tmp_path):
    frames = []
    for seed, scale in ((0, 1.0), (1, 3.0)):
        runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng, s=scale: 0.1 * s * np.ones(len(f)), seed=seed)
        frames.append(paired_runs(runs, paths, materials_path, OPTIONS, OMITTED)[1])
    paired = pd.concat(frames, ignore_index=True)
    pooled = pooled_errors(paired)
    assert len(pooled) == 120 and pooled.groupby("id")["omission_error"].mean().to_numpy() == pytest.approx(0.2)
    # one control draw: the pooled ratio is that of the errors averaged over seeds
    averaged = pooled.groupby("id")[["omission_error", "control_error"]].mean()
    seeds = pd.DataFrame({"seed": pooled["seed"], "held_out": "X"}).assign(**{k: pooled[k] for k in ("dataset", "target", "model", "split")})
    table = atlas_table(seeds.drop_duplicates(), paired, OPTIONS).iloc[0]
    assert table["ood_over_control"] == pytest.approx(averaged["omission_error"].sum() / averaged["control_error"].sum())
    assert table["n_paired"] == 60 and table["n_scored"] == 120
    # a seed whose control left other crystals out (a redrawn control) pairs those: distinct crystals are counted
    moved = paired.copy()
    moved.loc[moved["seed"] == 1, "id"] = "r" + moved.loc[moved["seed"] == 1, "id"]
    table = atlas_table(seeds.drop_duplicates(), moved, OPTIONS).iloc[0]
    assert table["n_paired"] == 120 and table["n_scored"] == 120


def test_the_pooled_interval_holds_the_spread_between_seeds_not_only_between_crystals():
    n = 60
    control = np.full(2 * n, 0.1)
    # every crystal's error the same within a seed: crystals alone would give an interval of no width
    omission = np.concatenate([np.full(n, 0.2), np.full(n, 0.1)])
    family, seed = np.tile([f"f{k}" for k in range(n)], 2), np.repeat([0, 1], n)
    crystals_only = ratio_stats(omission, control, family, np.random.default_rng(0), 500)
    both = ratio_stats(omission, control, family, np.random.default_rng(0), 500, seed)
    assert crystals_only["ood_over_control"] == both["ood_over_control"] == pytest.approx(1.5)
    assert crystals_only["ood_over_control_high"] - crystals_only["ood_over_control_low"] == pytest.approx(0.0)
    assert both["ood_over_control_low"] == pytest.approx(1.0) and both["ood_over_control_high"] == pytest.approx(2.0)
    # one seed: the same numbers as without seeds (the per-run ratios are unchanged)
    assert ratio_stats(omission[:n], control[:n], family[:n], np.random.default_rng(0), 500, seed[:n]) == \
        ratio_stats(omission[:n], control[:n], family[:n], np.random.default_rng(0), 500)


def test_omissions_that_share_crystals_are_redrawn_together_in_the_hypothesis_bootstrap():
    rng = np.random.default_rng(0)
    families = [f"f{k}" for k in range(30)]
    shared = pd.DataFrame({"id": [f"m{k}" for k in range(30)], "family": families, "omission_error": rng.exponential(0.5, 30),
                           "control_error": rng.exponential(0.1, 30)})
    pooled = pd.concat([shared.assign(split="omit-O"), shared.assign(split="omit-F")], ignore_index=True)
    draws = joint_failure_draws(pooled, ["omit-O", "omit-F", "omit-Na"], np.random.default_rng(0), 200)
    # the same crystals in two omissions: the same ratio in every draw (independent draws would differ)
    np.testing.assert_allclose(draws[:, 0], draws[:, 1])
    assert np.std(draws[:, 0]) > 0 and np.isnan(draws[:, 2]).all()


def test_the_atlas_is_written_with_its_paired_crystals_and_calls(tmp_path, capsys):
    runs, paths, _, materials_path = _synthetic(tmp_path, lambda f, rng: 2.0 * f + rng.choice([-0.1, 0.1], len(f)))
    metrics = [_metrics(tmp_path, run["split"], 0, 0.5 if run["split"] == "omit-Na" else 0.1) for run in runs]
    out = {name: tmp_path / f"{name}.parquet" for name in ("atlas", "seeds", "hypothesis", "paired")}
    split = tmp_path / "omit-Na.json"
    split.write_text(json.dumps({"name": "omit-Na", "kind": "omission", "omitted_elements": ["Na"], "sets": {}}))
    atlas = write_atlas(runs, metrics, [], [], out["atlas"], out["seeds"], out["hypothesis"], paths, materials_path, OPTIONS,
                        out["paired"], split_paths=[split, split])
    written = pd.read_parquet(out["atlas"]).iloc[0]
    assert written["call"] == atlas.iloc[0]["call"] == "fails" and written["offset_call"] == "only an offset"
    assert written["ood_over_control_unpaired"] == pytest.approx(5.0)  # the two models' own OOD sets, kept for comparison
    assert written["ood_over_control"] == pytest.approx(written["paired_ood_mae"] / written["paired_control_mae"])
    assert len(pd.read_parquet(out["paired"])) == 60 and "ood_over_control_low" in pd.read_parquet(out["seeds"])
    # the figures read these tables: the paired maps and the scatter with each ratio's interval
    from matprobe.figures.atlas import atlas_maps, hypothesis_scatter

    atlas_maps(out["atlas"], tmp_path / "maps.png")
    hypothesis_scatter(out["atlas"], out["hypothesis"], tmp_path / "hypothesis.png")
    assert (tmp_path / "maps.png").stat().st_size > 10_000 and (tmp_path / "hypothesis.png").stat().st_size > 10_000
    # and the results pages' tables: the omission with its paired ratio, interval, call and offset call
    from matprobe.studies.atlas_answers import main

    main([str(tmp_path)])
    printed = capsys.readouterr().out
    ratio = f"{written['ood_over_control']:.2f} [{written['ood_over_control_low']:.2f}, {written['ood_over_control_high']:.2f}]"
    assert f"| Na | {written['n_paired']} ({written['n_families']}) | {ratio} | fails |" in printed
    assert f"| t | cgcnn | 1 | 0 | 0 | 0 | 0 of 1 | {written['ood_over_control']:.2f} | Na |" in printed  # fails, above the line
    assert "| gain in \\|ρ\\| [95 %] |" in printed and "| \\|OOD bias\\| / OOD MAE |" in printed  # a | in a cell escaped


def test_a_landscape_quantity_is_judged_against_the_best_baseline_of_its_own_kind():
    from matprobe.studies.atlas import BASELINES, LABELS, best_baseline_gain

    rng = np.random.default_rng(2)
    failure, noise, other = rng.random(40), rng.random(40), rng.random(40)
    # against itself among the baselines: no gain in any resample (the comparison is paired)
    assert best_baseline_gain(noise, {"a": noise}, failure, np.random.default_rng(0))[:3] == pytest.approx((0, 0, 0))
    # and with a second baseline the best of the two, picked in each resample, is never worse than itself
    assert best_baseline_gain(noise, {"a": noise, "b": other}, failure, np.random.default_rng(0))[2] <= 0
    # a perfect ranker beats two noise baselines surely, and the best of them is named
    gain, low, high, n, best = best_baseline_gain(failure, {"a": noise, "b": other}, failure, np.random.default_rng(0))
    strength = {k: abs(pd.Series(v).corr(pd.Series(failure), method="spearman")) for k, v in (("a", noise), ("b", other))}
    assert gain == pytest.approx(1 - max(strength.values())) and low > 0 and n == 40 and best == max(strength, key=strength.get)
    # a baseline that restates the failure cannot be beaten: the gain is at most 0 in every resample
    gain, low, high, _, best = best_baseline_gain(failure + 0.3 * noise, {"restates": failure, "a": noise}, failure,
                                                  np.random.default_rng(0))
    assert best == "restates" and gain < 0 and high <= 0
    # kinds: every landscape quantity reads the held-out labels and meets the label-aware baselines
    assert all(LABELS[p] == "label-aware" for p, kind in PREDICTORS.items() if kind == "landscape")
    assert set(BASELINES["label-aware"]) == {"ood_over_id", "bias_over_mae", "same_sign_share"}
    assert set(BASELINES["label-free"]) == {"latent_knn_distance", "n_ood", "latent_distance_ratio"}


def test_the_hypothesis_table_sets_each_landscape_quantity_against_the_label_aware_baselines():
    rng = np.random.default_rng(5)
    n = 12
    failure = np.exp(rng.normal(0.5, 0.5, n))
    atlas = pd.DataFrame({"dataset": "d", "target": "t", "model": "m", "split": [f"omit-E{k}" for k in range(n)],
                          "ood_over_control": failure, "basin_divergence": failure + rng.normal(0, 0.05, n),
                          "ood_over_id": failure * 2,  # restates the failure: a label-aware baseline no quantity beats
                          "bias_over_mae": rng.random(n), "same_sign_share": rng.random(n),
                          "latent_knn_distance": rng.random(n), "latent_distance_ratio": rng.random(n), "n_ood": rng.integers(100, 900, n)})
    table = hypothesis_table(atlas, resamples=300).set_index("predictor")
    row = table.loc["basin_divergence"]
    assert row["labels"] == "label-aware" and row["best_baseline"] == "ood_over_id" and row["baselines_omissions"] == n
    assert row["gain_over_baselines"] <= 0 and not row["beats_baselines"]
    assert row["beats_cheap"]  # against the label-free latent distance alone it would have looked like a finding
    assert np.isnan(table.loc["ood_over_id", "gain_over_baselines"]) and table.loc["ood_over_id", "kind"] == "baseline"


@pytest.mark.parametrize("atlas, expected", [("{failure_threshold: 0}", "atlas.failure_threshold: 0 is less than or equal to the minimum of 1"),
                                             ("{offset: {k: [1, 10]}}", "atlas.offset.small_k is 3, not one of atlas.offset.k [1, 10]")])
def test_a_bad_failure_rule_stops_the_plan_in_one_line(tmp_path, atlas, expected):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "bad.yaml").write_text(f"atlas: {atlas}\n")
    plan = subprocess.run(["snakemake", "-n", "--configfile", "config/config.yaml", "bad.yaml"], cwd=workdir, capture_output=True,
                          text=True, timeout=600)
    lines = [line for line in plan.stderr.splitlines() if line.startswith("matprobe:")]
    assert plan.returncode != 0 and lines == [f"matprobe: config: {expected}"]


def test_the_map_says_how_many_families_a_refused_call_had(tmp_path, monkeypatch):
    from matprobe.figures import atlas as figures

    atlas = pd.DataFrame({"target": "formation_energy_per_atom", "model": "cgcnn", "held_out": ["O", "Na", "Li"], "seeds": 1,
                          "ood_over_control": [4.0, 2.0, 1.1], "ood_r2": [-1.0, 0.5, 0.9], "basin_divergence": [0.9, 0.2, 0.1],
                          "n_paired": [400, 40, 5], "n_families": [300, 3, 5], "failure_threshold": 1.5, "min_paired": 10,
                          "min_families": 5, "call": ["fails", "too few paired", "too few paired"]})
    atlas.to_parquet(tmp_path / "atlas.parquet")
    notes = []
    monkeypatch.setattr(figures, "periodic_table", lambda *args, annotations=None, **kwargs: notes.append(annotations))
    monkeypatch.setattr(figures, "save", lambda fig, path: None)
    figures.atlas_maps(tmp_path / "atlas.parquet", tmp_path / "maps.png")
    # Na: enough crystals, too few families; Li: too few of both; O: a call, its crystals only
    assert notes[0] == {"O": "F 400", "Na": "– 3 fam.", "Li": "– 5"}
