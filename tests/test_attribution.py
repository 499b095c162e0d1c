"""Attribution methods and topological descriptors."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from matprobe.probes.attribution import (
    atom_contributions,
    element_embedding_analysis,
    integrated_gradients,
    partial_spearman,
    run_attribution,
    trim_attributions,
)
from matprobe.inputs.features import physical_feature_layout
from matprobe.prepare.graphs import build_graph, collate_graphs
from matprobe.models.architectures import CrystalModel, ElementEncoder, GaussianExpansion
from matprobe.inputs.structures import Crystal
from matprobe.probes.topology import DESCRIPTORS, crystal_descriptor, neighbourhood_clouds, persistence_diagrams
from matprobe.prepare.sets import CrystalSet, graph_data, load_split_data
from matprobe.models.seam import ModelRecord, TrainedModel, load_trained

TARGET = "formation_energy_per_atom"


@pytest.fixture(scope="module")
def trained(small, tiny_model):
    torch.set_flush_denormal(True)
    trained = load_trained(tiny_model)
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    return trained, sets


def _sets_of(crystals: dict[str, Crystal]):
    ids = list(crystals)
    stored = collate_graphs(ids, [build_graph(c, 8.0, 12) for c in crystals.values()], {"cutoff": 8.0, "max_neighbors": 12})
    y = np.zeros(len(ids))
    return {"id_test": CrystalSet("id_test", ids, y, [[] for _ in ids], graph_data(stored, ids, y))}


def test_atom_contributions_average_to_the_prediction(trained):
    trained, sets = trained
    model, record = trained.module, trained.record
    atoms, worst = atom_contributions(trained, sets)
    assert worst < 1e-4
    predictions = {}
    from torch_geometric.loader import DataLoader

    for set_name in ("id_test", "ood_test"):
        for batch in DataLoader(sets[set_name].graphs, batch_size=1000):
            with torch.no_grad():
                values = record.to_physical(model(batch)["prediction"])
            predictions.update(dict(zip(sets[set_name].ids, values.tolist())))
    means = atoms.groupby("id")["contribution"].mean()
    np.testing.assert_allclose(means.to_numpy(), [predictions[i] for i in means.index], atol=1e-4)
    assert set(atoms.loc[atoms["set"] == "ood_test", "id"]) == set(sets["ood_test"].ids)


@pytest.mark.parametrize("baseline", ["zeros", "train_mean"])
def test_integrated_gradients_are_complete(trained, baseline):
    trained, sets = trained
    model = trained.module
    mean_input = model.node_inputs(torch.cat([d.z for d in sets["train"].graphs])).mean(dim=0, keepdim=True).detach()
    atoms, residuals = integrated_gradients(trained, sets, baseline, steps=32, train_mean_input=mean_input)
    assert len(atoms) == sum(d.num_nodes for s in ("id_test", "ood_test") for d in sets[s].graphs)
    assert residuals.max() < 1e-3 * max(1.0, float(atoms["attribution"].abs().max()))


def test_steps_per_pass_changes_memory_not_the_attributions(trained):
    trained, sets = trained
    model = trained.module
    one_pass, _ = integrated_gradients(trained, sets, steps=12, steps_per_pass=12)
    chunked, _ = integrated_gradients(trained, sets, steps=12, steps_per_pass=5)  # 5 + 5 + 2
    np.testing.assert_allclose(chunked["attribution"], one_pass["attribution"], rtol=1e-4, atol=1e-6)
    trim_one = trim_attributions(trained, sets, "distance_bands", steps=12, steps_per_pass=12)
    trim_chunked = trim_attributions(trained, sets, "distance_bands", steps=12, steps_per_pass=5)
    np.testing.assert_allclose(trim_chunked["attribution"], trim_one["attribution"], rtol=1e-4, atol=1e-6)
    assert trim_one["attribution"].abs().max() > 1e-3  # not trivially equal


def test_attributions_do_not_depend_on_site_order_or_the_choice_of_cell(trained, real_crystals):
    trained, _ = trained
    _, crystal = next((name, c) for name, c in real_crystals if 4 <= c.nsites <= 12 and len(set(c.numbers.tolist())) > 1)
    permutation = np.random.default_rng(1).permutation(crystal.nsites)
    shuffled = Crystal(crystal.lattice, crystal.frac_coords[permutation], crystal.numbers[permutation])
    supercell_lattice = crystal.lattice * np.array([[2.0], [1.0], [1.0]])
    supercell_frac = np.vstack([crystal.frac_coords * [0.5, 1, 1], crystal.frac_coords * [0.5, 1, 1] + [0.5, 0, 0]])
    supercell = Crystal(supercell_lattice, supercell_frac, np.concatenate([crystal.numbers, crystal.numbers]))
    sets = _sets_of({"original": crystal, "shuffled": shuffled, "supercell": supercell})
    atoms, _ = atom_contributions(trained, sets)
    ig, _ = integrated_gradients(trained, sets, "zeros", steps=32)
    for table, column in ((atoms, "contribution"), (ig, "attribution_times_nsites")):
        by_element = table.groupby(["id", "element"])[column].mean().unstack()
        np.testing.assert_allclose(by_element.loc["shuffled"], by_element.loc["original"], atol=1e-4)
        np.testing.assert_allclose(by_element.loc["supercell"], by_element.loc["original"], atol=1e-4)
    original = atoms[atoms["id"] == "original"].sort_values("site")["contribution"].to_numpy()
    reordered = atoms[atoms["id"] == "shuffled"].sort_values("site")["contribution"].to_numpy()
    np.testing.assert_allclose(reordered, original[permutation], atol=1e-4)


class _OnlyProperty(CrystalModel):
    """Predicts from one property block of the node inputs, or one distance band of the edge inputs."""

    def __init__(self, property_name=None, band=None):
        super().__init__()
        self.encoder = ElementEncoder("physical", 4)
        self.expansion = GaussianExpansion(0.0, 8.0, 41, width=0.2)
        self.property_name, self.band = property_name, band
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, self.encoder.table.shape[1]))

    def forward_from_inputs(self, node_inputs, edge_inputs, edge_index, edge_dist, batch, num_graphs, neighbors=None, atom_weight=None):
        if self.property_name:
            columns = dict(physical_feature_layout())[self.property_name]
            per_atom = (node_inputs[:, columns] * self.weight[columns]).sum(dim=1) ** 2
        else:
            centres = self.expansion.centres
            in_band = (centres >= self.band[0]) & (centres < self.band[1])
            per_edge = edge_inputs[:, in_band].sum(dim=1)
            per_atom = torch.zeros(node_inputs.shape[0]).index_add(0, edge_index[1], per_edge)
        counts = torch.bincount(batch, minlength=num_graphs).float()
        prediction = torch.zeros(num_graphs).index_add(0, batch, per_atom) / counts
        return {"prediction": prediction, "contributions": per_atom, "latent": prediction[:, None]}


def _as_trained(module) -> TrainedModel:
    """A module behind the model seam with unit standardisation: its outputs are already physical."""
    return TrainedModel(module, ModelRecord("toy", {}, TARGET, 0.0, 1.0, "omit-O", 0))


def test_trim_recovers_the_one_property_a_toy_model_uses(trained):
    _, sets = trained
    trim = trim_attributions(_as_trained(_OnlyProperty("electronegativity")), sets, "properties", steps=32)
    share = trim.groupby("name")["attribution"].apply(lambda a: a.abs().sum())
    assert share.idxmax() == "electronegativity" and share.drop("electronegativity").max() < 1e-6
    trim = trim_attributions(_as_trained(_OnlyProperty(band=(2.5, 3.0))), sets, "distance_bands", steps=32)
    share = trim.groupby("name")["attribution"].apply(lambda a: a.abs().sum())
    assert share.idxmax() == "2.5-3 Å" and share.drop("2.5-3 Å").max() < 1e-6
    # completeness in the domain space: a crystal's attributions add up to f(x) - f(band switched off) = f(x) here
    from torch_geometric.loader import DataLoader

    toy, expected = _OnlyProperty(band=(2.5, 3.0)), {}
    for set_name in ("id_test", "ood_test"):
        batch = next(iter(DataLoader(sets[set_name].graphs, batch_size=10_000)))
        with torch.no_grad():
            expected.update(dict(zip(sets[set_name].ids, toy(batch)["prediction"].tolist())))
    totals = trim.groupby("id")["attribution"].sum()
    np.testing.assert_allclose(totals.to_numpy(), [expected[i] for i in totals.index], rtol=1e-4, atol=1e-5)
    assert totals.abs().max() > 0


def test_element_representation_analysis(trained):
    trained, sets = trained
    model = trained.module
    seen = {e for elements in sets["train"].elements for e in elements}
    frame, summary = element_embedding_analysis(model, seen, seen | {"O"}, ["O"])
    assert {"pc1", "pc2", "group", "period"} <= set(frame.columns)
    assert not frame.loc[frame["symbol"] == "O", "seen_in_training"].item()
    assert set(summary["properties"]) == {"group", "period", "electronegativity", "mendeleev_number"}
    assert "F" in summary["omitted"]["O"]["periodic_neighbours"] or "N" in summary["omitted"]["O"]["periodic_neighbours"]


def test_persistent_homology_of_a_simple_cubic_lattice():
    a = 3.0
    cubic = Crystal(np.eye(3) * a, np.zeros((1, 3)), np.array([84]))
    diagrams = persistence_diagrams(neighbourhood_clouds(cubic, 7.0)[0], 3.5)
    finite_h0 = diagrams[0][diagrams[0][:, 1] < 3.5]
    np.testing.assert_allclose(finite_h0[:, 1], a / 2, atol=1e-6)  # neighbours join when balls of a/2 touch
    np.testing.assert_allclose(diagrams[1], np.tile([a / 2, a / np.sqrt(2)], (len(diagrams[1]), 1)), atol=1e-6)  # square rings
    voids = diagrams[2][np.isclose(diagrams[2][:, 0], a / np.sqrt(2))]
    assert len(voids) == 8  # the 8 cubes around the centre atom: voids from a/sqrt(2) to the cube's circumradius
    np.testing.assert_allclose(voids[:, 1], a * np.sqrt(3) / 2, atol=1e-6)
    descriptor = crystal_descriptor(cubic, 5.0)
    assert descriptor.shape == (len(DESCRIPTORS),)
    # scaling the lattice scales every birth and death
    bigger = crystal_descriptor(Crystal(np.eye(3) * 2 * a, np.zeros((1, 3)), np.array([84])), 10.0)
    index = DESCRIPTORS.index("h1_mean_death")
    assert bigger[index] == pytest.approx(2 * descriptor[index])


def test_partial_spearman_removes_a_correlation_that_runs_through_the_target():
    # Metals (gap 0) vs insulators: the descriptor and the error both follow the gap, not each other.
    rng = np.random.default_rng(0)
    gap = np.where(rng.random(4000) < 0.4, 0.0, rng.gamma(2.0, 1.0, 4000))
    descriptor = -gap + rng.normal(0, 0.5, 4000)
    error = 0.2 * gap + rng.exponential(0.1, 4000)
    from scipy.stats import spearmanr

    assert spearmanr(descriptor, error).statistic < -0.5
    assert abs(partial_spearman(descriptor, error, gap)) < 0.05
    # a descriptor that drives the error directly keeps its correlation with the target held fixed
    driver = rng.normal(0, 1, 4000)
    assert partial_spearman(driver, 0.2 * gap + np.exp(driver), gap) > 0.5
    assert np.isnan(partial_spearman(np.ones(10), np.arange(10.0), np.arange(10.0)))


def test_attribution_stage_writes_every_output(small, tiny_model, tmp_path):
    from matprobe.probes.topology import compute_topology
    from matprobe.config import validate_config

    compute_topology(small / "materials.parquet", tmp_path / "ph.parquet", tmp_path / "ph.json", threads=2, progress=False)
    options = validate_config({"attribution": {"max_crystals": 30, "ig_steps": 8}})["attribution"]
    model_dir = tiny_model.parent
    summary = run_attribution(tiny_model, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json",
                              model_dir / "predictions.parquet", model_dir / "latents.parquet", tmp_path / "ph.parquet", tmp_path / "out", options)
    for name in ("atoms", "elements", "element_pca", "ig_atoms", "ig_elements", "trim", "trim_summary", "topology_correlations"):
        assert not pd.read_parquet(tmp_path / "out" / f"{name}.parquet").empty, name
    correlations = pd.read_parquet(tmp_path / "out" / "topology_correlations.parquet")
    assert set(correlations["against"]) == {"abs_error", "latent_distance", "abs_error_given_target"}
    assert len(summary["topology_top_error_correlations_given_target"]) == 3
    assert summary["contributions"]["completeness_max_abs_residual"] < 1e-4
    assert summary["omitted"] == ["O"] and "O" in summary["element_representation"]["omitted"]
    elements = pd.read_parquet(tmp_path / "out" / "elements.parquet")
    assert elements.loc[elements["element"] == "O", "omitted"].all()
    assert set(elements.loc[elements["element"] == "O", "set"]) == {"ood_test"}
