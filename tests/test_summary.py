"""The headline table (medians and ranges over seeds, from training metrics alone) and the per-run summary."""

import json

import pandas as pd
import pytest

from matprobe.studies.summary import headline_table, summarise_runs


def _key(split, seed, target="formation_energy_per_atom", model="cgcnn"):
    return {"dataset": "set", "target": target, "split": split, "model": model, "seed": seed}


def _write_metrics(root, split, seed, id_mae, ood_mae):
    path = root / f"{split}-{seed}" / "metrics.json"  # the run's keys are passed beside the file, not read off its path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id_test": {"mae": id_mae, "n": 50}, "ood_test": {"mae": ood_mae, "n": 20}}))
    return path


def test_headline_reports_median_and_range_over_seeds(tmp_path):
    paths = [_write_metrics(tmp_path, "omit-O", seed, id_mae, ood_mae)
             for seed, id_mae, ood_mae in ((0, 0.10, 1.0), (1, 0.08, 1.2), (2, 0.12, 0.9))]
    paths.append(_write_metrics(tmp_path, "omit-O-control", 0, 0.1, 0.1))
    runs = [_key("omit-O", seed) for seed in (0, 1, 2)] + [_key("omit-O-control", 0)]
    table = headline_table(runs, paths, tmp_path / "headline.csv", tmp_path / "headline.md").set_index("split")
    omission = table.loc["omit-O"]
    assert omission["seeds"] == 3 and omission["n_id"] == 50 and omission["n_ood"] == 20
    assert omission["id_mae"] == pytest.approx(0.10) and omission["ood_mae"] == pytest.approx(1.0)
    assert (omission["ood_mae_min"], omission["ood_mae_max"]) == pytest.approx((0.9, 1.2))
    assert omission["ood_over_id"] == pytest.approx(10.0)  # the median of the per-seed ratios 10, 15, 7.5
    assert (omission["ood_over_id_min"], omission["ood_over_id_max"]) == pytest.approx((7.5, 15.0))
    markdown = (tmp_path / "headline.md").read_text()
    assert "| set | formation_energy_per_atom | omit-O | cgcnn | 3 | 0.100 (0.080–0.120) | 1.000 (0.900–1.200) | 10.00 (7.50–15.00) | 50 | 20 |" in markdown
    assert "| omit-O-control | cgcnn | 1 | 0.100 | 0.100 | 1.00 |" in markdown  # one seed: no range


def test_worst_predictions_ranks_the_largest_errors_per_set(tmp_path):
    import pandas as pd

    from matprobe.studies.summary import worst_predictions

    materials = pd.DataFrame({"id": [f"mp-{i}" for i in range(8)], "reduced_formula": [f"X{i}" for i in range(8)], "nsites": range(1, 9)})
    materials.to_parquet(tmp_path / "materials.parquet")
    predictions = pd.DataFrame({"id": [f"mp-{i}" for i in range(8)],
                                "set": ["train", "train", "train", "val", "id_test", "id_test", "ood_test", "ood_test"],
                                "y_true": [0.0] * 8, "y_pred": [0.1, -3.0, 0.5, 9.0, 0.2, -0.4, 2.0, 1.0]})
    path = tmp_path / "predictions.parquet"
    predictions.to_parquet(path)
    table = worst_predictions([_key("omit-O", 2, "band_gap", "schnet")], [path], tmp_path / "materials.parquet", tmp_path / "worst.csv", per_set=2)
    assert "val" not in set(table["set"])  # model selection's set, not an evaluation
    train = table[table["set"] == "train"]
    assert list(train["id"]) == ["mp-1", "mp-2"] and list(train["rank"]) == [1, 2] and list(train["error"]) == [-3.0, 0.5]
    assert list(table.loc[table["set"] == "ood_test", "reduced_formula"]) == ["X6", "X7"]
    assert (table["split"] == "omit-O").all() and (table["seed"] == 2).all()
    assert pd.read_csv(tmp_path / "worst.csv").shape == table.shape


def test_summary_has_a_row_per_trained_model_and_probe_metrics_where_analysed(tmp_path):
    models = [_write_metrics(tmp_path, "omit-O", seed, 0.1, 1.0) for seed in (0, 1)]
    analysed = {}
    for stage, filename, content in (("landscape", "metrics.json", {"train": {"sharpness": 0.5}}),
                                     ("attribution", "summary.json", {"split": "omit-O", "target": "t", "omitted": ["O"],
                                                                      "contributions": {"mean": -1.2}})):
        path = tmp_path / stage / filename
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content))
        analysed[stage] = [path]
    runs = summarise_runs([_key("omit-O", 0), _key("omit-O", 1)], models, [_key("omit-O", 1)], analysed["landscape"],
                          analysed["attribution"], tmp_path / "runs.parquet", tmp_path / "runs.csv")
    runs = runs.set_index("seed")
    assert list(runs.index) == [0, 1] and (runs["train.ood_test.mae"] == 1.0).all()
    assert runs.loc[1, "landscape.train.sharpness"] == 0.5 and runs.loc[1, "attribution.contributions.mean"] == -1.2
    assert pd.isna(runs.loc[0, "landscape.train.sharpness"]) and pd.isna(runs.loc[0, "attribution.contributions.mean"])
    assert "attribution.split" not in runs and "attribution.omitted" not in runs
