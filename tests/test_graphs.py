import numpy as np
import pandas as pd
import pytest
import torch

from torch_geometric.data import Batch, Data

from conftest import rocksalt
from matprobe.layout import graph_key
from matprobe.prepare.graphs import (
    ISOLATED_ATOM,
    build_graph,
    build_graphs,
    equivalent_atoms,
    load_graphs,
    neighbour_list,
    symmetry_reduced,
)
from matprobe.models.architectures import build_model
from matprobe.inputs.structures import Crystal, RejectedStructure, crystal_from_pymatgen


def _pymatgen_edges(crystal: Crystal, cutoff: float):
    centers, neighbours, images, distances = crystal.to_pymatgen().get_neighbor_list(cutoff)
    return {(int(i), int(j), *map(int, np.rint(s))): d for i, j, s, d in zip(centers, neighbours, images, distances)}


def test_radius_graph_matches_pymatgen_exactly_on_real_crystals(real_crystals):
    for name, crystal in real_crystals[:60]:
        i, j, shifts, d, vectors = neighbour_list(crystal, 5.0, None)
        ours = {(int(a), int(b), *map(int, s)): dist for a, b, s, dist in zip(i, j, shifts, d)}
        reference = _pymatgen_edges(crystal, 5.0)
        assert set(ours) == set(reference), name
        for key, distance in ours.items():
            assert distance == pytest.approx(reference[key], abs=1e-6)


def test_edge_vectors_point_from_center_to_neighbour_image(real_crystals):
    for _, crystal in real_crystals[:20]:
        graph = build_graph(crystal, 8.0, 12)
        source, target = graph["edge_index"].astype(int)
        expected = graph["pos"][source] + graph["edge_shift"] @ graph["lattice"] - graph["pos"][target]
        np.testing.assert_allclose(graph["edge_vec"], expected, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(graph["edge_vec"], axis=1), graph["edge_dist"], atol=1e-5)


def test_k_nearest_keeps_the_k_shortest_and_breaks_ties_deterministically(real_crystals):
    for name, crystal in real_crystals:
        reference = _pymatgen_edges(crystal, 8.0)
        graph = build_graph(crystal, 8.0, 12)
        source, target = graph["edge_index"].astype(int)
        for center in range(crystal.nsites):
            kept = np.sort(graph["edge_dist"][target == center])
            everything = np.sort([d for (c, *_), d in reference.items() if c == center])
            assert kept.size == min(12, everything.size), name
            np.testing.assert_allclose(kept, everything[: kept.size], atol=1e-5)
    # a perfect simple-cubic lattice has 6 nearest at a, then 12 at a*sqrt(2): the 12-neighbour graph cuts
    # through that second shell, so only the tie-break decides which 6 of the 12 stay; twice the same answer
    cubic = Crystal(np.eye(3) * 3.0, np.zeros((1, 3)), np.array([84]))
    first, second = build_graph(cubic, 8.0, 12), build_graph(cubic, 8.0, 12)
    np.testing.assert_array_equal(first["edge_shift"], second["edge_shift"])
    assert np.sum(np.isclose(first["edge_dist"], 3.0)) == 6 and np.sum(np.isclose(first["edge_dist"], 3.0 * 2**0.5)) == 6


def test_site_order_does_not_change_the_neighbour_distances(real_crystals):
    name, crystal = max(real_crystals, key=lambda item: item[1].nsites)
    permutation = np.random.default_rng(0).permutation(crystal.nsites)
    shuffled = Crystal(crystal.lattice, crystal.frac_coords[permutation], crystal.numbers[permutation])
    original, reordered = build_graph(crystal, 8.0, 12), build_graph(shuffled, 8.0, 12)
    for new_index, old_index in enumerate(permutation):
        a = np.sort(original["edge_dist"][original["edge_index"][1] == old_index])
        b = np.sort(reordered["edge_dist"][reordered["edge_index"][1] == new_index])
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_isolated_atoms_are_rejected_with_a_reason():
    lonely = Crystal(np.eye(3) * 20.0, np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), np.array([26, 8]))
    with pytest.raises(RejectedStructure) as error:
        build_graph(lonely, 8.0, 12)
    assert error.value.reason == ISOLATED_ATOM


def _materials_table(crystals: dict[str, Crystal]) -> pd.DataFrame:
    return pd.DataFrame([{"id": key, **crystal.to_row()} for key, crystal in crystals.items()])


def test_build_graphs_stores_one_loadable_file_and_counts_rejections(tmp_path, real_crystals):
    crystals = {name: crystal for name, crystal in real_crystals[:30]}
    crystals["lonely"] = Crystal(np.eye(3) * 20.0, np.array([[0.0, 0.0, 0.0]]), np.array([3]))
    _materials_table(crystals).to_parquet(tmp_path / "materials.parquet")
    summary = build_graphs(
        tmp_path / "materials.parquet", tmp_path / "g.pt", tmp_path / "rej.parquet", tmp_path / "s.json", threads=2, progress=False
    )
    assert summary["graphs"] == 30 and summary["rejected_by_reason"] == {ISOLATED_ATOM: 1}
    stored = load_graphs(tmp_path / "g.pt")  # weights_only=True inside
    assert stored["ids"] == list(crystals)[:30]
    n_atoms = sum(c.nsites for c in list(crystals.values())[:30])
    assert stored["node_ptr"][-1] == n_atoms == stored["numbers"].numel()
    assert stored["edge_ptr"][-1] == stored["edge_index"].shape[1] == stored["edge_dist"].numel()
    assert stored["edge_dist"].dtype == torch.float32 and float(stored["edge_dist"].max()) <= 8.0
    assert pd.read_parquet(tmp_path / "rej.parquet")["id"].tolist() == ["lonely"]
    # the same result with one process
    build_graphs(tmp_path / "materials.parquet", tmp_path / "g1.pt", tmp_path / "r1.parquet", tmp_path / "s1.json", threads=1, progress=False)
    single = load_graphs(tmp_path / "g1.pt")
    assert torch.equal(single["edge_index"], stored["edge_index"]) and torch.equal(single["edge_dist"], stored["edge_dist"])


def test_graph_settings_name_their_cache():
    assert graph_key({"cutoff": 8.0, "max_neighbors": 12}) == "cutoff8-nn12-v2"
    assert graph_key({"cutoff": 6.5, "max_neighbors": 12}) != graph_key({"cutoff": 8.0, "max_neighbors": 12})
    assert graph_key({"cutoff": 5, "max_neighbors": None}) == "cutoff5-nnall-v2"


def _graph_data(crystal: Crystal) -> Data:
    graph = build_graph(crystal, 8.0, 12)
    return Data(z=torch.as_tensor(crystal.numbers, dtype=torch.long), edge_index=torch.as_tensor(graph["edge_index"], dtype=torch.long),
                edge_dist=torch.as_tensor(graph["edge_dist"], dtype=torch.float32), num_nodes=crystal.nsites)


def _classes(crystal: Crystal) -> int:
    data = _graph_data(crystal)
    return int(equivalent_atoms(data.z.numpy(), data.edge_index[0].numpy(), data.edge_dist.numpy(), 12).max()) + 1


def test_equivalent_atoms_are_the_symmetry_equivalent_sites(real_crystals):
    assert _classes(crystal_from_pymatgen(rocksalt(5.64))) == 2  # 8-atom conventional cell: one Na and one Cl orbit
    _, crystal = real_crystals[3]
    supercell = crystal.to_pymatgen()
    supercell.make_supercell([2, 1, 1])
    assert _classes(crystal_from_pymatgen(supercell)) == _classes(crystal)
    rattled = Crystal(crystal.lattice, crystal.frac_coords + np.random.default_rng(0).normal(0, 0.01, crystal.frac_coords.shape), crystal.numbers)
    assert _classes(rattled) == crystal.nsites  # no symmetry left: nothing is merged


@pytest.mark.parametrize("model_name, options", [("cgcnn", {}), ("cgcnn", {"norm": "layer"}), ("schnet", {})])
def test_symmetry_reduced_graphs_give_the_full_graph_predictions(real_crystals, model_name, options):
    full = [_graph_data(crystal) for _, crystal in real_crystals[:60]]
    reduced = [symmetry_reduced(graph) for graph in full]
    atoms, kept = sum(g.num_nodes for g in full), sum(g.num_nodes for g in reduced)
    assert kept < 0.8 * atoms
    assert all(float(r.atom_weight.sum()) == g.num_nodes for g, r in zip(full, reduced))
    torch.manual_seed(0)
    model = build_model(model_name, options).eval()
    with torch.no_grad():
        expected = model(Batch.from_data_list(full))
        got = model(Batch.from_data_list(reduced))
    torch.testing.assert_close(got["prediction"], expected["prediction"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["latent"], expected["latent"], rtol=1e-4, atol=1e-5)
