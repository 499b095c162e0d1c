"""Loss landscapes around trained weights, on train (a fixed subset), val, id_test and ood_test with the
same directions, so that their shapes can be compared.

Directions are random Gaussian with filter normalisation (Li et al. 2018: each output filter of a weight
tensor scaled to the norm of the trained filter; options `layer`, `model`, `none`), over the weight tensors
only by default (biases and batch-norm parameters stay at their trained values: perturbing them is the
known cause of NaN landscapes), the second orthogonalised to the first; or the Hessian eigenvectors of the
largest and smallest eigenvalue. Batch-norm statistics stay fixed (eval mode) while the weights move.

The loss at a point is the training loss, the MAE on standardised targets, over the whole set; `mae` is
the same in physical units. Evaluation is fast: batches and distance expansions are built once, on
symmetry-reduced graphs (one atom per class of equivalent atoms, weighted by its class size: the same
predictions from about half the atoms of Materials Project crystals), then the trained weights are moved
in place, one point at a time through a compiled model on CPU, or many points per pass with `vmap` over
stacked parameter sets (torch.func.functional_call) on a GPU."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from torch.func import functional_call, vmap
from tqdm import tqdm

from matprobe import MatprobeError
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.models.seam import TrainedModel, load_trained
from matprobe.prepare.graphs import symmetry_reduced
from matprobe.prepare.sets import SETS, load_split_data
from matprobe.probes.hessian import extreme_eigenpairs, flatten, hessian_summary, set_hvp, unflatten
from matprobe.runtime import Runtime

log = logging.getLogger("matprobe.probes.landscape")


# ---- evaluation sets ----------------------------------------------------------------------------------


@dataclass
class PreparedBatch:
    batch: Batch
    y_std: torch.Tensor  # standardised targets
    # what the forward takes beside the batch, computed once: a crystal model's distance expansion (it has no
    # parameters) and k of k-regular graphs (the conv's fast path, see architectures.regular_neighbors)
    extra: tuple = ()

    @property
    def args(self) -> tuple:
        return (self.batch, *self.extra)


@dataclass
class EvalSet:
    name: str
    ids: list[str]
    batches: list[PreparedBatch]
    atoms: int = 0  # in the crystals
    evaluated_atoms: int = 0  # in the graphs evaluated (fewer with symmetry reduction)

    @property
    def n(self) -> int:
        return len(self.ids)


def prepare_sets(trained: TrainedModel, graphs_path, materials_path, split_path, max_crystals: int, seed: int,
                 batch_size: int, device, symmetry_reduction: bool = True) -> dict[str, EvalSet]:
    """Each set capped at `max_crystals` by a seeded sample (the train subset is fixed this way), batched
    once, with its distance expansions precomputed; with `symmetry_reduction`, on one atom per class of
    symmetry-equivalent atoms (graphs.symmetry_reduced: the same predictions for about half the atoms), for the
    models that take atom weights."""
    model, record = trained.module, trained.record
    sets = load_split_data(graphs_path, materials_path, split_path, record.target, trained.graphs).sets
    symmetry_reduction = symmetry_reduction and getattr(model, "accepts_atom_weight", False)
    prepared = {}
    for name, crystal_set in sets.items():
        if not len(crystal_set):
            continue
        crystal_set = crystal_set.subsample(max_crystals, seed, SETS.index(name))
        data = crystal_set.graphs
        atoms = sum(int(graph.num_nodes) for graph in data)
        if symmetry_reduction:
            data = [symmetry_reduced(graph) for graph in data]
        batches = []
        for batch in trained.batches(data, batch_size, device):
            extra = ()
            if "inputs" in trained.capabilities:
                with torch.no_grad():
                    extra = (model.edge_inputs(batch.edge_dist), batch.neighbors)
            batches.append(PreparedBatch(batch, record.to_standardised(batch.y).to(device), extra))
        prepared[name] = EvalSet(name, crystal_set.ids, batches, atoms,
                                 sum(int(graph.num_nodes) for graph in data))
    return prepared


# ---- parameters and directions ------------------------------------------------------------------------


def direction_parameters(model, include_biases: bool = False) -> dict[str, torch.Tensor]:
    """The trained tensors a direction moves: weight matrices (and embedding tables); 1-D tensors (biases,
    batch-norm scales and shifts) only when asked for."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.dim() > 1 or include_biases}


def normalise_direction(direction: dict, weights: dict, normalisation: str) -> dict:
    """Scale a direction to the trained weights (Li et al. 2018)."""
    out = {}
    if normalisation == "model":
        scale = flatten(weights).norm() / flatten(direction).norm()
        return {name: d * scale for name, d in direction.items()}
    for name, d in direction.items():
        w = weights[name]
        if normalisation == "filter" and d.dim() > 1:
            # each output filter (row of the weight, first axis) gets the norm of the trained filter
            d_norm = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            w_norm = w.reshape(w.shape[0], -1).norm(dim=1)
            out[name] = d * (w_norm / d_norm).reshape(-1, *([1] * (d.dim() - 1)))
        elif normalisation in ("filter", "layer"):
            out[name] = d * (w.norm() / d.norm().clamp_min(1e-12))
        elif normalisation == "none":
            out[name] = d
        else:
            raise ValueError(f"unknown normalisation {normalisation!r}")
    return out


def random_directions(weights: dict, normalisation: str, seed: int) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    first = normalise_direction({n: torch.randn(w.shape, generator=generator).to(w) for n, w in weights.items()}, weights, normalisation)
    second = normalise_direction({n: torch.randn(w.shape, generator=generator).to(w) for n, w in weights.items()}, weights, normalisation)
    return first, orthogonalise(second, first)


def orthogonalise(direction: dict, against: dict) -> dict:
    """Remove from `direction` its component along `against`, keeping its length."""
    d, a = flatten(direction), flatten(against)
    projected = d - (d @ a) / (a @ a) * a
    projected = projected * (d.norm() / projected.norm())
    return unflatten(projected, direction)


# ---- loss of one parameter point --------------------------------------------------------------------


def points_per_pass_for(model, requested: int) -> int:
    """The points per pass a model can take: `requested`, or 1 for a model whose class says it cannot be vmapped
    over parameter sets (`supports_vmap = False`: ALIGNN, whose package scatters in place), said in one line."""
    requested = max(1, int(requested))
    if requested > 1 and not getattr(model, "supports_vmap", True):
        log.info("%s cannot be vmapped over parameter sets (supports_vmap = False): landscape points are evaluated "
                 "one per pass, not %d", type(model).__name__, requested)
        return 1
    return requested


class LandscapeEvaluator:
    """Loss (MAE on standardised targets) of every set at points theta0 + alpha*d1 + beta*d2."""

    def __init__(self, model, sets: dict[str, EvalSet], weights: dict, d1: dict, d2: dict | None,
                 compile_model: bool = False, points_per_pass: int = 1):
        self.model = model.eval()
        self.sets = sets
        self.weights, self.d1 = weights, d1
        self.d2 = d2 if d2 is not None else {n: torch.zeros_like(w) for n, w in weights.items()}
        self.points_per_pass = points_per_pass_for(model, points_per_pass)
        self.vmap_checked = False  # whether a vmapped pass has succeeded: a model's first one decides (evaluate)
        self.parameters = dict(model.named_parameters())
        self.forward = torch.compile(model, dynamic=True) if compile_model else model

    @torch.no_grad()
    def _set_point(self, alpha: float, beta: float) -> None:
        for name, w in self.weights.items():
            self.parameters[name].copy_(w + alpha * self.d1[name] + beta * self.d2[name])

    @torch.no_grad()
    def restore(self) -> None:
        self._set_point(0.0, 0.0)

    @torch.no_grad()
    def evaluate(self, points: list[tuple[float, float]]) -> list[dict[str, float]]:
        """Per point, {set: loss}; loss is the MAE on standardised targets over the whole set."""
        if self.points_per_pass > 1:
            results = []
            for start in range(0, len(points), self.points_per_pass):
                try:
                    results.extend(self._evaluate_vmapped(points[start : start + self.points_per_pass]))
                except RuntimeError as exc:
                    # a model that does not declare supports_vmap = False but does what vmap cannot (an in-place
                    # scatter, .item()): its first pass fails before any loss is kept, so evaluating one point per
                    # pass from here gives the same values; a failure after a pass has succeeded is a real error
                    if self.vmap_checked or not str(exc).startswith("vmap"):
                        raise
                    log.warning("%s cannot be vmapped over parameter sets (%s); landscape points are evaluated one "
                                "per pass (set supports_vmap = False on its class to skip this try)",
                                type(self.model).__name__, str(exc).splitlines()[0][:200])
                    self.points_per_pass = 1
                    return self.evaluate(points)  # nothing kept yet: no pass has succeeded
                self.vmap_checked = True
            return results
        results = []
        try:
            for alpha, beta in points:
                self._set_point(alpha, beta)
                row = {}
                for name, eval_set in self.sets.items():
                    total = 0.0
                    for prepared in eval_set.batches:
                        prediction = self.forward(*prepared.args)["prediction"]
                        total += float((prediction - prepared.y_std).abs().sum())
                    row[name] = total / eval_set.n
                results.append(row)
        finally:
            self.restore()
        return results

    def _evaluate_vmapped(self, points: list[tuple[float, float]]) -> list[dict[str, float]]:
        alphas = torch.tensor([p[0] for p in points], dtype=torch.float32, device=next(iter(self.weights.values())).device)
        betas = torch.tensor([p[1] for p in points], dtype=alphas.dtype, device=alphas.device)
        stacked = {}
        for name, w in self.weights.items():
            shape = (-1,) + (1,) * w.dim()
            stacked[name] = w[None] + alphas.reshape(shape) * self.d1[name][None] + betas.reshape(shape) * self.d2[name][None]

        rows = [dict() for _ in points]
        for name, eval_set in self.sets.items():
            total = torch.zeros(len(points), device=alphas.device)
            for prepared in eval_set.batches:
                args = prepared.args
                batched = vmap(lambda params: self._forward_inputs(params, args), in_dims=(0,), randomness="error")(stacked)
                total += (batched - prepared.y_std[None]).abs().sum(dim=1)
            for k, value in enumerate((total / eval_set.n).tolist()):
                rows[k][name] = value
        return rows

    def _forward_inputs(self, params, args):
        return functional_call(self.model, params, args, strict=False)["prediction"]


def naive_point_loss(model, state_dict: dict, data_lists: dict, batch_size: int, mean: float, std: float) -> dict[str, float]:
    """The reference libraries' way, kept as the baseline and the check: load a perturbed state dict, loop over
    freshly collated batches, eager mode, one point at a time."""
    model.load_state_dict(state_dict)
    model.eval()
    out = {}
    with torch.no_grad():
        for name, data in data_lists.items():
            total, n = 0.0, 0
            for batch in DataLoader(data, batch_size=batch_size):
                prediction = model(batch)["prediction"]
                total += float((prediction - (batch.y - mean) / std).abs().sum())
                n += batch.num_graphs
            out[name] = total / n
    return out


def perturbed_state_dict(model, weights: dict, d1: dict, d2: dict, alpha: float, beta: float) -> dict:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, w in weights.items():
        state[name] = w + alpha * d1[name] + beta * d2[name]
    return state


# ---- grids, chunks and the stage functions -------------------------------------------------------------


def grid_points(options: dict) -> pd.DataFrame:
    """Every point of the 1D and 2D grids, in a fixed order (the order chunks are cut from)."""
    low1, high1 = options["grid_1d"]["range"]
    low2, high2 = options["grid_2d"]["range"]
    line = np.linspace(low1, high1, options["grid_1d"]["points"])
    plane = np.linspace(low2, high2, options["grid_2d"]["points"])
    one = pd.DataFrame({"grid": "1d", "alpha": line, "beta": 0.0})
    alpha, beta = np.meshgrid(plane, plane, indexing="ij")
    two = pd.DataFrame({"grid": "2d", "alpha": alpha.ravel(), "beta": beta.ravel()})
    return pd.concat([one, two], ignore_index=True)


def chunk_points(options: dict, chunk: int, chunks: int) -> pd.DataFrame:
    points = grid_points(options)
    if not 0 <= chunk < chunks:
        raise ValueError(f"chunk {chunk} outside 0..{chunks - 1}")
    return points.iloc[np.array_split(np.arange(len(points)), chunks)[chunk]]


def load_landscape_inputs(model_path, graphs_path, materials_path, split_path, options: dict, threads: int):
    """The trained model on the configured device, with its evaluation sets prepared (process runtime set too)."""
    device = Runtime.from_options(options, threads).apply()
    trained = load_trained(model_path, device)
    sets = prepare_sets(trained, graphs_path, materials_path, split_path, options["max_crystals"], options["seed"],
                        options["batch_size"], device, options.get("symmetry_reduction", True))
    return trained.module, trained.record, sets, device


def compute_directions(model_path, graphs_path, materials_path, split_path, out_path, options: dict, threads: int = 1) -> dict:
    """Seeded directions, saved so that a landscape can be recomputed or extended exactly."""
    model, record, sets, device = load_landscape_inputs(model_path, graphs_path, materials_path, split_path, options, threads)
    weights = direction_parameters(model, options["include_biases"])
    if options["directions"] == "random":
        d1, d2 = random_directions(weights, options["normalization"], options["seed"])
        extra = {}
    else:
        # the plane of the Hessian's extreme eigenvectors on the (fixed) train subset
        dim = sum(w.numel() for w in weights.values())
        pairs = extreme_eigenpairs(set_hvp(model, sets["train"], weights), dim, options["hessian"]["lanczos_steps"], 1,
                                   options["seed"], device)
        scale = torch.cat([w.reshape(-1) for w in weights.values()]).norm()
        # unit eigenvectors scaled to the weight norm, so that alpha has the same meaning as for random directions
        d1 = unflatten(pairs["top_vector"].to(device) * scale, weights)
        d2 = unflatten(pairs["bottom_vector"].to(device) * scale, weights)
        extra = {"top_eigenvalue": pairs["top"][0], "min_eigenvalue": pairs["bottom"]}
    saved = {
        "kind": options["directions"],
        "normalization": options["normalization"] if options["directions"] == "random" else "weight-norm",
        "seed": options["seed"],
        "include_biases": options["include_biases"],
        "batch_norm": "eval mode: running statistics fixed while weights move",
        "names": list(weights),
        "d1": {k: v.cpu() for k, v in d1.items()},
        "d2": {k: v.cpu() for k, v in d2.items()},
        "sets": {name: s.ids for name, s in sets.items()},
        # atoms in each set's crystals and atoms evaluated (fewer with the symmetry reduction)
        "atoms": {name: [s.atoms, s.evaluated_atoms] for name, s in sets.items()},
        **extra,
    }
    write_torch(saved, out_path)
    return saved


def load_directions(path, device) -> dict:
    saved = torch.load(path, weights_only=True, map_location=device)
    if not {"d1", "d2", "names"} <= set(saved):
        raise MatprobeError(f"{path}: not a matprobe directions file")
    return saved


def evaluate_chunk(model_path, graphs_path, materials_path, split_path, directions_path, out_path, options: dict,
                   chunk: int, chunks: int, threads: int = 1, progress: bool = True) -> pd.DataFrame:
    """Loss and MAE of every set at the grid points of one chunk."""
    model, record, sets, device = load_landscape_inputs(model_path, graphs_path, materials_path, split_path, options, threads)
    saved = load_directions(directions_path, device)
    if {name: s.ids for name, s in sets.items()} != saved["sets"]:
        raise MatprobeError(f"{directions_path}: its evaluation sets differ from this run's (landscape settings changed?)")
    weights = {name: dict(model.named_parameters())[name].detach().clone() for name in saved["names"]}
    per_pass = options["points_per_pass"]
    # resolved before the compile choice below, so that a model evaluated one point per pass is treated as such
    per_pass = points_per_pass_for(model, (16 if device.type == "cuda" else 1) if per_pass == "auto" else per_pass)
    compile_model = options["compile"] == "always" or (options["compile"] == "auto" and device.type == "cpu" and per_pass == 1)
    evaluator = LandscapeEvaluator(model, sets, weights, saved["d1"], saved["d2"],
                                   compile_model=compile_model, points_per_pass=per_pass)
    for name, eval_set in sets.items():
        log.info("%s: %d crystals, %d atoms, %d evaluated", name, eval_set.n, eval_set.atoms, eval_set.evaluated_atoms)
    points = chunk_points(options, chunk, chunks)
    started = time.perf_counter()
    rows = []
    coordinates = list(zip(points["alpha"].tolist(), points["beta"].tolist()))
    step = max(per_pass, 1)
    with tqdm(total=len(coordinates), desc=f"landscape chunk {chunk}", unit="point", disable=not progress) as bar:
        for start in range(0, len(coordinates), step):
            block = coordinates[start : start + step]
            for (alpha, beta), grid, losses in zip(block, points["grid"].iloc[start : start + step], evaluator.evaluate(block)):
                for set_name, loss in losses.items():
                    rows.append({"grid": grid, "alpha": alpha, "beta": beta, "set": set_name, "loss": loss,
                                 "mae": loss * record.std})
            bar.update(len(block))
    frame = pd.DataFrame(rows)
    write_parquet(frame, out_path)
    log.info("chunk %d/%d: %d points in %.1f s", chunk, chunks, len(coordinates), time.perf_counter() - started)
    return frame


def compute_hessian(model_path, graphs_path, materials_path, split_path, out_path, options: dict, threads: int = 1) -> dict:
    limit = options["hessian"].get("max_crystals") or options["max_crystals"]
    model, record, sets, device = load_landscape_inputs(model_path, graphs_path, materials_path, split_path,
                                                        {**options, "max_crystals": min(limit, options["max_crystals"])}, threads)
    weights = direction_parameters(model, options["include_biases"])
    dim = sum(w.numel() for w in weights.values())
    result = {"loss": "MAE on standardised targets", "parameters": list(weights), "sets": {}}
    for name, eval_set in sets.items():
        started = time.perf_counter()
        summary = hessian_summary(set_hvp(model, eval_set, weights), dim, options["hessian"], device)
        summary.pop("_vectors")
        summary["n"] = eval_set.n
        summary["seconds"] = round(time.perf_counter() - started, 2)
        result["sets"][name] = summary
        log.info("hessian %s: top %.4g, trace %.4g (%.1f s)", name, summary["top_eigenvalue_mean"], summary["trace_mean"], summary["seconds"])
    write_json(result, out_path)
    return result

