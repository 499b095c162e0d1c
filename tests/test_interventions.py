"""Physical interventions: each edit does exactly what it says to the structure, impossible structures are counted
and never raised, a curve's numbers are finite or missing with a reason, and the energy-volume fit finds a known
minimum."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from matprobe.inputs.structures import Crystal, RejectedStructure, crystal_from_pymatgen
from matprobe.models.architectures import build_model
from matprobe.probes.interventions import (Clearance, energy_volume_summary, evaluate, first_shell, intervene,
                                           neighbours_of, predictor, response_summary, shell_repeats, shell_stretched, strained,
                                           structure_problem, substituted, substitution_paths, supercell)
from matprobe.vocabulary import ENERGY_TARGETS

GRAPH = {"cutoff": 8.0, "max_neighbors": 12}
OPTIONS = {"edits": ["strain", "shell_stretch", "substitution"], "crystals": 4, "atoms_per_group": 2, "max_atoms": 40, "min_distance": 0.5,
           "seed": 0,
           "strain": {"max_percent": 6.0, "points": 7, "fit_points": 5},
           "shell_stretch": {"max_percent": 5.0, "points": 5, "max_repeats": 3}, "substitution": {"reach": 2}}


def pairwise_distances(crystal: Crystal, cutoff: float = 6.0) -> np.ndarray:
    from vesin import NeighborList

    d = NeighborList(cutoff=cutoff, full_list=True).compute(points=crystal.cart_coords(), box=crystal.lattice, periodic=True, quantities="d")
    return np.sort(d)


@pytest.fixture(scope="module")
def cgcnn_predict():
    """A freshly built CGCNN as the predict callable, its graphs built as the graph stage builds them (independent of
    the seam, so that the seam's own callable can be checked against it)."""
    from torch_geometric.data import Batch

    from matprobe.prepare.graphs import build_graph, collate_graphs
    from matprobe.prepare.sets import graph_data

    torch.manual_seed(0)
    model = build_model("cgcnn", {"hidden": 8, "layers": 2, "head_hidden": 8}).eval()
    mean, std = -1.0, 0.7

    @torch.no_grad()
    def predict(crystals):
        ids = [str(k) for k in range(len(crystals))]
        stored = collate_graphs(ids, [build_graph(c, GRAPH["cutoff"], GRAPH["max_neighbors"]) for c in crystals], {})
        batch = Batch.from_data_list(graph_data(stored, ids, np.zeros(len(ids))))
        out = model(batch)
        contributions = out["contributions"].double().numpy() * std + mean
        return list(zip((out["prediction"].double().numpy() * std + mean).tolist(), np.split(contributions, batch.ptr[1:-1].numpy())))

    predict.model, predict.scale = model, (mean, std)
    return predict


@pytest.fixture(scope="module")
def structures(crystals):
    from pymatgen.core import Lattice, Structure

    zinc_sulfide = Structure.from_spacegroup("F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    return {**{name: crystal_from_pymatgen(s) for name, s in crystals.items()}, "ZnS": crystal_from_pymatgen(zinc_sulfide),
            "Po": crystal_from_pymatgen(Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]]))}


def write_study(tmp_path, structures) -> tuple:
    """A materials table and an omit-O split with its control: MgO and FeO held out, ZnS (an S site: S -> O) trained on."""
    rows = [{"id": name, "nsites": c.nsites, **c.to_row()} for name, c in structures.items()]
    pd.DataFrame(rows).to_parquet(tmp_path / "materials.parquet")
    sets = {"train": ["ZnS", "Po"], "id_test": ["NaCl", "Si", "CsCl"], "ood_test": ["MgO", "FeO"]}
    control = {**sets, "id_test": ["NaCl", "Si", "CsCl", "ZnS"]}
    paths = []
    for name, members in (("omit-O", sets), ("omit-O-control", control)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "kind": "omission", "omitted_elements": ["O"], "sets": members}))
        paths.append(path)
    return tmp_path / "materials.parquet", paths


def outputs(folder) -> dict:
    return {"curves": folder / "curves.parquet", "summary": folder / "summary.parquet", "counts": folder / "counts.json"}


# ---- the edits -------------------------------------------------------------------------------------------------------


def test_zero_strain_is_the_original_crystal_and_prediction_exactly(structures, cgcnn_predict):
    crystal = structures["FeO"]
    same = strained(crystal, 0.0)
    assert np.array_equal(same.lattice, crystal.lattice) and np.array_equal(same.frac_coords, crystal.frac_coords)
    (original, atoms), (again, atoms_again) = cgcnn_predict([crystal, same])
    assert original == again and np.array_equal(atoms, atoms_again)


@pytest.mark.parametrize("strain", [-0.06, 0.035])
def test_an_isotropic_strain_scales_every_distance(structures, strain):
    for crystal in (structures["Si"], structures["CsCl"]):
        before, after = pairwise_distances(crystal, 5.0), pairwise_distances(strained(crystal, strain), 5.0 * (1 + strain))
        np.testing.assert_allclose(after, before * (1 + strain), rtol=1e-12)


def test_a_shell_stretch_moves_only_that_shell(structures):
    crystal = structures["NaCl"]  # conventional cell: each Na's six Cl are three atoms, each seen through two images
    shell = first_shell(crystal, 0)
    assert len(shell.sites) == 6 and np.allclose(shell.distances, 2.82)
    repeats = shell_repeats(shell, 3)
    assert repeats is not None and np.prod(repeats) > 1
    factor = 0.05
    before, after = supercell(crystal, repeats), shell_stretched(crystal, shell, factor, repeats)
    delta = after.frac_coords - before.frac_coords
    delta -= np.round(delta)
    moved = np.flatnonzero(np.abs(delta).max(axis=1) > 1e-12)
    assert len(moved) == 6 and 0 not in moved  # six atoms, each once, the centre kept
    offsets = (before.frac_coords[moved] + delta[moved] - before.frac_coords[0])
    offsets -= np.round(offsets)
    lengths = np.linalg.norm(offsets @ after.lattice, axis=1)
    np.testing.assert_allclose(lengths, 2.82 * (1 + factor), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(delta[moved] @ after.lattice, axis=1), factor * shell.distances, rtol=1e-9)


def test_an_unstretched_supercell_gives_the_site_its_own_contribution(structures, cgcnn_predict):
    crystal = structures["CsCl"]
    shell = first_shell(crystal, 0)
    repeats = shell_repeats(shell, 3)
    (_, atoms), (_, bigger) = cgcnn_predict([crystal, shell_stretched(crystal, shell, 0.0, repeats)])
    assert bigger[0] == pytest.approx(atoms[0], abs=1e-5)


def test_a_shell_of_the_atoms_own_images_needs_three_repeats(structures):
    shell = first_shell(structures["Po"], 0)  # simple cubic: the six neighbours are the atom's own images
    assert len(shell.sites) == 6 and set(shell.sites) == {0}
    assert shell_repeats(shell, 3) == (3, 3, 3)
    assert shell_repeats(shell, 2) is None


def test_a_substitution_changes_exactly_one_atomic_number(structures):
    crystal = structures["ZnS"]
    site = int(np.flatnonzero(crystal.numbers == 16)[0])
    edited = substituted(crystal, site, 8)
    assert np.flatnonzero(edited.numbers != crystal.numbers).tolist() == [site] and edited.numbers[site] == 8
    assert np.array_equal(edited.frac_coords, crystal.frac_coords) and np.array_equal(edited.lattice, crystal.lattice)
    assert crystal.numbers[site] == 16  # the original is untouched


def test_substitution_paths_walk_the_group_and_the_period():
    oxygen, sulfur, iron = (substitution_paths(z, 2) for z in (8, 16, 26))
    assert oxygen["group"] == [(0, 8), (1, 16), (2, 34)]  # O -> S -> Se
    assert oxygen["period"] == [(-2, 6), (-1, 7), (0, 8), (1, 9)]  # C, N, O, F (no Ne: a noble gas)
    assert (-1, 8) in sulfur["group"]  # S -> O: into the held-out element
    assert (-1, 25) in iron["period"] and (1, 27) in iron["period"] and (1, 44) in iron["group"]  # Mn, Co; Ru
    assert {16, 34, 7, 9} <= neighbours_of({8}, 2) and 8 not in neighbours_of({8}, 2)


# ---- impossible structures -----------------------------------------------------------------------------------------


def test_impossible_structures_are_named(structures):
    crystal = structures["NaCl"]
    assert structure_problem(strained(crystal, -0.85), 0.5, 8.0).startswith("atoms_overlap")
    assert structure_problem(substituted(crystal, 0, 101), 0.5, 8.0).startswith("element_without_features")
    lonely = Crystal(np.eye(3) * 20.0, np.array([[0.0, 0, 0], [0.5, 0.5, 0.5]]), np.array([11, 17]))
    assert structure_problem(lonely, 0.5, 8.0).startswith("isolated_atom")
    clearance = Clearance.of(crystal, 8.0)
    assert clearance.edit_problem(strained(crystal, -0.85), 0.5, 8.0, scale=0.15).startswith("atoms_overlap")
    assert clearance.edit_problem(strained(crystal, 0.02), 0.5, 8.0, scale=1.02) is None


def test_a_rejected_structure_is_counted_for_itself(structures, cgcnn_predict):
    def picky(crystals):
        if any(c.nsites == 1 for c in crystals):
            raise RejectedStructure("isolated_atom", "a rule only the model's graph builder knows")
        return cgcnn_predict(crystals)

    results = evaluate(picky, [structures["NaCl"], structures["Po"], structures["Si"]])
    assert isinstance(results[1], str) and results[1].startswith("rejected_by_graph_builder")
    assert [isinstance(r, tuple) for r in results] == [True, False, True]


def test_too_strong_a_compression_is_counted_not_raised(tmp_path, structures, cgcnn_predict, caplog):
    materials, splits = write_study(tmp_path, structures)
    options = {**OPTIONS, "strain": {"max_percent": 90.0, "points": 5, "fit_points": 3}}
    with caplog.at_level("INFO", logger="matprobe.probes.interventions"):
        result = intervene(cgcnn_predict, "formation_energy_per_atom", materials, splits, outputs(tmp_path), options, GRAPH)
    assert result["counts"]["invalid: atoms_overlap (strain)"] >= 5  # −90 % and −45 % of every crystal
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    invalid = curves[~curves["valid"]]
    assert invalid["prediction"].isna().all() and invalid["reason"].str.startswith(("atoms_overlap", "isolated_atom")).all()
    assert curves[curves["valid"]]["prediction"].notna().all()
    logged = [r.getMessage() for r in caplog.records if "edits invalid" in r.getMessage()]
    assert len(logged) == len(result["invalid_by_crystal"])  # one line per crystal
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    strain = summary[summary["intervention"] == "strain"]
    assert (strain["reason"].str.contains("too few valid points") | strain["slope_prediction"].notna()).all()


# ---- the numbers of a curve ------------------------------------------------------------------------------------------


def test_slopes_are_finite_or_missing_with_a_reason(tmp_path, structures, cgcnn_predict):
    assert response_summary(np.array([0.0, 1.0]), np.array([1.0, 2.0]))["reason"].startswith("too few valid points")
    assert response_summary(np.array([0.0, 1.0, 2.0]), np.array([1.0, np.nan, 2.0]))["reason"].startswith("too few valid points")
    flat = response_summary(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert flat["slope"] == 0.0 and np.isnan(flat["monotonicity"]) and flat["reason"].startswith("flat")
    materials, splits = write_study(tmp_path, structures)
    intervene(cgcnn_predict, "band_gap", materials, splits, outputs(tmp_path), OPTIONS, GRAPH)
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert set(summary["intervention"]) == {"strain", "shell_stretch", "substitution"}
    applicable = {"strain": ["slope_prediction", "curvature_prediction", "monotonicity_prediction"],
                  "shell_stretch": ["slope_total", "slope_contribution", "monotonicity_total", "monotonicity_contribution"],
                  "substitution": ["slope_total", "slope_contribution", "monotonicity_total", "monotonicity_contribution"]}
    for intervention, columns in applicable.items():
        rows = summary[summary["intervention"] == intervention]
        for column in columns:
            silent = rows[column].isna() & (rows["reason"] == "")
            assert not silent.any(), (intervention, column, rows[silent])
    strain = summary[summary["intervention"] == "strain"]
    assert strain["minimum_strain_percent"].isna().all() and strain["minimum_reason"].str.startswith("not an energy").all()
    assert "band_gap" not in ENERGY_TARGETS


def test_the_minimum_of_a_parabola_like_predictor_is_recovered(tmp_path, structures):
    """E(v) = k (v − v*)² per atom, v* the volume of a +2 % strain: the fit finds +2 % and B = v*·2k."""
    k, offset = 0.05, 0.02

    def parabola(crystals):  # strained crystals only: each is known by its shape, a cell of the same shape
        out = []
        for c in crystals:
            reference = next(s for s in structures.values() if s.nsites == c.nsites and np.allclose(
                c.lattice / np.cbrt(c.volume), s.lattice / np.cbrt(s.volume)) and np.array_equal(s.numbers, c.numbers))
            target = reference.volume / reference.nsites * (1 + offset) ** 3
            energy = k * (c.volume / c.nsites - target) ** 2
            out.append((energy, np.full(c.nsites, energy)))
        return out

    strains = np.linspace(-0.06, 0.06, 13)
    v0 = 20.0
    values = k * (v0 * (1 + strains) ** 3 - v0 * (1 + offset) ** 3) ** 2
    numbers = energy_volume_summary(strains, values, v0, 5, energy=True)
    assert numbers["minimum_strain_percent"] == pytest.approx(100 * offset, abs=1e-6) and numbers["minimum_in_range"]
    assert numbers["bulk_modulus"] == pytest.approx(v0 * (1 + offset) ** 3 * 2 * k, rel=1e-6)
    falling = energy_volume_summary(strains, -strains, v0, 5, energy=True)
    assert np.isnan(falling["minimum_strain_percent"]) and "expanded end" in falling["minimum_reason"]

    materials, splits = write_study(tmp_path, structures)
    options = {**OPTIONS, "edits": ["strain"], "strain": {"max_percent": 6.0, "points": 13, "fit_points": 5}}
    intervene(parabola, "formation_energy_per_atom", materials, splits, outputs(tmp_path), options, GRAPH)
    strain = pd.read_parquet(tmp_path / "summary.parquet").query("intervention == 'strain'")
    assert len(strain) >= 4
    np.testing.assert_allclose(strain["minimum_strain_percent"], 100 * offset, atol=1e-6)
    assert strain["minimum_in_range"].all()


# ---- the stage -------------------------------------------------------------------------------------------------------


def test_an_omission_and_its_control_edit_the_same_atoms(tmp_path, structures, cgcnn_predict):
    materials, splits = write_study(tmp_path, structures)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = intervene(cgcnn_predict, "formation_energy_per_atom", materials, splits, outputs(tmp_path / "a"), OPTIONS, GRAPH)

    def shifted(crystals):
        return [(p + 1.0, c + 1.0) for p, c in cgcnn_predict(crystals)]

    intervene(shifted, "formation_energy_per_atom", materials, splits, outputs(tmp_path / "b"), OPTIONS, GRAPH)
    keys = ["set", "id", "intervention", "site", "path", "step"]
    a, b = (pd.read_parquet(tmp_path / name / "curves.parquet") for name in "ab")
    assert a[keys].equals(b[keys])
    np.testing.assert_allclose(b["prediction"] - a["prediction"], 1.0, atol=1e-9)
    # ZnS is trained on by both models (the control also tests on it: not common); its S becomes O
    into = a[a["into_held_out"]]
    assert set(into["id"]) == {"ZnS"} and set(into["substitute"]) == {"O"} and set(into["set"]) == {"train"}
    assert first["crystals_per_set"] == {"id_test": 3, "ood_test": 2, "train": 1}  # Po has no neighbour of O
    summary = pd.read_parquet(tmp_path / "a" / "summary.parquet")
    ood = summary[(summary["set"] == "ood_test") & (summary["intervention"] != "strain")]
    assert set(ood["atoms"]) == {"held_out", "other"} and set(ood.loc[ood["atoms"] == "held_out", "element"]) == {"O"}


def test_the_stage_runs_a_model_file_through_the_seam(tmp_path, structures, cgcnn_predict):
    from matprobe.models.seam import ModelRecord, TrainedModel
    from matprobe.probes.interventions import run_interventions

    mean, std = cgcnn_predict.scale
    record = ModelRecord("cgcnn", {"hidden": 8, "layers": 2, "head_hidden": 8}, "formation_energy_per_atom", mean, std, "omit-O", 0)
    torch.save(record.model_file(cgcnn_predict.model.state_dict()), tmp_path / "model.pt")
    through_seam = predictor(TrainedModel(cgcnn_predict.model, record), GRAPH)
    edited = [structures["FeO"], strained(structures["FeO"], 0.03), substituted(structures["ZnS"], 1, 8)]
    for (p, c), (q, d) in zip(through_seam(edited), cgcnn_predict(edited)):
        assert p == pytest.approx(q, abs=1e-6) and np.allclose(c, d, atol=1e-6)
    materials, splits = write_study(tmp_path, structures)
    result = run_interventions(tmp_path / "model.pt", materials, splits, outputs(tmp_path), OPTIONS, GRAPH)
    assert result["target"] == "formation_energy_per_atom" and result["counts"]["crystals"] == 6
    assert json.loads((tmp_path / "counts.json").read_text())["counts"] == result["counts"]


def test_the_figures_draw_a_pair_and_a_lone_split(tmp_path, structures, cgcnn_predict):
    from matprobe.figures.interventions import responses_figure, strain_figure

    materials, splits = write_study(tmp_path, structures)
    for name, shift in (("omit-O", 0.0), ("omit-O-control", 0.05)):
        (tmp_path / name).mkdir()
        intervene(lambda crystals: [(p + shift, c + shift) for p, c in cgcnn_predict(crystals)], "formation_energy_per_atom", materials,
                  splits, outputs(tmp_path / name), OPTIONS, GRAPH)
    pair = ["omit-O", "omit-O-control"]
    curves = [tmp_path / name / "curves.parquet" for name in pair]
    summaries = [tmp_path / name / "summary.parquet" for name in pair]
    strain_figure(pair, curves, summaries, "formation_energy_per_atom", tmp_path / "strain.png")
    responses_figure(pair, curves, "formation_energy_per_atom", tmp_path / "responses.png")
    strain_figure(pair[:1], curves[:1], summaries[:1], "band_gap", tmp_path / "strain_gap.png")
    responses_figure(pair[:1], curves[:1], "band_gap", tmp_path / "responses_alone.png")
    for name in ("strain", "responses", "strain_gap", "responses_alone"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000 and (tmp_path / f"{name}.pdf").exists()
