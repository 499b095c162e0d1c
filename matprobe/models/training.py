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
from torch.utils.data import DataLoader
from tqdm import tqdm

from matprobe import MatprobeError, __version__
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.layout import CHECKPOINT_FILE, run_paths
from matprobe.models.architectures import model_options
from matprobe.models.seam import ModelRecord, TrainedModel, build_module, graph_kind_of
from matprobe.prepare.graphs import symmetry_reduced
from matprobe.prepare.sets import SplitData, load_split_data
from matprobe.runtime import Runtime

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


def _epoch_loader(items: list, collate, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """Epoch e's batches, shuffled with a generator seeded by (seed, e): a resumed run draws the same order."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate)


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

    def __init__(self, data: SplitData, target: str, model_name: str, module: torch.nn.Module, training: dict, seed: int,
                 device: torch.device, model_opts: dict | None = None, architecture: str | None = None, finished: bool = False):
        """`module`: a fresh model (`new_module`, built under the run's seed) from `model_opts`; `architecture`: what
        model.pt records to rebuild it (default `model_name`, a built-in); `finished`: a trained model, evaluated as it
        is, its outputs already in target units."""
        self.data, self.target, self.model_name, self.training, self.seed, self.device = data, target, model_name, training, seed, device
        self.architecture, self.finished = architecture or model_name, finished
        self.scale = TargetScale(0.0, 1.0) if finished else TargetScale.of(data.sets["train"].y)
        self.model = module.to(device)
        self.graphs = graph_kind_of(module)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=int(training["epochs"]),
                                                                    eta_min=training["lr"] * 0.01)
        self.settings = {"target": target, "model": model_name, "options": stored_options(self.model, model_opts or {}),
                         "training": {k: v for k, v in training.items() if k not in NOT_IN_FINGERPRINT}, "seed": seed,
                         "split": data.split.name, "n_train": len(data.sets["train"]),
                         # the crystals themselves: a control drawn again keeps its name and sizes, and must never
                         # resume from the checkpoint of another draw
                         "sets": fingerprint({name: sorted(map(str, data.split.sets.get(name, []))) for name in ("train", "val")})}
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
        self.resume(checkpoint_path)
        train, val = self.data.sets["train"], self.data.sets["val"]
        for item in train.graphs + val.graphs:
            item.y_std = (item.y - self.scale.mean) / self.scale.std
        epochs, patience = int(self.training["epochs"]), int(self.training["patience"])
        state = self.state
        bar = tqdm(total=epochs, initial=state.epoch, desc=f"{self.model_name} {self.data.split.name} {self.target}",
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

    def _train_epoch(self, graphs: list, epoch: int, checkpoint_path: Path) -> float:
        self.model.train()
        total, count = 0.0, 0
        loader = _epoch_loader(graphs, self.graphs.collate, self.training["batch_size"], self.seed, epoch)
        for batch_number, batch in enumerate(loader, start=1):
            batch = batch.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            prediction = self.model(batch)["prediction"]
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

    @property
    def record(self) -> ModelRecord:
        return ModelRecord(self.architecture, self.settings["options"], self.target, self.scale.mean, self.scale.std,
                           self.data.split.name, self.seed, runtime_metadata(self.device))

    def _predict(self, graphs: list) -> dict[str, np.ndarray]:
        out = TrainedModel(self.model, self.record, self.graphs).predict(graphs, self.training["batch_size"], self.device)
        return {"prediction": out.prediction, "latent": out.latent}

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
        metrics: dict = {"target": self.target, "model": self.model_name, "split": split.name, "seed": self.seed,
                         "best_epoch": state.best_epoch, "epochs_run": state.epoch, "dropped": self.data.dropped}
        for set_name, (crystal_set, y_pred, _) in outputs.items():
            metrics[set_name] = regression_metrics(crystal_set.y, y_pred)
        if "ood_test" in outputs and metrics["id_test"]["mae"]:
            metrics["ood_id_mae_ratio"] = metrics["ood_test"]["mae"] / metrics["id_test"]["mae"]
            crystal_set, y_pred, _ = outputs["ood_test"]
            per_element = {}
            for element in split.omitted_elements:
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

    def write(self, evaluation: Evaluation, outputs: dict[str, Path]) -> None:
        """The model, predictions, latents, history and metrics (last: the rule's completion marker for the
        summary), each atomically; `outputs`: layout.RUN_FILES["models"] names to paths."""
        write_torch(self.record.model_file(self.model.state_dict()), outputs["model"])
        write_parquet(evaluation.predictions, outputs["predictions"])
        write_parquet(evaluation.latents, outputs["latents"])
        write_parquet(pd.DataFrame(self.state.history), outputs["history"])
        write_json(evaluation.metrics, outputs["metrics"])
        log.info("%s: id_test MAE %s, ood_test MAE %s", outputs["model"].parent, evaluation.metrics.get("id_test", {}).get("mae"),
                 evaluation.metrics.get("ood_test", {}).get("mae"))


def train_model(graphs_path, materials_path, split_path, outputs, target: str, model_name: str, model_opts: dict,
                training: dict, seed: int, threads: int = 1, progress: bool = True, architecture: str | None = None,
                finished: bool = False) -> dict:
    """The training stage: train (or resume) one model and write its outputs (`outputs`: the rule's named outputs, or
    a folder for the layout's names in it, layout.run_paths); returns its metrics. `architecture`: a built-in name or
    a factory package.module:function (default `model_name`); a `finished` model is not trained: it is fitted to the
    training set only where it asks to be (`fit_to_training_set`, e.g. CHGNet's per-element references), then
    evaluated and written like a trained one."""
    outputs = run_paths("models", outputs)
    out_dir = outputs["model"].parent
    out_dir.mkdir(parents=True, exist_ok=True)
    device = Runtime.from_options(training, threads).apply()
    architecture = architecture or model_name
    module = new_module(architecture, model_opts, seed, model_name)
    data = load_split_data(graphs_path, materials_path, split_path, target, graph_kind_of(module))
    if any(data.dropped.values()):
        log.warning("dropped, without a graph or a %s value: %s", target, data.dropped)
    check_contract(module, graph_kind_of(module), data.sets["train"].graphs[:4], model_name)
    if training.get("symmetry_reduction", True) and getattr(module, "accepts_atom_weight", False):
        reduce_symmetry(data)
    trainer = Trainer(data, target, model_name, module, training, seed, device, model_opts, architecture, finished)
    if finished:
        if callable(getattr(module, "fit_to_training_set", None)):
            train = data.sets["train"]
            others = [item for name, crystal_set in data.sets.items() if name != "train" for item in crystal_set.graphs]
            log.info("%s fitted to the training set: %s", model_name, module.fit_to_training_set(train.graphs, train.y, others))
    else:
        trainer.fit(out_dir / CHECKPOINT_FILE, progress)
    evaluation = trainer.evaluate()
    trainer.write(evaluation, outputs)
    return evaluation.metrics


def new_module(architecture: str, model_opts: dict, seed: int, model_name: str | None = None) -> torch.nn.Module:
    """A freshly initialised model, its initial weights drawn under the run's seed; a factory that fails or returns
    something else is one line naming the config entry."""
    torch.manual_seed(seed)
    try:
        return build_module(architecture, model_opts)
    except MatprobeError as error:
        raise MatprobeError(f"config: model_options.{model_name or architecture}: {error}") from None
    except Exception as error:  # a user's factory: whatever it raises, one line naming the entry
        raise MatprobeError(f"config: model_options.{model_name or architecture}: its factory {architecture} failed "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''})") from None


def check_contract(module: torch.nn.Module, graphs, items: list, model_name: str, tolerance: float = 1e-4) -> None:
    """Before any training: on a few crystals the module returns the seam's outputs (matprobe.models.seam), with one
    contribution per atom whose crystal mean is the prediction; else one line naming the config entry."""
    entry = f"config: model_options.{model_name}"
    module.eval()
    with torch.no_grad():
        try:
            batch = graphs.collate(items)
            out = module(batch)
        except Exception as error:  # a user's model: whatever it raises, one line
            raise MatprobeError(f"{entry}: the model fails on {len(items)} training crystals ({type(error).__name__}: "
                                f"{str(error).splitlines()[0][:120] if str(error) else ''})") from None
    missing = [key for key in ("prediction", "contributions", "atoms", "latent") if not isinstance(out, dict) or key not in out]
    if missing:
        raise MatprobeError(f"{entry}: its forward returns no {', '.join(missing)} (matprobe.models.seam: a dict of "
                            "prediction, contributions, atoms, latent)")
    prediction, contributions = out["prediction"].reshape(-1), out["contributions"].reshape(-1)
    if prediction.shape[0] != batch.num_graphs or contributions.shape[0] != batch.batch.shape[0]:
        raise MatprobeError(f"{entry}: {prediction.shape[0]} predictions for {batch.num_graphs} crystals, "
                            f"{contributions.shape[0]} contributions for {batch.batch.shape[0]} atoms")
    counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(contributions.dtype)
    means = torch.zeros_like(prediction).index_add(0, batch.batch, contributions) / counts
    gap = float((means - prediction).abs().max())
    if not gap <= tolerance * max(1.0, float(prediction.abs().max())):
        raise MatprobeError(f"{entry}: its contributions do not average to its prediction (largest gap {gap:.3g} on "
                            f"{batch.num_graphs} training crystals); probes read them as the model's atom-wise terms")


def stored_options(module: torch.nn.Module, model_opts: dict) -> dict:
    """The options model.pt records to rebuild `module`: a built-in model's own (model_options), else those given."""
    return model_options(module) if hasattr(module, "config") and hasattr(module.config, "__dataclass_fields__") else dict(model_opts)


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
