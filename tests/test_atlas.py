"""Sweeps over the periodic table, splits read from a file, and the atlas built from per-run metrics."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import copy_workflow
from matprobe import MatprobeError
from matprobe.atlas import PREDICTORS, atlas_table, hypothesis_table, per_seed, rank_correlation, rank_correlation_gain
from matprobe.splits import cgcnn_split, expand_sweeps, make_split, read_ids_file, split_names

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

    from matprobe.train import train_model

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
        expected = rank_correlation(frame[predictor].to_numpy(float), frame["ood_over_control"].to_numpy(float), replay)
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
                                        "datasets: {demo: {source: embedded, limit: 1500}}\n")
    data = subprocess.run(["snakemake", "data", "--cores", "2", "--configfile", "sweep.yaml"], cwd=workdir, capture_output=True,
                          text=True, timeout=600)
    assert data.returncode == 0, data.stderr[-2000:]
    plan = subprocess.run(["snakemake", "-n", "--configfile", "sweep.yaml"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
    counts = json.loads((workdir / "results/data/demo/summary.json").read_text())["elements"]
    expected = {f"omit-{e}" for e, n in counts.items() if n >= 150 and 1500 - n >= 500}
    planned = {line.split("split=")[1].split(",")[0] for line in plan.stdout.splitlines() if "split=" in line and "rule" not in line}
    assert expected and {name.removesuffix("-control") for name in planned} == expected
