"""Probe maps: periodic, invariant under the crystal's symmetry, equal to a site's own contribution where the probe
replaces that site's atom, and built from the same graphs as training."""

import numpy as np
import pytest
import torch

from matprobe.prepare.graphs import build_graph
from matprobe.models.architectures import build_model
from matprobe.models.seam import CrystalGraphs, ModelRecord, TrainedModel
from matprobe.probes.probe_maps import plane_positions, predict_atoms, probe_map, with_probe
from matprobe.inputs.structures import crystal_from_pymatgen

CUTOFF, K = 8.0, 12
GRAPH = {"cutoff": CUTOFF, "max_neighbors": K}


def crystal_graphs(crystals, cutoff, max_neighbors):
    return CrystalGraphs().from_crystals(crystals, {"cutoff": cutoff, "max_neighbors": max_neighbors})


@pytest.fixture(scope="module", params=["cgcnn", "schnet"])
def model(request):
    torch.manual_seed(0)
    net = build_model(request.param, {"hidden": 8, "layers": 2} if request.param == "cgcnn" else {"hidden": 8, "filters": 8, "interactions": 2})
    return TrainedModel(net, ModelRecord(request.param, {}, "formation_energy_per_atom", -1.0, 0.7, "test", 0))


@pytest.fixture(scope="module")
def perovskite():
    from pymatgen.core import Lattice, Structure

    return crystal_from_pymatgen(Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]))


def test_the_map_is_periodic(model, perovskite):
    rng = np.random.default_rng(0)
    frac = rng.random((20, 3))
    shifted = frac + rng.integers(-2, 3, size=(20, 3))
    a = probe_map(model, perovskite, frac, 8, GRAPH, mask_distance=0.8)
    b = probe_map(model, perovskite, shifted, 8, GRAPH, mask_distance=0.8)
    assert a["masked"].sum() < 15
    np.testing.assert_allclose(a["probe_contribution"], b["probe_contribution"], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(a["total_change"], b["total_change"], atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("max_neighbors", [K, None])
def test_symmetry_equivalent_positions_give_equal_values(model, perovskite, max_neighbors):
    """The probe's own contribution is invariant on the training graphs. The crystal's total is invariant on radius
    graphs; on k-nearest graphs an atom whose k-th shell is tied keeps an index-ordered subset of it (graphs.py), and
    a probe placed at equivalent positions can tip which, moving the total by ~1e-3 of the target's units."""
    import spglib

    cell = (perovskite.lattice, perovskite.frac_coords, perovskite.numbers)
    symmetry = spglib.get_symmetry(cell, symprec=1e-5)
    rng = np.random.default_rng(1)
    frac = rng.random((6, 3))
    reference = probe_map(model, perovskite, frac, 8, {"cutoff": CUTOFF, "max_neighbors": max_neighbors}, mask_distance=0.8)
    for rotation, translation in list(zip(symmetry["rotations"], symmetry["translations"]))[::7]:
        moved = probe_map(model, perovskite, frac @ rotation.T + translation, 8, {"cutoff": CUTOFF, "max_neighbors": max_neighbors}, mask_distance=0.8)
        np.testing.assert_allclose(moved["probe_contribution"], reference["probe_contribution"], atol=1e-5, equal_nan=True)
        if max_neighbors is None:  # a sum over every atom in float32: 1e-5 per atom
            np.testing.assert_allclose(moved["total_change"], reference["total_change"], atol=1e-4, equal_nan=True)


def test_a_probe_where_a_removed_atom_was_gets_that_atoms_contribution(model, perovskite):
    from matprobe.inputs.structures import Crystal

    _, (atoms,) = predict_atoms(model, [perovskite], GRAPH)
    for site in range(perovskite.nsites):
        keep = np.arange(perovskite.nsites) != site
        without = Crystal(perovskite.lattice, perovskite.frac_coords[keep], perovskite.numbers[keep])
        frame = probe_map(model, without, perovskite.frac_coords[[site]], int(perovskite.numbers[site]), GRAPH, mask_distance=0.5)
        assert frame["probe_contribution"].item() == pytest.approx(atoms[site], abs=1e-5)


def test_the_probe_graph_is_the_graph_builders(perovskite):
    probe = with_probe(perovskite, [0.25, 0.1, 0.4], 8)
    (graph,) = crystal_graphs([probe], CUTOFF, K)
    built = build_graph(probe, CUTOFF, K)
    assert torch.equal(graph.edge_index, torch.from_numpy(built["edge_index"]).long())
    assert torch.equal(graph.edge_dist, torch.from_numpy(built["edge_dist"]))
    # and the probe's place in the site order changes no atom's kept (distance, element) neighbours
    from matprobe.inputs.structures import Crystal

    first = Crystal(probe.lattice, np.roll(probe.frac_coords, 1, axis=0), np.roll(probe.numbers, 1))
    (reordered,) = crystal_graphs([first], CUTOFF, K)

    def shells(g, numbers):
        rounded = np.round(g.edge_dist.numpy(), 4)
        source, target = g.edge_index.numpy()
        return sorted(zip(numbers[target], numbers[source], rounded))

    assert shells(reordered, first.numbers) == shells(graph, probe.numbers)


def test_plane_positions_lie_on_the_plane(perovskite):
    frac, st = plane_positions(perovskite, [1, 1, 0], 0.5, 7)
    assert frac.shape == (49, 3) and st.shape == (49, 2)
    np.testing.assert_allclose(frac @ np.array([1, 1, 0]), 0.5)


def test_the_figure_draws_plane_and_3d_grid_maps(model, perovskite, tmp_path):
    import pandas as pd

    from matprobe.figures.probe_maps import probe_map_figure
    from matprobe.probes.probe_maps import grid_positions, in_plane_coordinates

    frac, st = plane_positions(perovskite, [0, 0, 1], 0.0, 6)
    plane = probe_map(model, perovskite, frac, 8, GRAPH, mask_distance=0.8)
    plane.insert(0, "s", st[:, 0])
    plane.insert(1, "t", st[:, 1])
    plane[["plane_x", "plane_y"]] = in_plane_coordinates(perovskite, [0, 0, 1], frac)
    cube = probe_map(model, perovskite, grid_positions(4), 8, GRAPH, mask_distance=0.8)
    paths = []
    for name, frame in (("plane", plane), ("cube", cube)):
        frame.assign(role="ood_median", id="SrTiO3", probe="O", probe_kind="held_out").to_parquet(tmp_path / f"{name}.parquet")
        paths.append(tmp_path / f"{name}.parquet")
    empty = pd.DataFrame(columns=["site", "Z", "plane_x", "plane_y", "distance_to_plane", "role", "id", "probe", "probe_kind"])
    empty.to_parquet(tmp_path / "atoms.parquet")
    probe_map_figure(["omit-O", "omit-O-control"], paths, [tmp_path / "atoms.parquet"] * 2, "formation_energy_per_atom", tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 10_000 and (tmp_path / "maps.pdf").exists()


PLANE = {"hkl": [0, 0, 1], "margin": 1.5}


def test_a_plane_through_three_sites_passes_through_them_and_is_the_lattice_plane_they_span(perovskite):
    """Ti (½ ½ ½) and the O atoms at (½ ½ 0) and (½ 0 ½) span the lattice plane x = ½: every position of the map lies
    on it, the three atoms are drawn on it and Sr (at x = 0, 1.95 Å away) is not."""
    from matprobe.probes.probe_maps import map_plane

    numbers = perovskite.numbers.tolist()
    titanium = numbers.index(22)
    oxygens = [k for k, z in enumerate(numbers) if z == 8 and abs(perovskite.frac_coords[k, 0] - 0.5) < 1e-9]
    plane = map_plane(perovskite, {**PLANE, "through": {"sites": [titanium, *oxygens]}}, 8, "SrTiO3")
    frac, st = plane.positions(9)
    assert frac.shape == (81, 3) and st.min() == 0 and st.max() == 1
    np.testing.assert_allclose((frac[:, 0] % 1), 0.5, atol=1e-12)
    drawn = plane.atoms()
    assert {titanium, *oxygens} <= set(drawn["site"])
    assert drawn["distance_to_plane"].max() < 1e-9 and 38 not in drawn["Z"].tolist()
    xy = plane.in_plane(frac)
    np.testing.assert_allclose(xy.min(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(xy.max(axis=0), plane.side)
    assert plane.side == pytest.approx(1.95 + 2 * 1.5)  # the Ti–O–O' triangle spans a/2 = 1.95 Å each way


def test_the_plane_of_a_bond_angle_skips_a_collinear_neighbour(perovskite):
    """O in SrTiO3 sits between two Ti atoms on one line (1.95 Å each way), so its plane goes through O, one Ti and
    the nearest atom off that line: Sr and O both lie 2.76 Å away, and the lower site index, Sr, is taken. The map
    passes through all three."""
    from matprobe.probes.probe_maps import map_plane, nearest_atom_distance

    plane = map_plane(perovskite, {**PLANE, "through": "probe_site_neighbours"}, 8, "SrTiO3")
    assert [int(perovskite.numbers[k]) for k in plane.sites] == [8, 22, 38]
    frac, _ = plane.positions(41)
    distance, _ = nearest_atom_distance(perovskite, frac)
    on_plane = plane.atoms()
    assert set(plane.sites) <= set(on_plane["site"])
    assert distance.min() < 0.2  # the grid passes by the atoms it goes through
    normal = np.cross(plane.e1, plane.e2)
    np.testing.assert_allclose((frac @ perovskite.lattice - plane.corner) @ normal, 0, atol=1e-9)


def test_three_sites_that_fix_no_plane_are_refused_in_one_line(perovskite):
    from matprobe import MatprobeError
    from matprobe.probes.probe_maps import SitesPlane, map_plane

    sites = perovskite.numbers.tolist()
    titanium = sites.index(22)
    oxygen_below = next(k for k, z in enumerate(sites) if z == 8 and abs(perovskite.frac_coords[k, 2]) < 1e-9)
    with pytest.raises(MatprobeError, match=r"probe_maps.plane.through.sites: site 9 does not exist in SrTiO3 \(5 sites"):
        map_plane(perovskite, {**PLANE, "through": {"sites": [0, 1, 9]}}, 8, "SrTiO3")
    # Ti (½ ½ ½), the O below it (½ ½ 0) and that O's image above (½ ½ 1) lie on one line
    with pytest.raises(MatprobeError, match="collinear in SrTiO3"):
        SitesPlane.through(perovskite, (titanium, oxygen_below, oxygen_below), (np.zeros(3), np.zeros(3), np.array([0, 0, 1.0])), 1.0, "SrTiO3")
