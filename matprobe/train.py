"""Training and ID/OOD evaluation of one (dataset, target, split, model, seed) combination.

Resumable: a checkpoint is written atomically after every epoch; a job killed at any moment and started
again resumes from it and ends where an uninterrupted run would have (same seed, CPU, deterministic mode).
Epoch e shuffles with a generator seeded by (seed, e), so resuming needs no RNG state beyond the weights,
optimizer, scheduler and early-stopping counters the checkpoint holds."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from matprobe import MatprobeError, __version__
from matprobe.data import load_materials
from matprobe.graphs import load_graphs, symmetry_reduced
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.models import build_model, model_options, regular_neighbors
from matprobe.splits import SETS

log = logging.getLogger("matprobe.train")

CHECKPOINT_FORMAT = 1


class NonFiniteLoss(MatprobeError):
    pass


def graph_data(stored: dict, ids: list[str], targets: np.ndarray) -> list[Data]:
    """PyG Data objects for the given ids (each: z, edge_index, edge_dist, y, index into `ids`)."""
    position = {crystal_id: k for k, crystal_id in enumerate(stored["ids"])}
    node_ptr, edge_ptr = stored["node_ptr"], stored["edge_ptr"]
    items = []
    for k, crystal_id in enumerate(ids):
        g = position[crystal_id]
        n0, n1, e0, e1 = int(node_ptr[g]), int(node_ptr[g + 1]), int(edge_ptr[g]), int(edge_ptr[g + 1])
        items.append(
            Data(
                z=stored["numbers"][n0:n1].long(),
                edge_index=stored["edge_index"][:, e0:e1].long(),
                edge_dist=stored["edge_dist"][e0:e1],
                y=torch.tensor([float(targets[k])], dtype=torch.float32),
                item=torch.tensor([k]),
                num_nodes=n1 - n0,
            )
        )
    return items


def load_split_data(graphs_path, materials_path, split_path, target: str) -> tuple[dict, dict, dict]:
    """Per set: ids, targets and graphs; crystals without a graph or without the target are dropped and counted."""
    split = json.loads(Path(split_path).read_text())
    materials = load_materials(materials_path, columns=["id", "elements", target])
    stored = load_graphs(graphs_path)
    have_graph = set(stored["ids"])
    values = dict(zip(materials["id"], materials[target]))
    elements = dict(zip(materials["id"], materials["elements"]))
    sets, dropped = {}, {}
    for set_name in SETS:
        if set_name not in split["sets"]:
            continue
        members = split["sets"][set_name]
        usable = [i for i in members if i in have_graph and np.isfinite(values.get(i, np.nan))]
        dropped[set_name] = len(members) - len(usable)
        y = np.array([values[i] for i in usable], dtype=np.float64)
        sets[set_name] = {"ids": usable, "y": y, "elements": [list(elements[i]) for i in usable], "data": graph_data(stored, usable, y)}
    if not sets.get("train", {}).get("ids"):
        raise MatprobeError(f"{split_path}: no training crystal has both a graph and a {target} value")
    return split, sets, dropped


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _epoch_loader(data: list[Data], batch_size: int, seed: int, epoch: int, shuffle: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.no_grad()
def predict(model, data: list[Data], batch_size: int, device) -> dict[str, np.ndarray]:
    """Predictions (standardised units), latents and per-atom contributions, in the order of `data`."""
    model.eval()
    predictions, latents, contributions = [], [], []
    for batch in _epoch_loader(data, batch_size, 0, 0, shuffle=False):
        batch = batch.to(device)
        out = model(batch, neighbors=regular_neighbors(batch.edge_index, batch.num_nodes))
        predictions.append(out["prediction"].cpu())
        latents.append(out["latent"].cpu())
        contributions.append(out["contributions"].cpu())
    return {
        "prediction": torch.cat(predictions).numpy().astype(np.float64),
        "latent": torch.cat(latents).numpy(),
        "contributions": torch.cat(contributions).numpy(),
    }


def train_model(
    graphs_path,
    materials_path,
    split_path,
    out_dir,
    target: str,
    model_name: str,
    model_opts: dict,
    training: dict,
    seed: int,
    threads: int = 1,
    progress: bool = True,
    stop_after_epochs: int | None = None,
) -> dict:
    """Train (or resume) one model and write model.pt, metrics.json, predictions.parquet, latents.parquet
    and history.parquet to `out_dir`. `stop_after_epochs` ends the process early (tests of resuming)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(threads)))
    torch.set_flush_denormal(True)
    device = choose_device(training.get("device", "auto"))
    if training.get("deterministic", True):
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")

    split, sets, dropped = load_split_data(graphs_path, materials_path, split_path, target)
    if training.get("symmetry_reduction", True):
        # one weighted atom per class of symmetry-equivalent atoms: the same predictions, losses and gradients
        # (batch norm weighted too) for about half the atoms of Materials Project crystals
        started = time.perf_counter()
        atoms = sum(int(g.num_nodes) for content in sets.values() for g in content["data"])
        for content in sets.values():
            content["data"] = [symmetry_reduced(graph) for graph in content["data"]]
        kept = sum(int(g.num_nodes) for content in sets.values() for g in content["data"])
        log.info("symmetry reduction: %d of %d atoms kept (%.1f s)", kept, atoms, time.perf_counter() - started)
    train_y = sets["train"]["y"]
    mean, std = float(train_y.mean()), float(train_y.std()) or 1.0

    torch.manual_seed(seed)
    model = build_model(model_name, model_opts).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])
    epochs = int(training["epochs"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=training["lr"] * 0.01)
    settings = {"target": target, "model": model_name, "options": model_options(model), "training": training, "seed": seed,
                "split": split["name"], "n_train": len(train_y)}
    key = fingerprint(settings)

    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "stale": 0, "history": [], "best_state": None}
    checkpoint_path = out_dir / "checkpoint.pt"
    if checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, weights_only=True, map_location=device)
        if checkpoint.get("fingerprint") == key and checkpoint.get("format") == CHECKPOINT_FORMAT:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            state = checkpoint["state"]
            log.info("resuming from %s after epoch %d", checkpoint_path, state["epoch"])
        else:
            log.info("%s belongs to other settings; starting afresh", checkpoint_path)

    for item in sets["train"]["data"] + sets["val"]["data"]:
        item.y_std = (item.y - mean) / std
    val_y = sets["val"]["y"]
    bar = tqdm(total=epochs, initial=state["epoch"], desc=f"{model_name} {split['name']} {target}", unit="epoch", disable=not progress)
    patience = int(training["patience"])
    while state["epoch"] < epochs and state["stale"] < patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for batch_number, batch in enumerate(_epoch_loader(sets["train"]["data"], training["batch_size"], seed, epoch, True), start=1):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            prediction = model(batch, neighbors=regular_neighbors(batch.edge_index, batch.num_nodes))["prediction"]
            loss = torch.nn.functional.l1_loss(prediction, batch.y_std)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"{out_dir}: non-finite training loss ({loss.item()}) at epoch {epoch}, batch {batch_number}; "
                                    f"the checkpoint of epoch {state['epoch']} is kept")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), training["clip_norm"])
            optimizer.step()
            total += loss.item() * batch.num_graphs
            count += batch.num_graphs
        scheduler.step()
        val_pred = predict(model, sets["val"]["data"], training["batch_size"], device)["prediction"] * std + mean
        val_mae = float(np.mean(np.abs(val_pred - val_y))) if len(val_y) else math.nan
        state["history"].append({"epoch": epoch, "train_loss": total / count, "val_mae": val_mae,
                                 "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started})
        if val_mae < state["best_val"] or not len(val_y):
            state.update(best_val=val_mae, best_epoch=epoch, stale=0, best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        write_torch({"format": CHECKPOINT_FORMAT, "fingerprint": key, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state}, checkpoint_path)
        bar.set_postfix(loss=f"{total / count:.4f}", val_mae=f"{val_mae:.4f}")
        bar.update()
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            bar.close()
            return {"stopped_after": epoch}
    bar.close()

    model.load_state_dict(state["best_state"])
    return _evaluate_and_write(model, split, sets, dropped, state, settings, mean, std, training, device, out_dir)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    error = y_pred - y_true
    n = len(y_true)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "bias": None}
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1.0 - np.sum(error**2) / ss_tot) if ss_tot > 0 else None,
        "bias": float(np.mean(error)),
    }


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Mean Euclidean distance from each query to its k nearest reference vectors."""
    reference_t = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    out = []
    for start in range(0, len(queries), chunk):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32))
        distances = torch.cdist(block, reference_t)
        out.append(distances.topk(min(k, reference_t.shape[0]), largest=False).values.mean(dim=1))
    return torch.cat(out).numpy() if out else np.zeros(0)


def _evaluate_and_write(model, split, sets, dropped, state, settings, mean, std, training, device, out_dir: Path) -> dict:
    predictions, latents, outputs = [], [], {}
    for set_name, content in sets.items():
        out = predict(model, content["data"], training["batch_size"], device)
        y_pred = out["prediction"] * std + mean
        outputs[set_name] = (content, y_pred, out["latent"])
        predictions.append(pd.DataFrame({"id": content["ids"], "set": set_name, "y_true": content["y"], "y_pred": y_pred,
                                         "elements": content["elements"]}))
        latents.append(pd.DataFrame({"id": content["ids"], "set": set_name, "latent": list(out["latent"].astype(np.float32))}))

    metrics: dict = {"target": settings["target"], "model": settings["model"], "split": split["name"], "seed": settings["seed"],
                     "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "dropped": dropped}
    for set_name, (content, y_pred, _) in outputs.items():
        metrics[set_name] = regression_metrics(content["y"], y_pred)
    if "ood_test" in outputs and metrics["id_test"]["mae"]:
        metrics["ood_id_mae_ratio"] = metrics["ood_test"]["mae"] / metrics["id_test"]["mae"]
        content, y_pred, _ = outputs["ood_test"]
        per_element = {}
        for element in split["omitted_elements"]:
            mask = np.array([element in e for e in content["elements"]], dtype=bool)
            if mask.any():
                per_element[element] = {"n": int(mask.sum()), "mae": float(np.mean(np.abs(y_pred[mask] - content["y"][mask])))}
        metrics["ood_mae_by_element"] = per_element
    k = int(training.get("knn", 5))
    train_latent = outputs["train"][2]
    metrics["latent_knn_distance"] = {"k": k}
    for set_name in ("id_test", "ood_test"):
        if set_name in outputs and len(outputs[set_name][2]):
            metrics["latent_knn_distance"][set_name] = float(knn_distance(outputs[set_name][2], train_latent, k).mean())

    write_torch(
        {
            "state_dict": model.state_dict(),
            "model": settings["model"],
            "options": settings["options"],
            "target": settings["target"],
            "target_mean": mean,
            "target_std": std,
            "split": split["name"],
            "seed": settings["seed"],
            "metadata": runtime_metadata(device),
        },
        out_dir / "model.pt",
    )
    write_parquet(pd.concat(predictions, ignore_index=True), out_dir / "predictions.parquet")
    write_parquet(pd.concat(latents, ignore_index=True), out_dir / "latents.parquet")
    write_parquet(pd.DataFrame(state["history"]), out_dir / "history.parquet")
    write_json(metrics, out_dir / "metrics.json")
    log.info("%s: id_test MAE %s, ood_test MAE %s", out_dir, metrics.get("id_test", {}).get("mae"), metrics.get("ood_test", {}).get("mae"))
    return metrics


def runtime_metadata(device) -> dict:
    meta = {"matprobe": __version__, "torch": str(torch.__version__), "python": platform.python_version(), "device": str(device),
            "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta


def load_trained_model(path):
    """A trained model and its record from model.pt (weights_only: no code runs on load)."""
    record = torch.load(path, weights_only=True, map_location="cpu")
    model = build_model(record["model"], record["options"])
    model.load_state_dict(record["state_dict"])
    model.eval()
    return model, record
