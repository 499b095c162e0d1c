"""The results-page tables of knobs and interventions: the substitution into the held-out element is paired on the
atoms both models edited, and the intervals are those of a bootstrap of the median."""

import json

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


def _knob_run(folder, slopes: dict, works: dict, agrees: dict):
    """A knob run's responses (each held-out atom's contribution a line of the given slope in the knob's value) and
    summary (which knobs work, and their verdict against the crystal)."""
    folder.mkdir(parents=True)
    rows = [{"set": "ood_test", "atoms": "held_out", "attribute": knob, "step": step, "value": float(step), "id": f"m{atom}",
             "site": 0, "contribution": slope * step + atom}
            for knob, slope in slopes.items() for atom in range(5) for step in range(4)]
    pd.DataFrame(rows).to_parquet(folder / "responses.parquet")
    pd.DataFrame([{"set": "ood_test", "atoms": "all", "attribute": knob, "knob_works": works[knob], "agrees_with_crystal": agrees[knob]}
                  for knob in slopes]).to_parquet(folder / "summary.parquet")


def test_held_out_responses_read_each_atoms_slope_of_the_knobs_both_models_can_turn(tmp_path):
    from matprobe.studies.knob_answers import held_out_responses

    base = tmp_path / "knobs" / "demo" / "formation_energy_per_atom"
    slopes = {"coordination": 0.5, "mean_bond_length": 1.0, "bond_length_spread": 2.0}
    _knob_run(base / "omit-O" / "cgcnn" / "seed0", slopes, works={"coordination": True, "mean_bond_length": True, "bond_length_spread": False},
              agrees={"coordination": "not judged", "mean_bond_length": "disagrees", "bond_length_spread": "agrees"})
    _knob_run(base / "omit-O-control" / "cgcnn" / "seed0", {k: -v for k, v in slopes.items()}, works=dict.fromkeys(slopes, True),
              agrees=dict.fromkeys(slopes, "agrees"))
    table = held_out_responses(tmp_path)
    # the bond-length knob disagrees with the crystal and the spread does not work in the omission: one knob left
    assert table["knob"].tolist() == ["coordination"]
    row = table.iloc[0]
    assert row["omission"] == "+0.500 [+0.500, +0.500]" and row["control"] == "-0.500 [-0.500, -0.500]"
    assert row["omission − control"] == "+1.000 [+1.000, +1.000]"


def test_fidelity_is_read_beside_the_guide_and_its_correlations_resample_whole_models(tmp_path):
    from matprobe.studies.knob_answers import fidelity_follows

    def write(split: str, checks: dict):
        folder = tmp_path / "knobs" / "demo" / "formation_energy_per_atom" / split / "cgcnn" / "seed0"
        folder.mkdir(parents=True)
        (folder / "checks.json").write_text(json.dumps(checks))

    encoded = np.linspace(0.3, 0.95, 5)
    for number, sign in enumerate((1, 1, -1)):  # two models whose fidelity rises with the encoding, one where it falls
        write(f"omit-X{number}", {"attributes": list("abcde"), "fidelity_r2": dict(zip("abcde", sign * encoded)),
                                  "guide_fidelity_r2": dict.fromkeys("abcde", 0.95), "encoded_r2": dict(zip("abcde", encoded)),
                                  "encoded_beyond_others_r2": dict(zip("abcde", encoded / 2))})
    write("omit-Y", {"attributes": ["a"], "fidelity_r2": {"a": 0.1}, "encoded_r2": {"a": 0.9}})  # made before the guide's reading
    row = fidelity_follows(tmp_path, resamples=400).iloc[0]
    assert row["knob sweeps"] == 15 and row["models"] == 3  # the checks without the guide's reading are left out
    assert row["guide ≥ 0.9"] == "15 of 15" and row["guide's reading"] == "0.95 to 0.95"
    # a draw of the two rising models alone gives exactly 1: only a resample of whole models can reach it
    assert row["ρ(fidelity, encoded)"].endswith(", 1.00]")
