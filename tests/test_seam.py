"""The model seam: a model of the user's own, named by a factory written only for this test, is trained, loaded and
probed like the built-in ones; a finished model is evaluated without training; and a factory or a model that breaks
the contract is one line naming its config entry, before any training."""

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO
from matprobe import MatprobeError
from matprobe.config import model_options_for, model_source, validate_config
from matprobe.models.seam import CrystalGraphs, ModelRecord, TrainedModel, build_module, load_trained, resolve_factory
from matprobe.models.training import check_contract, train_model
from matprobe.prepare.sets import load_split_data
from matprobe.probes.attribution import run_attribution

TARGET = "formation_energy_per_atom"
TRAINING = {"epochs": 2, "batch_size": 16, "lr": 2e-3, "weight_decay": 1e-5, "patience": 10, "clip_norm": 5.0,
            "device": "cpu", "deterministic": True, "knn": 3}

# A user's model: an element embedding, one round of distance-weighted neighbour averaging, an atom-wise head; it
# meets the seam's contract and nothing more (no node/edge inputs, no element table). `finished` returns one whose
# head is offset by a constant learnt from the training set (fit_to_training_set), as a pretrained potential's
# per-element references are.
FACTORY = textwrap.dedent('''
    import torch
    from torch import nn


    class Mean(nn.Module):
        def __init__(self, hidden=8, broken=False):
            super().__init__()
            self.embed = nn.Embedding(101, hidden)
            self.mix = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, 1)
            self.broken = broken
            self.register_buffer("offset", torch.zeros(()))

        def head(self, atoms):
            return self.out(atoms).squeeze(-1) + self.offset

        def forward(self, batch):
            h = self.embed(batch.z)
            source, target = batch.edge_index
            weight = torch.exp(-batch.edge_dist)[:, None]
            h = h + torch.tanh(self.mix(torch.zeros_like(h).index_add(0, target, weight * h[source])))
            contributions = self.head(h)
            counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(h.dtype)
            prediction = torch.zeros(batch.num_graphs).index_add(0, batch.batch, contributions) / counts
            if self.broken:
                prediction = prediction + 1.0
            latent = torch.zeros(batch.num_graphs, h.shape[1]).index_add(0, batch.batch, h) / counts[:, None]
            return {"prediction": prediction, "contributions": contributions, "atoms": h, "latent": latent}

        def fit_to_training_set(self, items, targets, unlabelled=()):
            self.offset.fill_(float(targets.mean()))
            return {"offset": float(self.offset)}


    def build(options):
        return Mean(**options)


    def not_a_model(options):
        return {"weights": 1}
''')


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models:build"


def _train(small, out, architecture, options, finished=False, model_name="mine"):
    return train_model(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", out, TARGET, model_name, options,
                       TRAINING, seed=0, threads=1, progress=False, architecture=architecture, finished=finished)


def test_a_factory_model_is_trained_loaded_and_probed_like_a_built_in_one(small, factory, tmp_path):
    metrics = _train(small, tmp_path / "run", factory, {"hidden": 8})
    assert metrics["model"] == "mine" and metrics["epochs_run"] == 2 and np.isfinite(metrics["ood_test"]["mae"])
    trained = load_trained(tmp_path / "run" / "model.pt")
    assert trained.record.architecture == factory and trained.record.options == {"hidden": 8}
    assert isinstance(trained.graphs, CrystalGraphs) and trained.capabilities == {"contributions", "atoms"}
    # the rebuilt model predicts what training wrote
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET, trained.graphs).sets
    again = trained.predict(sets["ood_test"].graphs)
    stored = pd.read_parquet(tmp_path / "run" / "predictions.parquet").query("set == 'ood_test'")["y_pred"].to_numpy()
    np.testing.assert_allclose(again.prediction, stored, rtol=1e-5, atol=1e-6)
    # attribution runs what the model gives and says what it does not: contributions yes, gradients on inputs no
    summary = run_attribution(tmp_path / "run" / "model.pt", small / "graphs.pt", small / "materials.parquet",
                              small / "omit-O.json", None, None, None, tmp_path / "attribution", {"max_crystals": 10, "seed": 0,
                              "ig_baseline": "zeros", "ig_steps": 4, "distance_bands": [0, 3, 8], "knn": 3})
    assert summary["contributions"]["completeness_max_abs_residual"] < 1e-4
    assert "node and edge inputs" in summary["integrated_gradients"]["not_available"]
    assert pd.read_parquet(tmp_path / "attribution" / "ig_atoms.parquet").empty
    assert not pd.read_parquet(tmp_path / "attribution" / "atoms.parquet").empty


def test_a_finished_model_is_evaluated_without_training(small, factory, tmp_path):
    metrics = _train(small, tmp_path / "run", factory, {"hidden": 8}, finished=True)
    assert metrics["epochs_run"] == 0 and not (tmp_path / "run" / "checkpoint.pt").exists()
    assert pd.read_parquet(tmp_path / "run" / "history.parquet").empty
    trained = load_trained(tmp_path / "run" / "model.pt")
    assert (trained.record.mean, trained.record.std) == (0.0, 1.0)  # its outputs are already in target units
    # fitted to the training set where it asked to be, and the fit travels in model.pt
    train_mean = pd.read_parquet(tmp_path / "run" / "predictions.parquet").query("set == 'train'")["y_true"].mean()
    assert float(trained.module.offset) == pytest.approx(train_mean, rel=1e-6)


def test_a_factory_that_breaks_the_contract_is_one_line_naming_its_entry(small, factory, tmp_path):
    with pytest.raises(MatprobeError, match=r"model_options.mine: .*cannot import no_such_package"):
        _train(small, tmp_path / "a", "no_such_package.models:build", {})
    with pytest.raises(MatprobeError, match=r"model_options.mine: .*returned dict, not a torch nn.Module"):
        _train(small, tmp_path / "b", "my_models:not_a_model", {})
    with pytest.raises(MatprobeError, match=r"model_options.mine: its factory my_models:build failed \(TypeError"):
        _train(small, tmp_path / "c", factory, {"no_such_option": 1})
    # contributions that do not average to the prediction: refused before training, nothing written
    with pytest.raises(MatprobeError, match=r"model_options.mine: its contributions do not average to its prediction"):
        _train(small, tmp_path / "d", factory, {"broken": True})
    assert not (tmp_path / "d" / "checkpoint.pt").exists()


def test_check_contract_accepts_the_built_in_models(small):
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    for name, options in (("cgcnn", {"hidden": 8}), ("schnet", {"hidden": 8, "filters": 8})):
        check_contract(build_module(name, options), CrystalGraphs(), sets["train"].graphs[:4], name)


def test_a_missing_capability_is_refused_in_one_line():
    class NoHead(torch.nn.Module):
        def forward(self, batch):
            raise AssertionError("not called")

    trained = TrainedModel(NoHead(), ModelRecord("mine", {}, TARGET, 0.0, 1.0, "omit-O", 0), graphs=CrystalGraphs())
    assert trained.missing("knobs") == ["atoms"]
    with pytest.raises(MatprobeError, match="the knobs stage needs atom representations and the head that reads them"):
        trained.require("knobs")


def test_an_own_model_with_inputs_gets_integrated_gradients_and_trim_says_which_spaces_it_lacks(small, tmp_path):
    """The `inputs` capability is node_inputs, edge_inputs and forward_with_inputs(batch, node_inputs, edge_inputs);
    TRIM's domain spaces need more (node_input_layout, edge_input_centres), and a model without them is told so in
    one line per space, not stopped."""
    from types import SimpleNamespace

    from matprobe.probes.attribution import integrated_gradients, write_trim

    class Inputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(101, 4)
            self.out = torch.nn.Linear(4, 1)

        def node_inputs(self, z):
            return self.embed(z)

        def edge_inputs(self, edge_dist):
            return torch.exp(-edge_dist)[:, None]

        def forward_with_inputs(self, batch, node_inputs, edge_inputs):
            source, target = batch.edge_index
            h = node_inputs + torch.tanh(torch.zeros_like(node_inputs).index_add(0, target, edge_inputs * node_inputs[source]))
            contributions = self.out(h).squeeze(-1)
            counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(h.dtype)
            prediction = torch.zeros(batch.num_graphs).index_add(0, batch.batch, contributions) / counts
            latent = torch.zeros(batch.num_graphs, 4).index_add(0, batch.batch, h) / counts[:, None]
            return {"prediction": prediction, "contributions": contributions, "atoms": h, "latent": latent}

        def forward(self, batch):
            return self.forward_with_inputs(batch, self.node_inputs(batch.z), self.edge_inputs(batch.edge_dist))

    torch.manual_seed(0)
    trained = TrainedModel(Inputs(), ModelRecord("mine", {}, TARGET, 0.0, 2.0, "omit-O", 0))
    assert trained.capabilities == {"contributions", "inputs"}
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET, trained.graphs).sets
    sets = {name: sets[name].take(range(8)) for name in ("id_test", "ood_test")}
    atoms, residuals = integrated_gradients(trained, sets, "zeros", steps=16)
    assert residuals.max() < 1e-3 * max(1.0, float(atoms["attribution"].abs().max()))
    outputs = {"trim": tmp_path / "trim.parquet", "trim_summary": tmp_path / "trim_summary.parquet"}
    summary = write_trim(trained, SimpleNamespace(sets=sets), outputs, {"ig_steps": 4, "distance_bands": [0, 3, 8]})
    assert summary["spaces"] == [] and set(summary["not_available"]) == {"properties", "distance_bands"}
    assert all(reason.startswith("mine's ") and "\n" not in reason for reason in summary["not_available"].values())
    assert pd.read_parquet(outputs["trim"]).empty


def test_the_config_knows_the_built_in_and_registered_models_the_seam_builds():
    from matprobe.config import BUILT_IN_MODELS
    from matprobe.models.architectures import MODELS

    assert set(BUILT_IN_MODELS) == set(MODELS)  # config.py names them without importing torch
    for name in ("alignn", "chgnet"):
        assert callable(resolve_factory(name))


def test_the_config_names_models_by_factory_and_refuses_unknown_ones():
    config = yaml.safe_load(open("config/config.yaml"))
    config["models"] = ["cgcnn", "chgnet", "mine"]
    config["model_options"] = {"mine": {"factory": "my_models:build", "finished": True, "hidden": 8}}
    validate_config(config)
    assert model_source(config, "mine") == ("my_models:build", True)
    assert model_source(config, "chgnet") == ("matprobe.models.chgnet:pretrained", True)
    assert model_source(config, "cgcnn") == ("cgcnn", False)
    assert "cutoff" in model_options_for(config, "cgcnn") and "cutoff" not in model_options_for(config, "mine")
    unknown = yaml.safe_load(open("config/config.yaml"))
    unknown["models"] = ["cgcnn", "mynet"]
    with pytest.raises(MatprobeError, match=r"config: models: 'mynet' is not built in .* names no factory"):
        validate_config(unknown)
    bad = yaml.safe_load(open("config/config.yaml"))
    bad["model_options"] = {"cgcnn": {"factory": "my_models:build"}}
    with pytest.raises(MatprobeError, match="model_options"):
        validate_config(bad)


def test_the_own_model_page_factory_meets_the_seam(small, tmp_path, monkeypatch):
    example = REPO / "docs" / "examples" / "my_model" / "my_net.py"
    assert example.read_text() in (REPO / "docs" / "own-model.md").read_text()  # quoted verbatim
    monkeypatch.syspath_prepend(str(example.parent))
    metrics = _train(small, tmp_path / "run", "my_net:build", {"hidden": 8})
    assert np.isfinite(metrics["ood_test"]["mae"])
    assert load_trained(tmp_path / "run" / "model.pt").capabilities == {"contributions", "atoms"}
