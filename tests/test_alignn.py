"""ALIGNN behind the model seam (matprobe.models.alignn): the alignn package's own model on our cached graphs, and a
checkpoint written by its own trainer loaded as a finished model (from_checkpoint)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from matprobe import MatprobeError
from matprobe.inputs.sources import EMBEDDED_FILE
from matprobe.inputs.structures import Crystal
from matprobe.models.alignn import (AngleGraphs, build, build_line_graphs, from_checkpoint, jarvis_atoms, line_graphs,
                                    load_line_graphs, package_graph_pair, package_model, stored_from_package_graph)
from matprobe.models.seam import ModelRecord, load_trained
from matprobe.prepare.graphs import build_graph, collate_graphs

SETTINGS = {"cutoff": 8.0, "max_neighbors": 12}
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden": 16, "embedding": 16, "edge_bins": 20, "angle_bins": 10}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As the workflow runs models (matprobe.runtime): one thread, denormals flushed; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def demo():
    """The first 16 crystals of the embedded demo set, with their formation energies."""
    frame = pd.read_parquet(EMBEDDED_FILE).iloc[:16]
    return [Crystal.from_row(row) for row in frame.to_dict("records")], frame["formation_energy_per_atom"].to_numpy()


def stored_of(crystals, ids=None):
    ids = ids or [f"c{k}" for k in range(len(crystals))]
    return collate_graphs(ids, [build_graph(c, SETTINGS["cutoff"], SETTINGS["max_neighbors"]) for c in crystals], SETTINGS)


def test_contributions_average_to_the_prediction(demo):
    crystals, y = demo
    torch.manual_seed(0)
    model = build(TINY).eval()
    kind = model.graph_kind
    batch = kind.collate(kind.from_stored(stored_of(crystals[:6]), [f"c{k}" for k in range(6)], y[:6]))
    with torch.no_grad():
        out = model(batch)
    counts = torch.bincount(batch.batch).to(torch.float32)
    assert out["prediction"].shape == (6,) and out["contributions"].shape == (batch.num_nodes,)
    assert out["atoms"].shape == (batch.num_nodes, 16) and out["latent"].shape == (6, 16)
    mean = torch.zeros(6).index_add(0, batch.batch, out["contributions"]) / counts
    torch.testing.assert_close(mean, out["prediction"], rtol=0, atol=1e-5)
    torch.testing.assert_close(model.head(out["atoms"]), out["contributions"])
    latent = torch.zeros(6, 16).index_add(0, batch.batch, out["atoms"]) / counts[:, None]
    torch.testing.assert_close(latent, out["latent"])
    assert out["prediction"].std() > 0  # crystals are told apart, so the check above is not of a constant
    # loss landscapes evaluate perturbed weights through functional_call: the same numbers at the same weights
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        again = torch.func.functional_call(model, params, (batch,))
        shifted = torch.func.functional_call(model, {k: v + 0.01 for k, v in params.items()}, (batch,))
    torch.testing.assert_close(again["prediction"], out["prediction"])
    assert not torch.allclose(shifted["prediction"], out["prediction"])


def _trained_on_demo(demo, options, std=1.0):
    """A tiny ALIGNN behind the seam (targets standardised by `std`) and the demo crystals as two test sets."""
    from matprobe.models.seam import TrainedModel
    from matprobe.prepare.sets import CrystalSet

    crystals, y = demo
    torch.manual_seed(3)
    trained = TrainedModel(build({**TINY, **options}), ModelRecord("alignn", options, "formation_energy_per_atom", -1.0, std, "omit-O", 0))
    ids = [f"c{k}" for k in range(len(crystals))]
    items = trained.graphs.from_stored(stored_of(crystals, ids), ids, y)
    sets = {name: CrystalSet(name, ids[part], y[part], [[] for _ in ids[part]], items[part])
            for name, part in (("id_test", slice(0, 10)), ("ood_test", slice(10, 16)))}
    return trained, sets


@pytest.mark.parametrize("options", [{}, {"use_cutoff_function": True}, {"use_cutoff_function": True, "multiply_cutoff": True}],
                         ids=["plain", "envelope-fed", "envelope-scaled"])
def test_its_forward_split_at_its_inputs_is_its_forward(demo, options):
    """The seam's input split (node_inputs, edge_inputs, forward_with_inputs) gives the package's own forward pass
    exactly, with the bonds' radial basis of its length or of the cutoff envelope as the package expands them; so
    does a landscape's call with the expansion precomputed."""
    trained, sets = _trained_on_demo(demo, options)
    model = trained.module
    assert "inputs" in trained.capabilities
    batch = trained.graphs.collate(sets["id_test"].graphs)
    with torch.no_grad():
        own = model(batch)
        edge_inputs = model.edge_inputs(batch.edge_dist)
        split = model.forward_with_inputs(batch, model.node_inputs(batch.z), edge_inputs)
        landscape = model(batch, edge_inputs, batch.neighbors)
    assert edge_inputs.shape == (batch.edge_index.shape[1], TINY["edge_bins"])
    for name in ("prediction", "contributions", "atoms", "latent"):
        assert torch.equal(split[name], own[name]) and torch.equal(landscape[name], own[name]), name
    with torch.no_grad():  # the inputs given are the ones used
        switched_off = model.forward_with_inputs(batch, model.node_inputs(batch.z), torch.zeros_like(edge_inputs))
    assert not torch.allclose(switched_off["prediction"], own["prediction"])


def test_landscape_points_batched_per_pass_equal_one_at_a_time(demo, caplog):
    """The package scatters in place, which vmap cannot batch: asked for several points per pass, the landscape
    evaluates ALIGNN one point per pass, says so once, and gives the losses of points_per_pass=1; a model that does
    not declare it falls back on vmap's error in its first pass, with the same losses."""
    from matprobe.probes.landscape import EvalSet, LandscapeEvaluator, PreparedBatch, direction_parameters, random_directions

    trained, sets = _trained_on_demo(demo, {}, std=0.5)
    model, record = trained.module, trained.record
    assert model.supports_vmap is False
    prepared = {}
    for name, crystal_set in sets.items():
        batches = []
        for batch in trained.batches(crystal_set.graphs, 4):  # several batches per set, as in prepare_sets
            with torch.no_grad():
                extra = (model.edge_inputs(batch.edge_dist), batch.neighbors)
            batches.append(PreparedBatch(batch, record.to_standardised(batch.y), extra))
        prepared[name] = EvalSet(name, crystal_set.ids, batches)
    weights = direction_parameters(model)
    d1, d2 = random_directions(weights, "filter", seed=0)
    points = [(0.0, 0.0), (0.1, -0.05), (-0.2, 0.2)]
    one = LandscapeEvaluator(model, prepared, weights, d1, d2, points_per_pass=1).evaluate(points)
    caplog.set_level("INFO", logger="matprobe.probes.landscape")
    declared = LandscapeEvaluator(model, prepared, weights, d1, d2, points_per_pass=3)
    assert declared.points_per_pass == 1
    model.supports_vmap = True  # as a model of one's own that does not say it
    try:
        undeclared = LandscapeEvaluator(model, prepared, weights, d1, d2, points_per_pass=3)
        assert undeclared.points_per_pass == 3
        tried = undeclared.evaluate(points)
        assert undeclared.points_per_pass == 1
    finally:
        del model.supports_vmap
    said = [r for r in caplog.records if "cannot be vmapped" in r.getMessage()]
    assert len(said) == 2 and "supports_vmap = False" in said[0].getMessage() and "scatter_add_" in said[1].getMessage()
    for values in (declared.evaluate(points), tried):
        for row, expected in zip(values, one):
            assert row.keys() == expected.keys() == {"id_test", "ood_test"}
            for name in row:
                assert row[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-6)
    assert len({round(row["id_test"], 6) for row in one}) == 3  # the points are told apart
    for name, w in weights.items():  # the trained weights are back in place
        assert torch.equal(dict(model.named_parameters())[name].detach(), w)


def test_integrated_gradients_on_its_inputs_are_complete(demo):
    from matprobe.probes.attribution import integrated_gradients

    trained, sets = _trained_on_demo(demo, {}, std=0.5)
    atoms, residuals = integrated_gradients(trained, sets, "zeros", steps=16)
    assert len(atoms) == sum(int(item.num_nodes) for s in sets.values() for item in s.graphs)
    assert len(residuals) == 16 and atoms["attribution"].abs().max() > 1e-3  # not trivially complete
    assert residuals.max() < 1e-3 * max(1.0, float(atoms["attribution"].abs().max()))


def _trim_totals_against_switched_off(trained, sets, trim, switch_off) -> tuple[np.ndarray, np.ndarray]:
    """Per crystal: the TRIM attributions summed, and std * (f(x) - f(x with `switch_off` applied to its
    (node inputs, edge inputs))), what integrated gradients' completeness says the sum is."""
    model, expected = trained.module, {}
    for crystal_set in sets.values():
        batch = trained.graphs.collate(crystal_set.graphs)
        with torch.no_grad():
            node_inputs, edge_inputs = model.node_inputs(batch.z), model.edge_inputs(batch.edge_dist)
            change = (model.forward_with_inputs(batch, node_inputs, edge_inputs)["prediction"]
                      - model.forward_with_inputs(batch, *switch_off(node_inputs, edge_inputs))["prediction"])
        expected.update(zip(crystal_set.ids, (change * trained.record.std).tolist()))
    totals = trim.groupby("id")["attribution"].sum()
    return totals.to_numpy(), np.array([expected[i] for i in totals.index])


def test_trim_runs_in_distance_bands_and_element_properties(demo, tmp_path):
    """Bands of the bond length: a crystal's attributions add up to f(x) - f(every bond's expansion switched off).
    Element properties (the CGCNN feature blocks, test_its_cgcnn_features_are_one_hot_blocks_of_element_properties):
    one row per crystal and property, adding up to f(x) - f(every atom's features switched off). Both spaces are
    written; with the cutoff envelope feeding the radial basis, distance bands are not, said in one line."""
    from types import SimpleNamespace

    from matprobe.inputs.features import physical_feature_layout
    from matprobe.probes.attribution import trim_attributions, write_trim

    trained, sets = _trained_on_demo(demo, {}, std=0.5)
    bands = [0.0, 2.5, 3.5, 8.0]
    trim = trim_attributions(trained, sets, "distance_bands", bands, steps=16)
    assert len(trim) == 16 * 3 and set(trim["name"]) == {"0-2.5 Å", "2.5-3.5 Å", "3.5-8 Å"}
    totals, expected = _trim_totals_against_switched_off(trained, sets, trim, lambda x, e: (x, torch.zeros_like(e)))
    np.testing.assert_allclose(totals, expected, rtol=1e-3, atol=1e-5)
    assert np.abs(totals).max() > 1e-3

    names = [name for name, _ in physical_feature_layout()]
    trim = trim_attributions(trained, sets, "properties", steps=16)
    assert len(trim) == 16 * 9 and trim.groupby("id").size().eq(9).all()
    assert list(trim["name"].iloc[:9]) == names and set(trim["set"]) == {"id_test", "ood_test"}
    totals, expected = _trim_totals_against_switched_off(trained, sets, trim, lambda x, e: (torch.zeros_like(x), e))
    # 16 Gauss-Legendre points leave a residual of about 1e-7 here (float32 rounding of predictions of about 0.3;
    # 8 points leave 5e-4, an unconverged quadrature): 1e-5 holds with a hundredfold margin, still catches that,
    # and is a thousandth of the smallest change, 0.013
    np.testing.assert_allclose(totals, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).min() > 1e-2  # no crystal's check is of a change that is nothing
    assert (trim.groupby("name")["attribution"].apply(lambda a: a.abs().max()) > 1e-4).all()  # every block counts

    outputs = {"trim": tmp_path / "trim.parquet", "trim_summary": tmp_path / "trim_summary.parquet"}
    options = {"ig_steps": 4, "distance_bands": bands}
    summary = write_trim(trained, SimpleNamespace(sets=sets), outputs, options)
    assert summary == {"spaces": ["properties", "distance_bands"], "not_available": {}}
    assert set(pd.read_parquet(outputs["trim"])["space"]) == {"properties", "distance_bands"}

    enveloped, sets = _trained_on_demo(demo, {"use_cutoff_function": True})
    summary = write_trim(enveloped, SimpleNamespace(sets=sets), outputs, options)
    assert summary["spaces"] == ["properties"] and list(summary["not_available"]) == ["distance_bands"]
    assert "not an expansion of the bond length" in summary["not_available"]["distance_bands"]
    assert set(pd.read_parquet(outputs["trim"])["space"]) == {"properties"}
    assert set(pd.read_parquet(outputs["trim_summary"])["name"]) == set(names)


def test_its_cgcnn_features_are_one_hot_blocks_of_element_properties():
    """node_input_layout's blocks of the 92 CGCNN features (jarvis' table, Z = 1-100, what node_inputs reads):
    contiguous, covering every column once, named as the physical features name the same properties; in each,
    every element has exactly one 1, except that electronegativity, electron affinity and atomic volume are all
    zero for the elements the table has no value of (listed). No two neighbouring blocks could be one (an element
    has a 1 in each), so the blocks are not split finer than the table is."""
    from ase.data import chemical_symbols

    from matprobe.inputs.features import physical_feature_layout

    model = build(TINY)
    layout = model.node_input_layout()
    table = model.node_inputs(torch.arange(1, 101)).numpy()
    assert table.shape == (100, 92) and set(np.unique(table)) == {0.0, 1.0}
    assert [name for name, _ in layout] == [name for name, _ in physical_feature_layout()]
    assert [columns.start for _, columns in layout] == [0] + [columns.stop for _, columns in layout[:-1]]
    assert layout[-1][1].stop == 92 and all(columns.step is None for _, columns in layout)
    no_value = {
        "electronegativity": "He Ne Ar Kr Pm Eu Tb Yb Rn Am Cm Bk Cf Es Fm",
        "electron_affinity": "He Ne Mg Ar Mn Zn Kr Cd Pm Sm Gd Ho Er Hg Rn Th Pa U Np Pu Am Cm Bk Cf Es Fm",
        "atomic_volume": "Pm At Rn Fr Pu Bk Cf Es Fm",
    }
    for name, columns in layout:
        ones = table[:, columns].sum(axis=1)
        zeros = {chemical_symbols[z] for z in np.flatnonzero(ones == 0) + 1}
        assert set(ones) <= {0.0, 1.0}, name
        assert zeros == set(no_value.get(name, "").split()), name
    for (first, a), (second, b) in itertools.pairwise(layout):
        assert (table[:, a].any(axis=1) & table[:, b].any(axis=1)).any(), (first, second)


def test_its_group_period_and_ionisation_bins_are_pymatgens():
    """The group and period blocks' active bins are pymatgen's group and period (column 0 of group: the f block,
    which CGCNN bins apart from group 3); the first ionisation energy's bin never falls as pymatgen's value rises
    (what places the boundary with electron affinity at column 68: see ALIGNN.node_input_layout)."""
    from pymatgen.core.periodic_table import Element

    model = build(TINY)
    layout = dict(model.node_input_layout())
    for symbol in ("H", "C", "O", "Na", "Si", "Fe", "Cu", "Ga", "Br", "Xe", "La", "Gd", "Lu", "U"):
        element = Element(symbol)
        features = model.node_inputs(torch.tensor([element.Z]))[0].numpy()
        group = 0 if element.block == "f" else element.group
        assert np.flatnonzero(features[layout["group"]]).tolist() == [group], symbol
        assert np.flatnonzero(features[layout["period"]]).tolist() == [element.row - 1], symbol
    table = model.node_inputs(torch.arange(1, 101)).numpy()
    ionisation = np.array([float(Element.from_Z(z).ionization_energies[0]) for z in range(1, 101)])
    bins = table[:, layout["first_ionisation_energy"]].argmax(axis=1)
    order = np.argsort(ionisation, kind="stable")
    assert (np.diff(bins[order]) >= 0).all() and len(set(bins)) == 10


def bond_set(centre, neighbour, images) -> set:
    return set(zip(centre.tolist(), neighbour.tolist(), map(tuple, np.asarray(images).astype(int).tolist())))


@pytest.mark.parametrize("three_body_cutoff", [3.5, None])
def test_same_predictions_as_the_alignn_package(demo, three_body_cutoff):
    """The same weights on (a) alignn's own graphs (build_pure_torch_graph, batch_torch_graph_pairs) and (b) ours.

    alignn's builder and ours keep the same 12 nearest neighbours, but break ties in the 12th shell differently
    (ours by element, index and image; its by an unstable sort), so the bond sets of many crystals differ only in
    which of several equidistant atoms is kept. So: per centre atom the kept distances agree; where the bond sets
    are identical, our own graphs give alignn's predictions; and our line graph built on alignn's bond set is
    alignn's line graph (same bond pairs, same cosines) and gives its predictions for every crystal."""
    from alignn.torch_graph_builder import batch_torch_graph_pairs, build_pure_torch_graph

    crystals, y = demo
    torch.manual_seed(1)
    model = build({**TINY, "three_body_cutoff": three_body_cutoff}).eval()
    kind = model.graph_kind
    ours = kind.from_crystals(crystals, SETTINGS)
    pairs, on_their_bonds, identical = [], [], []
    for crystal, item in zip(crystals, ours):
        graph, line = build_pure_torch_graph(jarvis_atoms(crystal), two_body_cutoff=SETTINGS["cutoff"],
                                             three_body_cutoff=three_body_cutoff, max_neighbors=SETTINGS["max_neighbors"])
        pairs.append((graph, line))
        theirs = sorted(zip(graph.src.tolist(), graph.edata["r"].norm(dim=1).tolist()))
        mine = sorted(zip(item.edge_index[1].tolist(), item.edge_dist.tolist()))
        np.testing.assert_allclose(np.array(theirs), np.array(mine), atol=1e-4)
        mine_full = build_graph(crystal, SETTINGS["cutoff"], SETTINGS["max_neighbors"])
        identical.append(bond_set(graph.src.numpy(), graph.dst.numpy(), graph.edata["images"].numpy()) ==
                         bond_set(mine_full["edge_index"][1], mine_full["edge_index"][0], mine_full["edge_shift"]))
        rebuilt = kind.from_stored(stored_from_package_graph(graph, crystal, SETTINGS), ["x"], np.zeros(1))[0]
        assert set(zip(*rebuilt.lg_index.tolist())) == set(zip(line.src.tolist(), line.dst.tolist()))
        their_cos = dict(zip(zip(line.src.tolist(), line.dst.tolist()), line.edata["h"].tolist()))
        np.testing.assert_allclose([their_cos[pair] for pair in zip(*rebuilt.lg_index.tolist())], rebuilt.lg_cos.numpy(),
                                   atol=1e-5)
        on_their_bonds.append(rebuilt)
    assert 0 < sum(identical) < len(crystals)  # both cases occur among these crystals
    graph, line = batch_torch_graph_pairs(pairs)
    with torch.no_grad():
        reference = model.net((graph, line, None))["out"]
        direct = model(kind.collate(ours))["prediction"]
        rebuilt = model(kind.collate(on_their_bonds))["prediction"]
    torch.testing.assert_close(rebuilt, reference, rtol=0, atol=2e-5)
    keep = torch.tensor(identical)
    torch.testing.assert_close(direct[keep], reference[keep], rtol=0, atol=2e-5)


def test_a_tiny_model_learns(demo):
    crystals, y = demo
    torch.manual_seed(2)
    model = build(TINY)
    kind = model.graph_kind
    target = (y - y.mean()) / y.std()
    batch = kind.collate(kind.from_crystals(crystals, SETTINGS))
    batch.y = torch.tensor(target, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(25):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model(batch)["prediction"], batch.y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


def test_strained_crystal_on_the_fly_is_the_cached_graph(demo, tmp_path):
    crystals, y = demo
    strain = np.array([[1.03, 0.01, 0.0], [0.0, 0.98, 0.02], [0.0, 0.0, 1.01]])
    strained = [Crystal(c.lattice @ strain, c.frac_coords, c.numbers) for c in crystals[:4]]
    kind = AngleGraphs(3.5)
    fly = kind.from_crystals(strained, SETTINGS)
    stored = stored_of(strained, ["a", "b", "c", "d"])
    graphs_path = tmp_path / "graphs.pt"
    torch.save(stored, graphs_path)
    summary = build_line_graphs(graphs_path, tmp_path / "line_graphs.pt", 3.5)
    assert summary["crystals"] == 4 and summary["angles"] > 0
    cached = AngleGraphs(3.5, cache=load_line_graphs(tmp_path / "line_graphs.pt"))
    from_cache = cached.from_stored(stored, ["a", "b", "c", "d"], np.full(4, np.nan))
    for one, other in zip(fly, from_cache):
        for key in ("z", "edge_index", "edge_vec", "edge_dist", "lg_index", "lg_cos"):
            assert torch.equal(one[key], other[key]), key
    # a few crystals out of order, without the cache, are those crystals' items from the cache
    for one, other in zip(kind.from_stored(stored, ["d", "b"], np.zeros(2)), [from_cache[3], from_cache[1]]):
        for key in ("edge_index", "lg_index", "lg_cos"):
            assert torch.equal(one[key], other[key]), key
    # and strain changed the graph: the cosines are not those of the unstrained crystals
    plain = kind.from_crystals(crystals[:4], SETTINGS)
    assert any(p.lg_cos.shape != s.lg_cos.shape or not torch.allclose(p.lg_cos, s.lg_cos) for p, s in zip(plain, fly))


def test_batching_offsets_the_line_graph_by_bond_counts(demo):
    crystals, _ = demo
    items = AngleGraphs(3.5).from_crystals(crystals[:3], SETTINGS)
    batch = AngleGraphs.collate(items)
    bonds = np.cumsum([0] + [item.edge_index.shape[1] for item in items])
    angles = np.cumsum([0] + [item.lg_index.shape[1] for item in items])
    for k, item in enumerate(items):
        assert torch.equal(batch.lg_index[:, angles[k]:angles[k + 1]], item.lg_index + int(bonds[k]))


def test_cache_and_options_are_checked(demo):
    crystals, _ = demo
    stored = stored_of(crystals[:3])
    lines = line_graphs(stored, 3.5)
    with pytest.raises(MatprobeError, match="three_body_cutoff 3.5"):
        AngleGraphs(4.0, cache=lines).from_stored(stored, ["c0"], np.zeros(1))
    with pytest.raises(MatprobeError, match="another graph set"):
        AngleGraphs(3.5, cache=lines).from_stored(stored_of(crystals[3:6]), ["c0"], np.zeros(1))
    with pytest.raises(MatprobeError, match="hiden"):
        build({"hiden": 32})


# ---- a checkpoint written by alignn's own trainer -------------------------------------------------------------

DEMO_TRAINING = Path(__file__).resolve().parents[1] / "docs" / "examples" / "alignn_demo" / "alignn_config.json"


@pytest.fixture(scope="module")
def trained_checkpoint(demo, tmp_path_factory):
    """best_model.pt and config.json written by alignn's own entry point (`train_for_folder`, what train_alignn.py
    runs) after one epoch on 12 demo crystals, with the worked example's training config shrunk."""
    with warnings.catch_warnings():
        # the trainer's modules declare pydantic settings with a class-based `Config`, and it calls pydantic's
        # deprecated `.dict()`: alignn's deprecations, not ours, and only these two while its trainer runs
        warnings.filterwarnings("ignore", message=r"Support for class-based `config` is deprecated")
        warnings.filterwarnings("ignore", message=r"The `dict` method is deprecated")
        return _train_tiny_checkpoint(demo, tmp_path_factory)


def _train_tiny_checkpoint(demo, tmp_path_factory) -> Path:
    from alignn.train_alignn import train_for_folder

    crystals, y = demo
    folder = tmp_path_factory.mktemp("alignn")
    records = [{"id": f"c{k}", "atoms": jarvis_atoms(c).to_dict(), "target": float(v)}
               for k, (c, v) in enumerate(zip(crystals[:12], y[:12]))]
    (folder / "dataset").mkdir()
    (folder / "dataset" / "id_prop.json").write_text(json.dumps(records))
    training = json.loads(DEMO_TRAINING.read_text())
    training["model"].update(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=16,
                             edge_input_features=20, triplet_input_features=10)
    training.update(n_train=8, n_val=2, n_test=2, epochs=1, batch_size=4)
    (folder / "training.json").write_text(json.dumps(training))
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        # what the trainer changes beyond its output folder, restored afterwards: its LMDB caches go to the working
        # folder, it sets PYTHONHASHSEED and cuDNN's benchmark flag
        patch.chdir(folder)
        patch.setenv("PYTHONHASHSEED", "0")
        patch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
        train_for_folder(root_dir=str(folder / "dataset"), config_name=str(folder / "training.json"),
                         target_key="target", id_key="id", output_dir=str(folder / "checkpoint"))
    return folder / "checkpoint"


def test_a_checkpoint_of_alignns_trainer_predicts_as_alignn(demo, trained_checkpoint):
    """from_checkpoint holds the trainer's weights and, on the same neighbour lists, predicts what alignn's own
    model (rebuilt from config.json with best_model.pt, as its trainer's restart path does) predicts on its own
    graphs; contributions still average to the prediction."""
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    crystals, _ = demo
    module = from_checkpoint({"checkpoint": str(trained_checkpoint / "best_model.pt")})
    theirs, training = package_model(trained_checkpoint / "best_model.pt", trained_checkpoint / "config.json")
    assert (module.config.hidden, module.config.alignn_layers, module.config.cutoff, module.config.three_body_cutoff) == (
        16, 1, 8.0, 3.5)
    saved = torch.load(trained_checkpoint / "best_model.pt", weights_only=True)
    held = module.net.state_dict()
    assert all(torch.equal(held[key], value) for key, value in saved.items() if key != "_species_table")
    pairs = [package_graph_pair(crystal, training) for crystal in crystals]
    kind = module.graph_kind
    items = [kind.from_stored(stored_from_package_graph(graph, crystal, SETTINGS), ["x"], np.zeros(1))[0]
             for (graph, _), crystal in zip(pairs, crystals)]
    batch = kind.collate(items)
    with torch.no_grad():
        graph, line = batch_torch_graph_pairs(pairs)
        reference = theirs((graph, line, None))["out"]
        out = module(batch)
    assert reference.std() > 0
    torch.testing.assert_close(out["prediction"], reference, rtol=0, atol=1e-5)
    counts = torch.bincount(batch.batch).to(torch.float32)
    mean = torch.zeros(len(crystals)).index_add(0, batch.batch, out["contributions"]) / counts
    torch.testing.assert_close(mean, reference, rtol=0, atol=1e-5)


def test_its_model_file_rebuilds_without_the_checkpoint(demo, trained_checkpoint, tmp_path):
    """model.pt records the architecture, not the path: the seam's load_trained rebuilds the module from the stored
    options after the checkpoint is gone, with the same predictions, and still checks the graph settings."""
    crystals, _ = demo
    moved = tmp_path / "checkpoint"
    shutil.copytree(trained_checkpoint, moved)
    module = from_checkpoint({"checkpoint": str(moved / "best_model.pt"), "config": str(moved / "config.json")})
    record = ModelRecord("matprobe.models.alignn:from_checkpoint", module.options(), "formation_energy_per_atom",
                         0.0, 1.0, "omit-O", 0)
    torch.save(record.model_file(module.state_dict()), tmp_path / "model.pt")
    shutil.rmtree(moved)
    trained = load_trained(tmp_path / "model.pt")
    items = trained.graphs.from_crystals(crystals[:6], SETTINGS)
    with torch.no_grad():
        expected = module.eval()(module.graph_kind.collate(items))["prediction"].double().numpy()
    np.testing.assert_allclose(trained.predict(items).prediction, expected, rtol=0, atol=1e-6)
    assert trained.record.options["checkpoint"] == str(moved / "best_model.pt") and trained.record.options["checkpoint_sha256"]
    with pytest.raises(MatprobeError, match=r"model option checkpoint .*cutoff 8.0 .*max_neighbors 12.*6.0"):
        trained.graphs.from_crystals(crystals[:1], {"cutoff": 6.0, "max_neighbors": 12})


def _damage(folder: Path, how: str) -> dict:
    """Options naming a copy of a good checkpoint, damaged `how`."""
    checkpoint, config = folder / "best_model.pt", folder / "config.json"
    training = json.loads(config.read_text())
    if how == "missing":
        checkpoint.unlink()
    elif how == "not torch":
        checkpoint.write_bytes(b"a text file, not a state dict")
    elif how == "nested":
        torch.save({"model": torch.load(checkpoint, weights_only=True)}, checkpoint)
    elif how == "other architecture":
        training["model"]["hidden_features"] = 32
    elif how == "no config":
        config.unlink()
    elif how == "classifier":
        training["classification_threshold"] = 0.5
    elif how == "force field":
        training["model"].update(calculate_gradient=True, gradwise_weight=1.0)
    if config.exists():
        config.write_text(json.dumps(training))
    return {"checkpoint": str(checkpoint)} if how != "unknown option" else {"checkpoint": str(checkpoint), "hiden": 32}


@pytest.mark.parametrize("how, message", [
    ("missing", r"model option checkpoint: .*best_model.pt: not found"),
    ("not torch", r"model option checkpoint: .*not a readable state dict"),
    ("nested", r"model option checkpoint: .*not a state dict of tensors"),
    ("other architecture", r"model option checkpoint: .*does not fit the ALIGNN its config .*config.json describes "
                           r"\(.*\(16,.*\(32,"),
    ("no config", r"model option config: .*config.json: not found"),
    ("classifier", r"model option config: .*a classifier"),
    ("force field", r"model option config: .*force field"),
    ("unknown option", r"\['hiden'\]: from_checkpoint takes `checkpoint`"),
])
def test_a_bad_checkpoint_is_one_line_naming_the_option(trained_checkpoint, tmp_path, how, message):
    folder = tmp_path / "checkpoint"
    shutil.copytree(trained_checkpoint, folder)
    with pytest.raises(MatprobeError, match=message) as error:
        from_checkpoint(_damage(folder, how))
    assert "\n" not in str(error.value)
