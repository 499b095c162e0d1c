"""Models and training on a small slice of the embedded demo (real Materials Project crystals)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from matprobe import MatprobeError
from matprobe.prepare.graphs import symmetry_reduced
from matprobe.models.architectures import GaussianExpansion, build_model, model_options, regular_neighbors, weighted_batch_norm
from matprobe.prepare.sets import load_split_data
from matprobe.models.seam import load_trained
from matprobe.models.training import train_model
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

TRAINING = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "weight_decay": 1e-5, "patience": 10, "clip_norm": 5.0,
            "device": "cpu", "deterministic": True, "knn": 3}
TARGET = "formation_energy_per_atom"


def run(small, out_dir, model="cgcnn", options=None, training=TRAINING, **kwargs):
    return train_model(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", out_dir, TARGET, model,
                       options or {"hidden": 16}, training, seed=0, threads=1, progress=False, **kwargs)


@pytest.mark.parametrize("model", ["cgcnn", "schnet"])
@pytest.mark.parametrize("features", ["physical", "onehot"])
def test_prediction_is_exactly_the_mean_of_atom_contributions(small, model, features):
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    torch.manual_seed(0)
    net = build_model(model, {"hidden": 16, "node_features": features}).eval()
    batch = next(iter(DataLoader(sets["ood_test"].graphs, batch_size=32)))
    out = net(batch)
    means = torch.zeros(batch.num_graphs).index_add_(0, batch.batch, out["contributions"]) / torch.bincount(batch.batch)
    torch.testing.assert_close(out["prediction"], means, atol=1e-5, rtol=0)
    assert out["latent"].shape == (batch.num_graphs, 16)
    assert net.element_representation().shape == (101, 16)


def test_weighted_batch_norm_is_batch_norm_over_the_repeated_rows():
    torch.manual_seed(0)
    rows, weight = torch.randn(7, 5), torch.tensor([1.0, 3.0, 2.0, 1.0, 4.0, 1.0, 2.0])
    repeated = rows.repeat_interleave(weight.long(), dim=0)
    for momentum in (0.1, None):
        reference, weighted = torch.nn.BatchNorm1d(5, momentum=momentum), torch.nn.BatchNorm1d(5, momentum=momentum)
        for _ in range(3):
            expected = reference(repeated)
            got = weighted_batch_norm(weighted, rows, weight).repeat_interleave(weight.long(), dim=0)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weighted.running_mean, reference.running_mean)
        torch.testing.assert_close(weighted.running_var, reference.running_var)
        assert int(weighted.num_batches_tracked) == int(reference.num_batches_tracked) == 3


@pytest.mark.parametrize("model_name, options", [("cgcnn", {}), ("cgcnn", {"norm": "layer"}), ("schnet", {})])
def test_training_steps_on_symmetry_reduced_graphs_equal_the_full_graphs(small, model_name, options):
    # float64, so that the comparison is not drowned by float32 rounding: the bias gradients before batch norm
    # are sums of many cancelling terms, whose float32 rounding differs between the two graphs by ~1e-3 relative
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    full = [graph.clone() for graph in sets["train"].graphs[:96]]
    for graph in full:
        graph.edge_dist, graph.y = graph.edge_dist.double(), graph.y.double()
    reduced = [symmetry_reduced(graph) for graph in full]
    assert sum(g.num_nodes for g in reduced) < 0.8 * sum(g.num_nodes for g in full)
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(build_model(model_name, {"hidden": 16, **options}).double().train())
    optimizers = [torch.optim.AdamW(net.parameters(), lr=2e-3) for net in nets]
    for start in range(0, 96, 32):
        losses, gradients = [], []
        for net, optimizer, graphs in zip(nets, optimizers, (full, reduced)):
            batch = Batch.from_data_list(graphs[start : start + 32])
            optimizer.zero_grad()
            loss = torch.nn.functional.l1_loss(net(batch, neighbors=regular_neighbors(batch.edge_index, batch.num_nodes))["prediction"], batch.y)
            loss.backward()
            gradients.append({name: p.grad.clone() for name, p in net.named_parameters()})
            optimizer.step()
            losses.append(loss.item())
        # equal up to the 1e-5 Å within which distances count as equal when atoms are classed
        assert losses[1] == pytest.approx(losses[0], rel=1e-6)
        for name, expected in gradients[0].items():
            difference = float((gradients[1][name] - expected).norm()) / float(expected.norm())
            assert difference <= 1e-5, (name, difference)
    # (parameters are not compared: Adam turns a 1e-12 difference in a vanishing gradient component into a full step)
    for (name, expected), got in zip(nets[0].named_buffers(), nets[1].buffers()):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5, msg=name)  # batch-norm running statistics


def test_cgcnn_norm_option():
    batch_norm, layer_norm = build_model("cgcnn", {}), build_model("cgcnn", {"norm": "layer"})
    assert "convs.0.bn.running_mean" in batch_norm.state_dict()  # PyG CGConv's names, as before the option
    assert not any("running" in name for name in layer_norm.state_dict())  # nothing computed from batches
    assert any(isinstance(module, torch.nn.LayerNorm) for module in layer_norm.modules())
    # the default is recorded as before the option existed, so that earlier checkpoints resume and model.pt files rebuild
    assert "norm" not in model_options(batch_norm) and model_options(layer_norm)["norm"] == "layer"
    rebuilt = build_model("cgcnn", model_options(layer_norm))
    rebuilt.load_state_dict(layer_norm.state_dict())
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        build_model("cgcnn", {"norm": "group"})


def test_distance_expansion_holds_no_denormals():
    expansion = GaussianExpansion(0.0, 8.0, 41, width=0.2)
    values = expansion(torch.linspace(0.0, 8.0, 5000))
    tiny = (values != 0) & (values.abs() < torch.finfo(torch.float32).tiny)
    assert not tiny.any()
    assert (values == 0).any()  # the far tails really were flushed, not absent by luck


def test_training_writes_consistent_outputs(small, tmp_path):
    metrics = run(small, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    for set_name in ("train", "val", "id_test", "ood_test"):
        subset = predictions[predictions["set"] == set_name]
        assert saved[set_name]["n"] == len(subset) > 0
        assert saved[set_name]["mae"] == pytest.approx(np.mean(np.abs(subset["y_pred"] - subset["y_true"])))
        assert saved[set_name]["bias"] == pytest.approx(np.mean(subset["y_pred"] - subset["y_true"]))
    assert saved["ood_id_mae_ratio"] == pytest.approx(saved["ood_test"]["mae"] / saved["id_test"]["mae"])
    ood = predictions[predictions["set"] == "ood_test"]
    assert all("O" in e for e in ood["elements"])
    assert saved["ood_mae_by_element"]["O"]["n"] == len(ood)
    assert saved["latent_knn_distance"]["ood_test"] > 0 and saved["latent_knn_distance"]["id_test"] > 0
    latents = pd.read_parquet(tmp_path / "run" / "latents.parquet")
    assert len(latents) == len(predictions) and len(latents["latent"].iloc[0]) == 16
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    assert list(history.columns) == ["epoch", "train_loss", "val_mae", "lr", "seconds"] and len(history) == 4


def test_model_file_loads_with_weights_only_and_reproduces_predictions(small, tmp_path):
    run(small, tmp_path / "run", model="schnet")
    record = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert record["model"] == "schnet" and record["metadata"]["torch"] == torch.__version__
    trained = load_trained(tmp_path / "run" / "model.pt")
    model, record = trained.module, trained.record
    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    batch = next(iter(DataLoader(sets["id_test"].graphs, batch_size=1000)))
    with torch.no_grad():
        again = record.to_physical(model(batch)["prediction"].numpy())
    stored = pd.read_parquet(tmp_path / "run" / "predictions.parquet").query("set == 'id_test'")["y_pred"].to_numpy()
    np.testing.assert_allclose(again, stored, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_names_epoch_and_batch_and_keeps_the_checkpoint(small, tmp_path, monkeypatch):
    real_l1 = torch.nn.functional.l1_loss
    calls = {"n": 0}
    batches_per_epoch = None

    def poisoned(prediction, target):
        calls["n"] += 1
        loss = real_l1(prediction, target)
        return loss * float("nan") if calls["n"] == batches_per_epoch + 3 else loss

    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    batches_per_epoch = -(-len(sets["train"].ids) // TRAINING["batch_size"])
    monkeypatch.setattr(torch.nn.functional, "l1_loss", poisoned)
    with pytest.raises(MatprobeError, match="non-finite training loss .* at epoch 2, batch 3"):
        run(small, tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert not (tmp_path / "run" / "model.pt").exists()


KILL_SCRIPT = """
import sys, json
from pathlib import Path
from matprobe.models.training import train_model
small, out = Path(sys.argv[1]), sys.argv[2]
training = json.loads(sys.argv[3])
train_model(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", out, "formation_energy_per_atom",
            "cgcnn", {"hidden": 16}, training, seed=0, threads=1, progress=False)
"""


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_result(small, tmp_path):
    training = {**TRAINING, "epochs": 8}
    uninterrupted = run(small, tmp_path / "clean", training=training)

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(small), str(out), json.dumps(training)])
    checkpoint = out / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill mid-way through the third epoch, after two checkpoints
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "metrics.json").exists(), "the job finished before it could be killed"
    stopped_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 2 <= stopped_at < 8

    resumed = run(small, out, training=training)
    assert resumed == uninterrupted
    clean = pd.read_parquet(tmp_path / "clean" / "predictions.parquet")
    again = pd.read_parquet(out / "predictions.parquet")
    pd.testing.assert_frame_equal(clean, again)


def test_crystal_graph_conv_equals_pyg_cgconv(small):
    from torch_geometric.nn import CGConv

    from matprobe.models.architectures import CrystalGraphConv

    sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", TARGET).sets
    batch = next(iter(DataLoader(sets["train"].graphs, batch_size=64)))
    torch.manual_seed(1)
    reference = CGConv(16, dim=41, batch_norm=True)
    ours = CrystalGraphConv(16, 41)
    ours.load_state_dict(reference.state_dict())  # the same parameter names and shapes
    x = torch.randn(batch.num_nodes, 16)
    edge_attr = GaussianExpansion(0.0, 8.0, 41, width=0.2)(batch.edge_dist)
    for mode in (True, False):
        reference.train(mode), ours.train(mode)
        torch.testing.assert_close(ours(x, batch.edge_index, edge_attr), reference(x, batch.edge_index, edge_attr), atol=1e-5, rtol=1e-5)


def test_a_job_resumed_with_another_thread_count_keeps_its_checkpoint(small, tmp_path, caplog):
    first = run(small, tmp_path / "run")
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    caplog.set_level("INFO", logger="matprobe.models.training")
    again = train_model(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", tmp_path / "run", TARGET, "cgcnn",
                        {"hidden": 16}, {**TRAINING, "knn": 4}, seed=0, threads=2, progress=False)
    assert f"resuming from {tmp_path / 'run' / 'checkpoint.pt'} after epoch 4" in caplog.text
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "history.parquet"), history)  # no epoch ran again
    assert again["id_test"] == first["id_test"] and again["latent_knn_distance"]["k"] == 4
    # a setting that changes the weights does not resume
    caplog.clear()
    run(small, tmp_path / "run", training={**TRAINING, "lr": 1e-3})
    assert "belongs to other settings; starting afresh" in caplog.text


def test_a_redrawn_split_of_the_same_name_and_sizes_never_resumes_another_draws_checkpoint(small, tmp_path, caplog):
    run(small, tmp_path / "run")
    split = json.loads((small / "omit-O.json").read_text())
    split["sets"]["train"][0], split["sets"]["val"][0] = split["sets"]["val"][0], split["sets"]["train"][0]
    redrawn = tmp_path / "draw1" / "omit-O.json"
    redrawn.parent.mkdir()
    redrawn.write_text(json.dumps({**split, "draw": 1}))
    caplog.set_level("INFO", logger="matprobe.models.training")
    metrics = train_model(small / "graphs.pt", small / "materials.parquet", redrawn, tmp_path / "run", TARGET, "cgcnn", {"hidden": 16},
                          TRAINING, seed=0, threads=1, progress=False)
    assert "belongs to other settings; starting afresh" in caplog.text and metrics["epochs_run"] == TRAINING["epochs"]


def test_an_unreadable_checkpoint_is_moved_aside_and_training_starts_afresh(small, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    caplog.set_level("INFO", logger="matprobe.models.training")
    metrics = run(small, out)
    assert (out / "checkpoint.pt.unreadable").read_bytes() == b"PK\x03\x04 truncated"
    assert "unreadable" in caplog.text and "moved to" in caplog.text
    assert metrics["epochs_run"] == TRAINING["epochs"]


def test_the_checkpoint_is_the_training_state(small, tmp_path):
    from matprobe.models.training import CHECKPOINT_FORMAT, TrainingState

    run(small, tmp_path / "run")
    stored = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert stored["format"] == CHECKPOINT_FORMAT
    state = TrainingState.from_checkpoint(stored)
    assert state.epoch == 4 and len(state.history) == 4 and 1 <= state.best_epoch <= 4
    assert state.to_checkpoint().keys() == stored.keys()
