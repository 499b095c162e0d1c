"""The model seam: the one object every probe stage receives, whatever the architecture behind it.

A crystal model is an `nn.Module` whose `forward(batch)` returns a dict of tensors
    prediction     (crystals,)       the crystal's value
    contributions  (atoms,)          one value per atom, whose mean over the crystal is the prediction
    atoms          (atoms, H)        the atom representations h that the atom-wise head reads
    latent         (crystals, H)     the mean of h over each crystal
in the model's own output units (standardised targets for the models the workflow trains; the record scales them
back), and whose `head(h)` applies its atom-wise readout. Its inputs come from a *graph kind*, which turns the
workflow's cached graphs (matprobe.prepare.graphs) or edited crystals into items and batches; CGCNN and SchNet read
PyG graphs of the neighbour list, ALIGNN adds the bond-angle line graph, CHGNet builds its own.

`TrainedModel` joins the module, its `ModelRecord` (target, standardisation, graph settings, provenance) and its
graph kind, and gives the probes what they need: physical-unit predictions, contributions and representations in
one batched pass (`predict`), the head in physical units (`head`), and the parameters a landscape moves. What a
model cannot give (no input-space attribution without node and edge inputs, no element table without an element
encoder) is a missing *capability*: the stages that need it say so in one line at planning time (`requires`).

Input-space attribution (the `inputs` capability) differentiates the forward pass split at its inputs:
`node_inputs(z)` (atoms, F), `edge_inputs(edge_dist)` (bonds, G), and `forward_with_inputs(batch, node_inputs,
edge_inputs)`, the outputs on the batch with those inputs in place of its own. The whole batch goes in, so that a
model reads whatever else it needs from it (ALIGNN its line graph of bond angles). TRIM's domain spaces also need,
where a model has them, `node_input_layout()` (the node inputs' columns per element property, in the physical
feature layout) and `edge_input_centres()` (the distance in Å each edge-input column is centred on).

Architectures are registered by name (cgcnn, schnet, alignn, chgnet) or named by a factory `package.module:function`
(docs/own-model.md): the factory takes the options dict and returns the module; the module's class may carry a
`graph_kind` attribute (default: the workflow's crystal graphs)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from matprobe import MatprobeError
from matprobe.config import REGISTERED_MODELS
from matprobe.models.architectures import MODELS as BUILT_IN, build_model, regular_neighbors
from matprobe.prepare.graphs import build_graph, collate_graphs
from matprobe.prepare.sets import graph_data

MODEL_FILE_KEYS = ("state_dict", "weights_sha256", "model", "options", "target", "target_mean", "target_std", "split",
                   "seed", "metadata")

# What a probe may need beyond predictions: each stage declares its needs (STAGE_NEEDS), each model what it has.
CAPABILITIES = {
    "contributions": "atom-wise contributions that average to the prediction",
    "atoms": "atom representations and the head that reads them",
    "inputs": "node and edge inputs to differentiate (integrated gradients, TRIM)",
    "elements": "a representation per element (element embeddings)",
}
STAGE_NEEDS = {
    "landscape": (),
    "attribution": ("contributions", "inputs", "elements"),
    "knobs": ("contributions", "atoms"),
    "probe_maps": ("contributions",),
    "interventions": ("contributions",),
}


# ---- graph kinds ----------------------------------------------------------------------------------------------


class CrystalGraphs:
    """The workflow's neighbour-list graphs as PyG `Data` (CGCNN, SchNet and any model that reads them): z,
    edge_index, edge_dist, y; a batch also carries `neighbors` (k when every atom has exactly k edges in order, the
    convolutions' fast path, else 0; see architectures.regular_neighbors)."""

    name = "crystal"

    def from_stored(self, stored: dict, ids: Sequence[str], targets: np.ndarray) -> list:
        return graph_data(stored, list(ids), targets)

    def from_crystals(self, crystals, graph_settings: dict) -> list:
        """Graphs of (edited) crystals, built exactly as the graph stage builds them."""
        ids = [str(k) for k in range(len(crystals))]
        cutoff, k = float(graph_settings["cutoff"]), graph_settings.get("max_neighbors")
        stored = collate_graphs(ids, [build_graph(c, cutoff, k) for c in crystals], {})
        return self.from_stored(stored, ids, np.zeros(len(ids)))

    def collate(self, items: list) -> Batch:
        batch = Batch.from_data_list(items)
        # 0 rather than None for no fast path: PyG drops an attribute set to None, and landscapes read this one
        batch.neighbors = regular_neighbors(batch.edge_index, batch.num_nodes) or 0
        return batch


GRAPH_KINDS: dict[str, Callable[[], object]] = {"crystal": CrystalGraphs}


def graph_kind_of(module: nn.Module):
    """The graph kind a module reads: its class's `graph_kind` (an instance or a registered name), else crystal."""
    kind = getattr(module, "graph_kind", "crystal")
    return GRAPH_KINDS[kind]() if isinstance(kind, str) else kind


# ---- architectures: a name or a factory --------------------------------------------------------------------


def _registered() -> dict[str, str]:
    """Architectures that come with matprobe but live in their own modules (imported only when used), as the config
    registers them (config.REGISTERED_MODELS, read at planning time without torch)."""
    return {name: factory for name, (factory, _) in REGISTERED_MODELS.items()}


def resolve_factory(architecture: str) -> Callable[[dict], nn.Module]:
    """The function that builds a module from its options: a built-in name, a registered one, or a factory named
    `package.module:function`. Bad names raise MatprobeError naming the architecture."""
    if architecture in BUILT_IN:
        return lambda options: build_model(architecture, options)
    target = _registered().get(architecture, architecture)
    module_name, _, function_name = target.partition(":")
    if not function_name:
        raise MatprobeError(f"model {architecture!r}: not a built-in model ({', '.join(sorted(BUILT_IN))}, "
                            f"{', '.join(sorted(_registered()))}) and not a factory 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except ImportError as exc:
        raise MatprobeError(f"model {architecture!r}: cannot import {module_name} ({exc})") from None
    except AttributeError:
        raise MatprobeError(f"model {architecture!r}: {module_name} has no {function_name}") from None
    if not callable(factory):
        raise MatprobeError(f"model {architecture!r}: {target} is not callable")
    return factory


def build_module(architecture: str, options: dict) -> nn.Module:
    """A fresh module of an architecture; one that is not a crystal model (an nn.Module with a forward and a head,
    see the module docstring) is refused in one line."""
    module = resolve_factory(architecture)(dict(options))
    if not isinstance(module, nn.Module):
        raise MatprobeError(f"model {architecture!r}: its factory returned {type(module).__name__}, not a torch nn.Module")
    return module


# ---- the record and the trained model ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRecord:
    """What model.pt stores besides the weights. Predictions in physical units are `standardised * std + mean`."""

    architecture: str
    options: dict
    target: str
    mean: float
    std: float
    split: str
    seed: int
    metadata: dict = field(default_factory=dict)  # versions, device, provenance

    def to_physical(self, values):
        return values * self.std + self.mean

    def to_standardised(self, values):
        return (values - self.mean) / self.std

    @classmethod
    def from_model_file(cls, stored: dict) -> "ModelRecord":
        return cls(stored["model"], dict(stored["options"]), stored["target"], float(stored["target_mean"]),
                   float(stored["target_std"]), stored["split"], int(stored["seed"]), dict(stored.get("metadata") or {}))

    def model_file(self, state_dict: dict) -> dict:
        """The dict model.pt holds (plain containers and tensors: it loads with weights_only=True)."""
        return {"state_dict": state_dict, "weights_sha256": weights_checksum(state_dict), "model": self.architecture,
                "options": self.options, "target": self.target, "target_mean": self.mean, "target_std": self.std,
                "split": self.split, "seed": self.seed, "metadata": self.metadata}


@dataclass
class Predictions:
    """One batched pass over a list of items, in physical units and item order; per-atom arrays are concatenated,
    `atom_ptr` marks where each crystal's atoms start."""

    prediction: np.ndarray  # float64 (crystals,)
    latent: np.ndarray  # float32 (crystals, H)
    contributions: np.ndarray  # float64 (atoms,)
    atoms: np.ndarray | None  # float32 (atoms, H), when asked for
    atom_ptr: np.ndarray  # (crystals + 1,)
    numbers: np.ndarray  # (atoms,) atomic numbers, in the order of the per-atom arrays

    def per_crystal(self, values: np.ndarray) -> list[np.ndarray]:
        return np.split(values, self.atom_ptr[1:-1])


@dataclass
class TrainedModel:
    module: nn.Module
    record: ModelRecord
    graphs: object = None  # the graph kind; from the module when not given
    source: str = ""  # the file it was loaded from, for messages

    def __post_init__(self):
        self.graphs = self.graphs or graph_kind_of(self.module)
        self.module.eval()

    # ---- what it can give ----------------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        module, found = self.module, {"contributions"}
        if callable(getattr(module, "head", None)):
            found.add("atoms")
        if all(callable(getattr(module, name, None)) for name in ("node_inputs", "edge_inputs", "forward_with_inputs")):
            found.add("inputs")
        if callable(getattr(module, "element_representation", None)):
            found.add("elements")
        return frozenset(found)

    def missing(self, stage: str) -> list[str]:
        return [need for need in STAGE_NEEDS.get(stage, ()) if need not in self.capabilities]

    def require(self, stage: str, needs: Sequence[str] | None = None) -> None:
        lacking = [n for n in (needs if needs is not None else STAGE_NEEDS.get(stage, ())) if n not in self.capabilities]
        if lacking:
            raise MatprobeError(f"{self.source or self.record.architecture}: the {stage} stage needs "
                                + "; ".join(CAPABILITIES[n] for n in lacking) + f", which {self.record.architecture} does not give")

    # ---- evaluation ------------------------------------------------------------------------------------------
    def to(self, device) -> "TrainedModel":
        self.module.to(device)
        return self

    def items(self, stored: dict, ids: Sequence[str], targets: np.ndarray) -> list:
        return self.graphs.from_stored(stored, ids, targets)

    def batches(self, items: list, batch_size: int, device=None):
        """Collated batches in item order (on `device` when given)."""
        for start in range(0, len(items), batch_size):
            batch = self.graphs.collate(items[start : start + batch_size])
            yield batch.to(device) if device is not None else batch

    def outputs(self, batch) -> dict[str, torch.Tensor]:
        """The module's outputs on one batch, in its own units (standardised for trained models)."""
        return self.module(batch)

    @torch.no_grad()
    def predict(self, items: list, batch_size: int = 64, device=None, keep_atoms: bool = False) -> Predictions:
        """Predictions, latents, contributions (and representations) of `items` in physical units: the one batched
        inference loop every stage uses."""
        self.module.eval()
        predictions, latents, contributions, atoms, counts, numbers = [], [], [], [], [], []
        for batch in self.batches(items, batch_size, device):
            out = self.outputs(batch)
            predictions.append(out["prediction"].double().cpu())
            latents.append(out["latent"].cpu())
            contributions.append(out["contributions"].double().cpu())
            if keep_atoms:
                atoms.append(out["atoms"].cpu())
            counts.append(torch.bincount(batch.batch.cpu(), minlength=batch.num_graphs))
            numbers.append(batch.z.cpu())
        if not predictions:
            return Predictions(np.zeros(0), np.zeros((0, 0), np.float32), np.zeros(0), None, np.zeros(1, np.int64), np.zeros(0, np.int64))
        ptr = np.concatenate([[0], np.cumsum(torch.cat(counts).numpy())])
        return Predictions(self.record.to_physical(torch.cat(predictions).numpy()), torch.cat(latents).numpy(),
                           self.record.to_physical(torch.cat(contributions).numpy()),
                           torch.cat(atoms).numpy() if keep_atoms else None, ptr, torch.cat(numbers).numpy())

    def head(self, atoms: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The atom-wise head on representations of atoms of elements `z`, physical units (float64). Heads with a
        per-element reference (CHGNet's site energies) need z; the others ignore it."""
        takes_z = z is not None and "z" in inspect.signature(self.module.head).parameters
        values = self.module.head(atoms, z) if takes_z else self.module.head(atoms)
        return self.record.to_physical(values.reshape(-1).double())


# ---- model files --------------------------------------------------------------------------------------------


def weights_checksum(state_dict: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor of a state dict, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def load_trained(path, device="cpu") -> TrainedModel:
    """The trained model in model.pt (weights_only: no code runs on load), its weights checked against the checksum
    its record carries, so that a damaged file never loads silently."""
    try:
        stored = torch.load(path, weights_only=True, map_location="cpu")
        record = ModelRecord.from_model_file(stored)
    except Exception as exc:  # truncated, foreign or damaged: one line naming the file
        raise MatprobeError(f"{path}: not a readable matprobe model ({type(exc).__name__}); delete it and re-run its "
                            "training job (snakemake re-plans it)") from None
    if stored.get("weights_sha256") is not None and stored["weights_sha256"] != weights_checksum(stored["state_dict"]):
        raise MatprobeError(f"{path}: its weights do not match the checksum in its record (the file is damaged); "
                            "delete it and re-run its training job")
    module = build_module(record.architecture, record.options)
    try:
        module.load_state_dict(stored["state_dict"])
    except RuntimeError as exc:
        raise MatprobeError(f"{path}: its weights do not fit a {record.architecture} built from its options "
                            f"({str(exc).splitlines()[0]})") from None
    return TrainedModel(module, record, source=str(Path(path))).to(device)
