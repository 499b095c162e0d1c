"""Generative knobs: on a toy model whose head reads one known attribute only, the knob of that attribute recovers
the dependence and the others read flat; the stage's checks on a trained model."""

import json

import numpy as np
import pytest
import torch

from matprobe.probes.knobs import KnobTraining, environment_attributes, fit_knob_model, fit_regressor, knob_responses, slopes, sweep_values


def test_a_knob_recovers_the_one_attribute_the_head_reads():
    rng = np.random.default_rng(0)
    n = 3000
    a = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 5.0, 1.0]
    nuisance = rng.normal(size=(n, 5))
    mixing = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    h = np.concatenate([a, nuisance], axis=1) @ mixing  # every attribute is in h, mixed with what no attribute explains
    readout = torch.as_tensor(mixing.T[:, 0], dtype=torch.float32)  # recovers a[:, 0] from h exactly

    def head(x):  # contribution = 2 × attribute 0, whatever else h holds
        return 2.0 * (x @ readout)

    guide, _ = fit_regressor(h, a, seed=1, epochs=60)
    model, history = fit_knob_model(h, a, KnobTraining(epochs=40, z_dim=5), guide)
    values = sweep_values(a, 7)
    curves = knob_responses(model, head, h[:200], a[:200], values)
    recovered = slopes(values, curves).mean(axis=0)
    assert recovered[0] == pytest.approx(2.0, rel=0.15), recovered
    assert abs(recovered[1]) < 0.1 and abs(recovered[2]) < 0.3, recovered  # the others read flat
    _, from_z = fit_regressor(model.encode(torch.as_tensor(h, dtype=torch.float32))[0].detach().numpy(), a, epochs=60)
    assert np.all(from_z < 0.3), from_z  # the adversary kept the attributes out of z


def test_environment_attributes_of_rocksalt(crystals):
    from matprobe.inputs.structures import crystal_from_pymatgen

    crystal = crystal_from_pymatgen(crystals["NaCl"])
    table = environment_attributes(crystal)
    assert (table["coordination"] == 6).all()
    assert table["shortest_bond_length"] == pytest.approx(2.82, abs=0.01)
    assert table["bond_length_spread"] == pytest.approx(0.0, abs=1e-6)
    sodium, chlorine = crystal.numbers == 11, crystal.numbers == 17
    assert table["electronegativity_difference"][sodium] == pytest.approx(3.16 - 0.93, abs=0.01)
    assert table["electronegativity_difference"][chlorine] == pytest.approx(0.93 - 3.16, abs=0.01)


def test_the_knobs_stage_writes_its_checks(small, tiny_model, tmp_path):
    from matprobe.probes.knobs import run_knobs

    options = {"train_crystals": 120, "test_crystals": 40, "sweep_atoms": 40, "steps": 5, "epochs": 15, "z_dim": 4, "fidelity_weight": 1.0,
               "seed": 0}
    checks = run_knobs(tiny_model, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", (), tmp_path, options)
    saved = json.loads((tmp_path / "checks.json").read_text())
    assert saved["reconstruction_r2"] == checks["reconstruction_r2"]
    for key in ("fidelity_r2", "disentanglement_r2", "encoded_r2"):
        assert set(saved[key]) == set(saved["attributes"]) >= {"electronegativity", "coordination"}
    assert saved["realism"]["ratio"] > 0
    import pandas as pd

    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert set(summary["set"]) == {"train", "id_test", "ood_test"} and "held_out" in set(summary["atoms"])  # O atoms apart
    responses = pd.read_parquet(tmp_path / "responses.parquet")
    assert responses.groupby(["set", "atoms", "attribute", "id", "site"])["step"].nunique().eq(5).all()


def test_the_regression_baseline_has_no_slope_where_the_attribute_does_not_vary():
    """The held-out O atoms all have electronegativity 3.44: the mean of 3,676 copies of it is not 3.44 in the last
    bit, and a slope fitted to that rounding came out as −0.74 eV per Pauling unit on mp36k."""
    from matprobe.probes.knobs import _regression_slope

    rng = np.random.default_rng(0)
    constant = np.full(3676, 3.44)
    assert constant.mean() != 3.44  # the rounding the test is about
    assert np.isnan(_regression_slope(constant, rng.random(3676)))
    assert _regression_slope(np.array([1.0, 2.0, 3.0, np.nan]), np.array([2.0, 4.1, 5.9, 1.0])) == pytest.approx(1.95)
