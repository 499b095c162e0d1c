"""The results-page tables of knobs and interventions: the substitution into the held-out element is paired on the
atoms both models edited, and the intervals are those of a bootstrap of the median."""

import numpy as np
import pandas as pd
import pytest

from matprobe.studies.knob_answers import energy_volume, median_interval, substitution_into_held_out


def test_the_median_interval_covers_the_median_and_collapses_for_one_value():
    middle, low, high = median_interval(np.arange(101.0))
    assert middle == 50.0 and low < 50.0 < high
    assert median_interval([3.0]) == (3.0, 3.0, 3.0)
    assert all(np.isnan(median_interval([np.nan])))


def _summary(changes: dict, minima: dict) -> pd.DataFrame:
    rows = [{"set": "train", "id": crystal, "site": 0, "path": "group", "intervention": "substitution", "element": "S",
             "into_held_out": "O", "change_contribution_into_held_out": value} for crystal, value in changes.items()]
    rows += [{"set": "ood_test", "id": crystal, "site": -1, "path": "", "intervention": "strain", "element": "", "into_held_out": "",
              "minimum_strain_percent": value, "minimum_in_range": np.isfinite(value), "curvature_prediction": 1.0}
             for crystal, value in minima.items()]
    return pd.DataFrame(rows)


@pytest.fixture
def study(tmp_path):
    def write(split, frame):
        folder = tmp_path / "interventions" / "demo" / "formation_energy_per_atom" / split / "cgcnn" / "seed0"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "summary.parquet")

    # the omission edits three atoms, its control two of them: only the two they share are compared
    write("omit-O", _summary({"a": 0.1, "b": 0.2, "c": 5.0}, {"x": 1.0, "y": np.nan}))
    write("omit-O-control", _summary({"a": -0.4, "b": -0.5}, {"x": -1.0, "y": 2.0}))
    return tmp_path


def test_substitutions_are_paired_on_the_atoms_both_models_edited(study):
    table = substitution_into_held_out(study)
    row = table[table["crystals"] == "all"].iloc[0]
    assert row["atoms"] == 2 and row["into"] == "O" and row["from"] == "S"
    assert row["omission"].startswith("+0.15") and row["control"].startswith("-0.45") and row["omission − control"].startswith("+0.60")


def test_energy_volume_minima_are_counted_on_the_same_crystals(study):
    row = energy_volume(study).iloc[0]
    assert row["crystals"] == 2 and row["minimum inside the range"] == "1 of 2" and row["minimum inside, control"] == "2 of 2"
    assert row["offset of the minimum (%)"].startswith("+1.0")
