"""Training and ID/OOD evaluation of one run (dataset, target, split, model, seed).

`Trainer` has three steps: `fit` (with resume), `evaluate` and `write`. Its whole state is a `TrainingState`, the
dataclass that the checkpoint stores, written atomically after every epoch: a job killed at any moment and
started again resumes from it and ends where an uninterrupted run would have (same seed, CPU, deterministic
mode). Epoch e shuffles with a generator seeded by (seed, e), so resuming needs no RNG state beyond the weights,
optimizer, scheduler and early-stopping counters the state holds. The checkpoint's fingerprint covers only what
changes the result, so a job resumed with another thread count or on another device keeps its checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from matprobe import MatprobeError, __version__
from matprobe.prepare.graphs import symmetry_reduced
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.models.architectures import build_model, model_options, regular_neighbors
from matprobe.runtime import Runtime
from matprobe.prepare.sets import SplitData, load_split_data

log = logging.getLogger("matprobe.models.training")

CHECKPOINT_FORMAT = 2  # 2: the state is a TrainingState (1: an ad-hoc dict)
# Training settings that change how fast or where a run computes, or what is reported after it, but not the
# weights it ends with: left out of the checkpoint fingerprint.
NOT_IN_FINGERPRINT = ("threads", "device", "deterministic", "knn")


class NonFiniteLoss(MatprobeError):
    pass


@dataclass
class TrainingState:
    """Everything a checkpoint holds: the counters of the epoch loop and the state dicts to resume from."""

    fingerprint: str
    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    stale: int = 0  # epochs since the best validation MAE
    history: list[dict] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None
    model: dict | None = None  # state dicts at the end of `epoch`
    optimizer: dict | None = None
    scheduler: dict | None = None

    def to_checkpoint(self) -> dict:
        # plain containers and tensors only, so that it loads with torch.load(weights_only=True)
        return {"format": CHECKPOINT_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_checkpoint(cls, stored: dict) -> "TrainingState":
        return cls(**{f.name: stored[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class TargetScale:
    """Targets are standardised with the training set's statistics; predictions are scaled back."""

    mean: float
    std: float

    @classmethod
    def of(cls, y: np.ndarray) -> "TargetScale":
        return cls(float(y.mean()), float(y.std()) or 1.0)


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def reduce_symmetry(data: SplitData) -> None:
    """One weighted atom per class of symmetry-equivalent atoms in every set: the same predictions, losses and
    gradients (batch norm weighted too) for about half the atoms of Materials Project crystals."""
    started = time.perf_counter()
    atoms = sum(int(g.num_nodes) for crystal_set in data.sets.values() for g in crystal_set.graphs)
    for crystal_set in data.sets.values():
        crystal_set.graphs = [symmetry_reduced(graph) for graph in crystal_set.graphs]
    kept = sum(int(g.num_nodes) for crystal_set in data.sets.values() for g in crystal_set.graphs)
    log.info("symmetry reduction: %d of %d atoms kept (%.1f s)", kept, atoms, time.perf_counter() - started)


@dataclass
class Evaluation:
    metrics: dict
    predictions: pd.DataFrame
    latents: pd.DataFrame


class Trainer:
    """Fits one model on a split's train set with early stopping on val, then evaluates it on every set."""

    def __init__(self, data: SplitData, target: str, model_name: str, model_opts: dict, training: dict, seed: int,
                 device: torch.device):
        self.data, self.target, self.model_name, self.training, self.seed, self.device = data, target, model_name, training, seed, device
        self.scale = TargetScale.of(data.sets["train"].y)
        torch.manual_seed(seed)
        self.model = build_model(model_name, model_opts).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=int(training["epochs"]),
                                                                    eta_min=training["lr"] * 0.01)
        self.settings = {"target": target, "model": model_name, "options": model_options(self.model),
                         "training": {k: v for k, v in training.items() if k not in NOT_IN_FINGERPRINT}, "seed": seed,
                         "split": data.split["name"], "n_train": len(data.sets["train"])}
        self.state = TrainingState(fingerprint(self.settings))

    # ---- fit ---------------------------------------------------------------------------------------------

    def resume(self, checkpoint_path: Path) -> None:
        """Continue from a checkpoint of the same settings; one of other settings, or an unreadable one, is set
        aside and training starts afresh."""
        if not checkpoint_path.exists():
            return
        try:
            stored = torch.load(checkpoint_path, weights_only=True, map_location=self.device)
        except Exception as exc:  # a truncated or foreign file: keep it for a look, never block the job
            aside = checkpoint_path.with_name(checkpoint_path.name + ".unreadable")
            checkpoint_path.replace(aside)
            log.warning("%s is unreadable (%s); moved to %s, starting afresh", checkpoint_path, type(exc).__name__, aside)
            return
        if stored.get("format") != CHECKPOINT_FORMAT or stored.get("fingerprint") != self.state.fingerprint:
            log.info("%s belongs to other settings; starting afresh", checkpoint_path)
            return
        state = TrainingState.from_checkpoint(stored)
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.state = state
        log.info("resuming from %s after epoch %d", checkpoint_path, state.epoch)

    def fit(self, checkpoint_path: Path, progress: bool = True) -> TrainingState:
        """Train until the last epoch or until `patience` epochs bring no better validation MAE, writing the
        state after every epoch; the best weights are loaded at the end."""
        from tqdm import tqdm

        self.resume(checkpoint_path)
        train, val = self.data.sets["train"], self.data.sets["val"]
        for item in train.graphs + val.graphs:
            item.y_std = (item.y - self.scale.mean) / self.scale.std
        epochs, patience = int(self.training["epochs"]), int(self.training["patience"])
        state = self.state
        bar = tqdm(total=epochs, initial=state.epoch, desc=f"{self.model_name} {self.data.split['name']} {self.target}",
                   unit="epoch", disable=not progress)
        while state.epoch < epochs and state.stale < patience:
            epoch = state.epoch + 1
            started = time.perf_counter()
            train_loss = self._train_epoch(train.graphs, epoch, checkpoint_path)
            val_mae = self._mae(val)
            state.history.append({"epoch": epoch, "train_loss": train_loss, "val_mae": val_mae,
                                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started})
            if val_mae < state.best_val or not len(val):
                state.best_val, state.best_epoch, state.stale = val_mae, epoch, 0
                state.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                state.stale += 1
            state.epoch = epoch
            state.model, state.optimizer, state.scheduler = self.model.state_dict(), self.optimizer.state_dict(), self.scheduler.state_dict()
            write_torch(state.to_checkpoint(), checkpoint_path)
            bar.set_postfix(loss=f"{train_loss:.4f}", val_mae=f"{val_mae:.4f}")
            bar.update()
        bar.close()
        self.model.load_state_dict(state.best_weights)
        return state

    def _train_epoch(self, graphs: list[Data], epoch: int, checkpoint_path: Path) -> float:
        self.model.train()
        total, count = 0.0, 0
        for batch_number, batch in enumerate(_epoch_loader(graphs, self.training["batch_size"], self.seed, epoch, True), start=1):
            batch = batch.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            prediction = self.model(batch, neighbors=regular_neighbors(batch.edge_index, batch.num_nodes))["prediction"]
            loss = torch.nn.functional.l1_loss(prediction, batch.y_std)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"{checkpoint_path.parent}: non-finite training loss ({loss.item()}) at epoch {epoch}, "
                                    f"batch {batch_number}; the checkpoint of epoch {self.state.epoch} is kept")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.training["clip_norm"])
            self.optimizer.step()
            total += loss.item() * batch.num_graphs
            count += batch.num_graphs
        self.scheduler.step()
        return total / count

    def _mae(self, crystal_set) -> float:
        if not len(crystal_set):
            return math.nan
        predicted = self._predict(crystal_set.graphs)["prediction"]
        return float(np.mean(np.abs(predicted - crystal_set.y)))

    def _predict(self, graphs: list[Data]) -> dict[str, np.ndarray]:
        out = predict(self.model, graphs, self.training["batch_size"], self.device)
        out["prediction"] = out["prediction"] * self.scale.std + self.scale.mean
        return out

    # ---- evaluate and write ---------------------------------------------------------------------------------

    def evaluate(self) -> Evaluation:
        """Predictions, latents and metrics of every set with the weights the model holds (the best after fit)."""
        predictions, latents, outputs = [], [], {}
        for set_name, crystal_set in self.data.sets.items():
            out = self._predict(crystal_set.graphs)
            outputs[set_name] = (crystal_set, out["prediction"], out["latent"])
            predictions.append(pd.DataFrame({"id": crystal_set.ids, "set": set_name, "y_true": crystal_set.y,
                                             "y_pred": out["prediction"], "elements": crystal_set.elements}))
            latents.append(pd.DataFrame({"id": crystal_set.ids, "set": set_name, "latent": list(out["latent"].astype(np.float32))}))

        split, state = self.data.split, self.state
        metrics: dict = {"target": self.target, "model": self.model_name, "split": split["name"], "seed": self.seed,
                         "best_epoch": state.best_epoch, "epochs_run": state.epoch, "dropped": self.data.dropped}
        for set_name, (crystal_set, y_pred, _) in outputs.items():
            metrics[set_name] = regression_metrics(crystal_set.y, y_pred)
        if "ood_test" in outputs and metrics["id_test"]["mae"]:
            metrics["ood_id_mae_ratio"] = metrics["ood_test"]["mae"] / metrics["id_test"]["mae"]
            crystal_set, y_pred, _ = outputs["ood_test"]
            per_element = {}
            for element in split["omitted_elements"]:
                mask = np.array([element in e for e in crystal_set.elements], dtype=bool)
                if mask.any():
                    per_element[element] = {"n": int(mask.sum()), "mae": float(np.mean(np.abs(y_pred[mask] - crystal_set.y[mask])))}
            metrics["ood_mae_by_element"] = per_element
        k = int(self.training.get("knn", 5))
        train_latent = outputs["train"][2]
        metrics["latent_knn_distance"] = {"k": k}
        for set_name in ("id_test", "ood_test"):
            if set_name in outputs and len(outputs[set_name][2]):
                metrics["latent_knn_distance"][set_name] = float(knn_distance(outputs[set_name][2], train_latent, k).mean())
        return Evaluation(metrics, pd.concat(predictions, ignore_index=True), pd.concat(latents, ignore_index=True))

    def write(self, evaluation: Evaluation, out_dir: Path) -> None:
        """model.pt, predictions.parquet, latents.parquet, history.parquet and metrics.json (last: the rule's
        completion marker for the summary), each atomically."""
        weights = self.model.state_dict()
        write_torch({"state_dict": weights, "weights_sha256": weights_checksum(weights), "model": self.model_name,
                     "options": self.settings["options"], "target": self.target, "target_mean": self.scale.mean,
                     "target_std": self.scale.std,
                     "split": self.data.split["name"], "seed": self.seed, "metadata": runtime_metadata(self.device)},
                    out_dir / "model.pt")
        write_parquet(evaluation.predictions, out_dir / "predictions.parquet")
        write_parquet(evaluation.latents, out_dir / "latents.parquet")
        write_parquet(pd.DataFrame(self.state.history), out_dir / "history.parquet")
        write_json(evaluation.metrics, out_dir / "metrics.json")
        log.info("%s: id_test MAE %s, ood_test MAE %s", out_dir, evaluation.metrics.get("id_test", {}).get("mae"),
                 evaluation.metrics.get("ood_test", {}).get("mae"))


def train_model(graphs_path, materials_path, split_path, out_dir, target: str, model_name: str, model_opts: dict,
                training: dict, seed: int, threads: int = 1, progress: bool = True) -> dict:
    """The training stage: train (or resume) one model and write its outputs to `out_dir`; returns its metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = Runtime.from_options(training, threads).apply()
    data = load_split_data(graphs_path, materials_path, split_path, target)
    if any(data.dropped.values()):
        log.warning("dropped, without a graph or a %s value: %s", target, data.dropped)
    if training.get("symmetry_reduction", True):
        reduce_symmetry(data)
    trainer = Trainer(data, target, model_name, model_opts, training, seed, device)
    trainer.fit(out_dir / "checkpoint.pt", progress)
    evaluation = trainer.evaluate()
    trainer.write(evaluation, out_dir)
    return evaluation.metrics


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


def runtime_metadata(device) -> dict:
    meta = {"matprobe": __version__, "torch": str(torch.__version__), "python": platform.python_version(), "device": str(device),
            "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta


def weights_checksum(state_dict: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor of a state dict, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def load_trained_model(path):
    """A trained model and its record from model.pt (weights_only: no code runs on load), its weights checked
    against the checksum the record carries, so that a corrupted file never loads silently."""
    try:
        record = torch.load(path, weights_only=True, map_location="cpu")
        model = build_model(record["model"], record["options"])
        model.load_state_dict(record["state_dict"])
    except Exception as exc:  # truncated, foreign or damaged: one line naming the file
        raise MatprobeError(f"{path}: not a readable matprobe model ({type(exc).__name__}); delete it and re-run its "
                            "training job (snakemake re-plans it)") from None
    stored = record.get("weights_sha256")
    if stored is not None and stored != weights_checksum(record["state_dict"]):
        raise MatprobeError(f"{path}: its weights do not match the checksum in its record (the file is damaged); "
                            "delete it and re-run its training job")
    model.eval()
    return model, record
