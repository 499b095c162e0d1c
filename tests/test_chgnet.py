"""CHGNet behind the model seam (matprobe.models.chgnet): its outputs against chgnet's own predictions, the formation
references, and what a landscape or Hessian needs of its parameters."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, vmap

from matprobe import MatprobeError
from matprobe.inputs.sources import EMBEDDED_FILE
from matprobe.inputs.structures import Crystal, crystal_from_pymatgen
from matprobe.prepare.graphs import build_graph, collate_graphs

pytest.importorskip("chgnet")
from matprobe.models.chgnet import (ELEMENTAL, LEAST_SQUARES, UNREFERENCED, CHGNetEnergy, CHGNetGraphs,  # noqa: E402
                                    composition_fractions, energies_per_atom, fit_references, pretrained,
                                    unreferenced_atoms)

# small demo crystals of different chemistry (oxides, an intermetallic, a fluoride, an elemental solid)
DEMO_COUNT = 8


@pytest.fixture(scope="module")
def demo():
    frame = pd.read_parquet(EMBEDDED_FILE)
    frame = frame[frame["numbers"].apply(len) <= 6].sample(DEMO_COUNT, random_state=3).reset_index(drop=True)
    crystals = [Crystal.from_row(row) for row in frame.to_dict("records")]
    stored = collate_graphs(list(frame["id"]), [build_graph(c, 8.0, 12) for c in crystals], {"cutoff": 8.0, "max_neighbors": 12})
    return frame, crystals, stored


@pytest.fixture(scope="module")
def model():
    return pretrained({"version": "0.3.0"})


@pytest.fixture(autouse=True)
def unfitted(model):
    """Each test starts from (and leaves) the published model with no formation references fitted."""
    model.formation_reference.zero_()
    model.reference_source.zero_()
    yield
    model.formation_reference.zero_()
    model.reference_source.zero_()


@pytest.fixture(scope="module")
def items(model, demo):
    frame, _, stored = demo
    return model.graph_kind.from_stored(stored, list(frame["id"]), frame["formation_energy_per_atom"].to_numpy())


def test_contributions_average_to_the_prediction_and_come_from_the_head(model, items):
    model.formation_reference.copy_(torch.linspace(-3, 1, model.formation_reference.numel()))
    batch = model.graph_kind.collate(items)
    with torch.no_grad():
        out = model(batch)
    assert out["prediction"].shape == (len(items),)
    assert out["atoms"].shape == (batch.num_nodes, 64) and out["latent"].shape == (len(items), 64)
    assert batch.num_nodes == sum(item.num_nodes for item in items) == int(batch.z.numel())
    for k in range(len(items)):
        mine = batch.batch == k
        assert torch.isclose(out["contributions"][mine].mean(), out["prediction"][k], atol=1e-6)
        assert torch.allclose(out["atoms"][mine].mean(dim=0), out["latent"][k], atol=1e-6)
    with torch.no_grad():
        assert torch.equal(model.head(out["atoms"], batch.z), out["contributions"])
    with pytest.raises(MatprobeError, match="atomic numbers"):
        model.head(out["atoms"])


def test_predictions_are_chgnet_energies_per_atom_minus_the_references(model, demo, items):
    from chgnet.model import CHGNet

    _, crystals, _ = demo
    with contextlib.redirect_stdout(io.StringIO()):
        reference_model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    with warnings.catch_warnings():
        # pymatgen warns that noble gases have no electronegativity when chgnet labels the graph with its formula
        warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
        # chgnet's own graphs keep the lattice differentiable (for stresses), and its batching reads the volume
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar", category=UserWarning)
        energies = np.array([float(p["e"]) for p in reference_model.predict_structure(
            [c.to_pymatgen() for c in crystals], task="e", batch_size=DEMO_COUNT)])
    references = torch.zeros_like(model.formation_reference)
    references[1:] = torch.linspace(-9.0, -1.0, references.numel() - 1)
    model.formation_reference.copy_(references)
    with torch.no_grad():
        prediction = model(model.graph_kind.collate(items))["prediction"].double().numpy()
    expected = energies - composition_fractions(items) @ references.double().numpy()
    # stored positions are float32: the graphs are CHGNet's of the same crystal up to ~1e-6 A
    np.testing.assert_allclose(prediction, expected, atol=2e-5)
    assert np.ptp(expected) > 0.1  # the crystals differ, so the comparison says something


def test_stored_and_direct_graphs_agree(model, demo, items):
    _, crystals, _ = demo
    direct = model.graph_kind.from_crystals(crystals, {"cutoff": 8.0, "max_neighbors": 12})
    for a, b in zip(items, direct):
        assert torch.equal(a.graph.atomic_number, b.graph.atomic_number)
        assert a.graph.atom_graph.shape == b.graph.atom_graph.shape and a.graph.bond_graph.shape == b.graph.bond_graph.shape
    with torch.no_grad():
        stored_out = model(model.graph_kind.collate(items))["prediction"]
        direct_out = model(model.graph_kind.collate(direct))["prediction"]
    assert torch.allclose(stored_out, direct_out, atol=2e-5)
    assert torch.isnan(model.graph_kind.collate(direct).y).all()  # edited crystals have no target


def test_references_are_fitted_by_least_squares_and_absent_elements_are_named(model, items):
    """Targets made from known references are reproduced; an element missing from the fitting set stays
    unreferenced and its atoms are counted."""
    with torch.no_grad():
        raw = model(model.graph_kind.collate(items))["prediction"].double().numpy()
    fractions = composition_fractions(items)
    known = np.zeros(fractions.shape[1])
    known[1:] = np.linspace(-7.0, -2.0, known.size - 1)
    summary = fit_references(model, items, targets=raw - fractions @ known)
    assert summary["crystals"] == len(items) and summary["rms_residual"] < 1e-4
    with torch.no_grad():
        refitted = model(model.graph_kind.collate(items))["prediction"].double().numpy()
    np.testing.assert_allclose(refitted, raw - fractions @ known, atol=1e-4)
    assert not unreferenced_atoms(model, items)
    np.testing.assert_allclose(energies_per_atom(model, items), raw, atol=1e-5)  # whatever the references

    # leave out the crystals of the element in most of them: it is not referenced, and its atoms are counted
    counts = (fractions > 0).sum(axis=0)
    counts[counts == len(items)] = 0  # an element in every crystal cannot be left out
    left_out = int(np.argmax(counts))
    keep = [item for item, f in zip(items, fractions) if f[left_out] == 0]
    summary = fit_references(model, keep)
    assert model.reference_source[left_out] == UNREFERENCED and float(model.formation_reference[left_out]) == 0.0
    from pymatgen.core.periodic_table import Element

    symbol = Element.from_Z(left_out).symbol
    assert symbol in summary["unreferenced"] and symbol not in summary["least_squares"]
    expected_atoms = sum(int((item.graph.atomic_number == left_out).sum()) for item in items)
    assert unreferenced_atoms(model, items)[symbol] == expected_atoms


def test_an_absent_element_takes_chgnets_energy_of_its_lowest_elemental_crystal(model, crystals):
    """Fe and O are absent from the fit; two bcc Fe crystals are given (their targets unread): mu_Fe is CHGNet's
    lower energy per atom of the two; O, with no elemental crystal, stays unreferenced."""
    from pymatgen.core import Lattice, Structure

    kind = model.graph_kind
    fit_set = kind.from_crystals([crystal_from_pymatgen(crystals[name]) for name in ("NaCl", "CsCl", "Si")])
    iron = [crystal_from_pymatgen(Structure(Lattice.cubic(a), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])) for a in (3.1, 2.85)]
    elemental = kind.from_crystals(iron + [crystal_from_pymatgen(crystals["FeO"])])  # FeO: not elemental, ignored
    summary = fit_references(model, fit_set, targets=np.array([-2.0, -2.1, 0.0]), elemental=elemental)
    iron_energies = energies_per_atom(model, elemental[:2])
    assert iron_energies[1] < iron_energies[0]  # near the equilibrium lattice constant: the ground state of the two
    assert model.reference_source[26] == ELEMENTAL and model.reference_source[11] == LEAST_SQUARES
    assert float(model.formation_reference[26]) == pytest.approx(iron_energies.min(), abs=1e-5)
    assert summary["elemental"] == {"Fe": pytest.approx(iron_energies.min(), abs=1e-4)}
    assert "O" in summary["unreferenced"] and "Fe" not in summary["unreferenced"]
    feo = kind.from_crystals([crystal_from_pymatgen(crystals["FeO"])])
    assert unreferenced_atoms(model, feo) == {"O": 4}  # the conventional rock-salt cell: Fe4O4


def test_references_are_buffers_and_the_energy_needs_every_parameter(model, items):
    state = model.state_dict()
    assert {"formation_reference", "reference_source", "composition_energy"} <= set(state)
    names = dict(model.named_parameters())
    assert not any("reference" in n or "composition" in n or "site_wise" in n for n in names)
    # CHGNet 0.3.0's 412,525 less its composition energies (94), magnetic-moment head (65) and last angle update (33,152)
    assert sum(p.numel() for p in names.values()) == 379_214

    out = model(model.graph_kind.collate(items[:4]))
    out["prediction"].abs().sum().backward()
    without = [n for n, p in names.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not without, f"parameters the energy does not depend on: {without}"
    model.zero_grad()


def test_parameters_moved_through_functional_call_move_the_prediction(model, items):
    batch = model.graph_kind.collate(items[:3])
    params = {n: p.detach() for n, p in model.named_parameters()}
    with torch.no_grad():
        base = functional_call(model, params, (batch,))["prediction"]
        again = functional_call(model, params, (batch,))["prediction"]
        moved = functional_call(model, {n: p * 1.05 if p.dim() > 1 else p for n, p in params.items()}, (batch,))["prediction"]
        plain = model(batch)["prediction"]
    assert torch.equal(base, again) and torch.equal(base, plain)  # eval mode: deterministic
    assert (moved - base).abs().min() > 1e-4


def test_vmap_over_parameter_sets_matches_one_at_a_time(model, items):
    """The landscape evaluates several grid points in one pass with vmap over stacked parameters."""
    batch = model.graph_kind.collate(items[:2])
    params = {n: p.detach() for n, p in model.named_parameters() if p.dim() > 1}
    scales = torch.tensor([1.0, 0.97])
    stacked = {n: torch.stack([p * s for s in scales]) for n, p in params.items()}
    with torch.no_grad():
        together = vmap(lambda ps: functional_call(model, ps, (batch,), strict=False)["prediction"], randomness="error")(stacked)
        apart = torch.stack([functional_call(model, {n: p * s for n, p in params.items()}, (batch,), strict=False)["prediction"]
                             for s in scales])
    assert torch.allclose(together, apart, atol=1e-5)
    # so the landscape vmaps it as asked (unlike ALIGNN, whose class opts out with supports_vmap = False)
    from matprobe.probes.landscape import points_per_pass_for

    assert points_per_pass_for(model, 16) == 16


def test_bad_options_and_isolated_atoms_are_one_line_errors():
    with pytest.raises(MatprobeError, match="version '9.9'"):
        pretrained({"version": "9.9"})
    lonely = Crystal(lattice=np.eye(3) * 8.0, frac_coords=np.zeros((1, 3)), numbers=np.array([3]))
    with pytest.raises(MatprobeError, match="no neighbour within CHGNet's 6.0 A cutoff"):
        CHGNetGraphs().from_crystals([lonely])


def test_the_module_round_trips_through_a_weights_only_state_dict(model, items, tmp_path):
    model.formation_reference[8] = -4.5
    model.reference_source[8] = LEAST_SQUARES
    torch.save(model.state_dict(), tmp_path / "chgnet.pt")
    fresh = pretrained({})
    assert isinstance(fresh, CHGNetEnergy) and not fresh.reference_source.any()
    fresh.load_state_dict(torch.load(tmp_path / "chgnet.pt", weights_only=True))
    assert float(fresh.formation_reference[8]) == -4.5 and int(fresh.reference_source[8]) == LEAST_SQUARES
    batch = model.graph_kind.collate(items[:2])
    with torch.no_grad():
        assert torch.equal(fresh(batch)["prediction"], model(batch)["prediction"])
