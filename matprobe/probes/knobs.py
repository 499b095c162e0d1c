"""Generative knobs: turn a domain attribute of an atom's environment and read how the frozen model responds.

After Liu, Kailkhura et al. ("Explainable deep learning for uncovering actionable scientific insights for materials
discovery and design"), who inject domain attributes as tunable knobs into a generative model of a predictor's
inputs, and PGH-VAEs, which shape a VAE's latent space with topological and coordination descriptors. Here the
generated object is an atom's representation h, what the trained model's atom-wise head reads, so a generated h has
a contribution exactly as a real one does.

1. Per atom: its element's properties (the *context*, `ELEMENT_ATTRIBUTES`), and the *knobs* (`KNOB_ATTRIBUTES`):
   its local environment (bonds by covalent radii) and topological descriptors of its neighbourhood. Whether it is
   an atom of the held-out element groups the atoms; it is neither.
2. A conditional VAE p(h | z, element, knobs), trained on training-set atoms only, to convergence on held-out
   reconstruction. The element is context, not a knob: its properties come in tight bundles over ~87 elements
   (electronegativity, radius, group and period move together), so "electronegativity alone, the rest held" names
   no atom that exists; turning the element is done as the crystal does it, by substitution (the whole context
   swapped for another element's). z should carry what context and knobs do not: an adversary (Fader networks,
   Lample et al. 2017) learns to predict them from z and the encoder is trained to defeat it; and the decoder is
   asked that what it decodes with one knob set to another atom's value reads as that value (AttGAN's attribute
   loss, He et al. 2019).
3. Knob sweeps: for sampled real atoms, encode z, sweep one knob over its 5th-95th percentile (of training atoms)
   with the others held at the atom's own values, decode, and apply the frozen head.
4. Checks: reconstruction (R² of head(ĥ) against head(h) on held-out atoms), knob fidelity (a regressor fit on real
   h recovers the knob's value from decoded ĥ), disentanglement (context and knobs predicted from z), realism
   (distance of decoded ĥ to the nearest real h against real-to-real). A knob that fails a check is reported as
   failing, and the figure does not draw it.
5. The crystal as ground truth: the physical interventions of the same run (matprobe.probes.interventions) edit
   atoms of real crystals; the same edit made through the knob model (a first-shell stretch scales the atom's bond
   lengths; a substitution swaps its element's context) gives a slope per atom, and the rank correlation over atoms
   of knob and crystal slopes says whether the knob model moves as the crystal does. A knob that disagrees is
   flagged and not drawn.
6. Baselines: a linear concept direction per knob in h-space (concept activation vectors, Kim et al. 2018), and
   the plain regression of contribution on attribute over real atoms."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from matprobe.inputs.features import element_properties
from matprobe.inputs.structures import Crystal
from matprobe.layout import run_paths
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.models.seam import TrainedModel, load_trained
from matprobe.probes.environment import ENVIRONMENT_ATTRIBUTES, environment_attributes, neighbours, stretched_environment, substituted_environment
from matprobe.prepare.sets import load_split_data
from matprobe.runtime import Runtime

log = logging.getLogger("matprobe.probes.knobs")

ELEMENT_ATTRIBUTES = ["electronegativity", "covalent_radius", "group", "period", "valence_electrons"]  # the context
TOPOLOGY_ATTRIBUTES = ["h1_count", "h1_total_persistence", "h2_count", "h2_total_persistence"]  # undirected (gudhi)
DIRECTED_ATTRIBUTES = ["ph_dir_b1_area", "ph_dir_b2_area"]  # directed (path homology)
# The knobs: one per bundle of attributes that move together. The shortest bond goes with the mean bond length, a
# count of loops with their total persistence, and the directed β2 area is zero for most atoms.
KNOB_ATTRIBUTES = ["coordination", "mean_bond_length", "bond_length_spread", "electronegativity_difference",
                   "h1_total_persistence", "h2_total_persistence", "ph_dir_b1_area"]
FIDELITY_GOAL, RECONSTRUCTION_GOAL, DISENTANGLEMENT_GOAL, REALISM_GOAL = 0.8, 0.95, 0.2, 1.3
ENCODED = 0.5  # an attribute the real h predicts with R² below this is not encoded by the model: no knob can turn it
# The crystal check: a knob agrees with an intervention when the rank correlation over atoms of their slopes is at
# least AGREEMENT and their median slopes have one sign; fewer than MIN_COMPARED curves (atom × path) give no verdict.
AGREEMENT, MIN_COMPARED = 0.3, 8
# The verdict's Spearman gets a percentile interval from resampling crystals (an atom's edits, and the atoms of one
# crystal, are not independent), so a reader sees how much one verdict can carry; the verdict itself stays the
# declared rule on the estimate.
AGREEMENT_RESAMPLES = 1000
# Which knobs an intervention judges, and how the edit reads in attribute space (interventions.py's edits).
STRETCHED_KNOBS = ("mean_bond_length", "bond_length_spread")  # a shell stretch by f scales every bond by (1 + f)
ELEMENT = "element"  # not a knob: the context, swapped for the substitute's by a substitution, which judges it
JUDGED_BY = {"shell_stretch": STRETCHED_KNOBS, "substitution": (ELEMENT,)}


# ---- 1. attributes ------------------------------------------------------------------------------------------------


def atom_table(crystal_set, materials: pd.DataFrame, topology: list[pd.DataFrame], omitted: list[str]) -> pd.DataFrame:
    """One row per atom of a set's crystals, in graph order: id, site, element, the attributes, is_held_out.
    `topology`: per-atom tables (id, site, descriptors) of the undirected and directed topological descriptors."""
    props = element_properties()
    structures = materials.loc[crystal_set.ids, ["lattice", "frac_coords", "numbers"]].to_dict("records")
    columns: dict[str, list] = {"id": [], "site": [], "Z": [], **{name: [] for name in ENVIRONMENT_ATTRIBUTES}}
    for crystal_id, row in zip(crystal_set.ids, structures):
        crystal = Crystal.from_row(row)
        columns["id"].append(np.full(crystal.nsites, crystal_id, dtype=object))
        columns["site"].append(np.arange(crystal.nsites))
        columns["Z"].append(crystal.numbers)
        for name, values in environment_attributes(crystal).items():
            columns[name].append(values)
    table = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
    element = props.loc[table["Z"].to_numpy()]
    table["element"] = element["symbol"].to_numpy()
    for name in ELEMENT_ATTRIBUTES:
        table[name] = element[name].to_numpy(dtype=float)
    for atoms in topology:
        columns = [c for c in (*TOPOLOGY_ATTRIBUTES, *DIRECTED_ATTRIBUTES) if c in atoms]
        table = table.merge(atoms[["id", "site", *columns]], on=["id", "site"], how="left")
    table["is_held_out"] = table["element"].isin(omitted)
    return table


# ---- 2. the conditional VAE ------------------------------------------------------------------------------------------


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs))


class KnobModel(nn.Module):
    """Encoder E(h, c) -> (mu, log var) of z; decoder D(z, c, k) -> h; adversary A(z) -> (c, k), with c the element's
    properties (context) and k the knobs. The methods take and return physical units; inside, everything is
    standardised with the training atoms' statistics, which the model keeps (buffers)."""

    def __init__(self, h_dim: int, c_dim: int, k_dim: int, z_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.encoder = _mlp(h_dim + c_dim, hidden, 2 * z_dim)
        self.decoder = _mlp(z_dim + c_dim + k_dim, hidden, h_dim)
        self.adversary = _mlp(z_dim, hidden // 2, c_dim + k_dim)
        for name, size in (("h", h_dim), ("c", c_dim), ("k", k_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(size))
            self.register_buffer(f"{name}_std", torch.ones(size))
        self.z_dim = z_dim

    def standardise_with(self, h: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> None:
        for name, values in (("h", h), ("c", c), ("k", k)):
            getattr(self, f"{name}_mean").copy_(values.mean(0))
            getattr(self, f"{name}_std").copy_(values.std(0).clamp_min(1e-6))

    def scaled(self, name: str, values: torch.Tensor) -> torch.Tensor:
        return (values - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def _encode(self, hs: torch.Tensor, cs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(torch.cat([hs, cs], dim=-1)).chunk(2, dim=-1)
        return mu, log_var.clamp(-8, 8)

    def _decode(self, z: torch.Tensor, cs: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, cs, ks], dim=-1))

    def encode(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode(self.scaled("h", h), self.scaled("c", c))

    def decode(self, z: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self._decode(z, self.scaled("c", c), self.scaled("k", k)) * self.h_std + self.h_mean


@dataclass
class KnobTraining:
    max_steps: int = 6000  # batches; training stops earlier once held-out reconstruction stops improving
    batch_size: int = 256
    lr: float = 2e-3
    beta: float = 0.01  # weight of the KL term
    adversary_weight: float = 1.0
    adversary_steps: int = 5  # adversary updates per VAE update: a stronger adversary keeps more of (c, k) out of z
    fidelity_weight: float = 3.0  # weight of the guide's read-out of swapped knobs (0: none)
    head_weight: float = 1.0  # weight of the head's reading of the decoded h against that of the real h (0: none)
    z_dim: int = 8
    warmup: int = 1500  # steps over which the adversary's weight rises from 0, and before which no stop is made
    eval_every: int = 250
    patience: int = 6  # evaluations without a better held-out reconstruction before stopping
    seed: int = 0


def fit_knob_model(h: np.ndarray, context: np.ndarray, knobs: np.ndarray, settings: KnobTraining,
                   guide: nn.Module | None = None, head=None, numbers: np.ndarray | None = None) -> tuple[KnobModel, dict]:
    """Train the conditional VAE with its adversary on (h, context, knobs) of training atoms, until the reconstruction
    of a tenth of them, held out of its batches, stops improving; returns the last state and the loss history.

    With a `guide` (a frozen regressor of the knobs from real h), each step also sets one knob of every atom to
    another atom's value and asks that the decoded h read as that value: knobs come correlated too (coordination
    and bond length), and a decoder trained on real atoms alone answers one knob turned, the rest held, with a
    compromise that carries it only in part.

    With the frozen `head` (and the atoms' atomic `numbers`, for heads with per-element references), the decoded h
    is also asked to give the head's reading of the real h: the knob responses are read through the head, so the
    directions of h it reads matter more than the others, which an error spread evenly over h does not say."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    h_t, c_t, k_t = (torch.as_tensor(x, dtype=torch.float32) for x in (h, context, knobs))
    model = KnobModel(h.shape[1], context.shape[1], knobs.shape[1], settings.z_dim)
    model.standardise_with(h_t, c_t, k_t)
    hs, cs, ks = model.scaled("h", h_t), model.scaled("c", c_t), model.scaled("k", k_t)
    order = torch.randperm(len(h_t), generator=generator)
    validation, training = order[: max(1, len(order) // 10)], order[max(1, len(order) // 10):]
    # foreach: one batched update over the parameter tensors, the same numbers as the per-tensor loop (a test)
    vae_optimizer = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters()], lr=settings.lr, foreach=True)
    adversary_optimizer = torch.optim.Adam(model.adversary.parameters(), lr=settings.lr, foreach=True)
    if head is not None:
        numbers_t = torch.as_tensor(numbers, dtype=torch.int64)
        with torch.no_grad():
            read = head(h_t, numbers_t).float()
        read_mean, read_std = read.mean(), read.std().clamp_min(1e-6)
        reads = (read - read_mean) / read_std
    history, best, waited = [], float("inf"), 0
    for step in range(1, settings.max_steps + 1):
        index = training[torch.randint(0, len(training), (min(settings.batch_size, len(training)),), generator=generator)]
        h_batch, c_batch, k_batch = hs[index], cs[index], ks[index]
        attributes = torch.cat([c_batch, k_batch], dim=1)
        with torch.no_grad():  # the encoder does not move during the adversary's steps: its z is read once
            z_read = _batch_standardised(model._encode(h_batch, c_batch)[0])
        for _ in range(settings.adversary_steps):  # the adversary's steps: predict (c, k) from z (z held fixed)
            adversary_loss = ((model.adversary(z_read) - attributes) ** 2).mean()
            adversary_optimizer.zero_grad()
            adversary_loss.backward()
            adversary_optimizer.step()
        # the VAE's step: reconstruct h from (z, c, k), keep z near the prior, and leave the adversary nothing to go on:
        # its best guess should be the mean (0, standardised) whatever z is. Asking for that rather than for a large
        # adversary error keeps the game bounded: a z that makes the adversary wrong by inverting an attribute still
        # carries it, and a fresh regressor (the disentanglement check) would find it (Alvi et al. 2018).
        mu, log_var = model._encode(h_batch, c_batch)
        z = mu + torch.randn(mu.shape, generator=generator) * (0.5 * log_var).exp()
        reconstruction = ((model._decode(z, c_batch, k_batch) - h_batch) ** 2).mean()
        kl = (-0.5 * (1 + log_var - mu**2 - log_var.exp())).sum(dim=1).mean()
        confusion = (model.adversary(_batch_standardised(mu)) ** 2).mean()
        weight = settings.adversary_weight * min(1.0, step / settings.warmup)
        loss = reconstruction + settings.beta * kl + weight * confusion
        if head is not None and settings.head_weight:
            decoded_read = (head(model._decode(z, c_batch, k_batch) * model.h_std + model.h_mean, numbers_t[index]).float() - read_mean) / read_std
            loss = loss + settings.head_weight * ((decoded_read - reads[index]) ** 2).mean()
        if guide is not None and settings.fidelity_weight:
            rows = torch.arange(len(index))
            column = torch.randint(0, k_batch.shape[1], (len(index),), generator=generator)
            value = ks[training[torch.randint(0, len(training), (len(index),), generator=generator)], column]
            swapped = k_batch.clone()
            swapped[rows, column] = value
            decoded = model._decode(z, c_batch, swapped) * model.h_std + model.h_mean
            read = model.scaled("k", guide(decoded))
            loss = loss + settings.fidelity_weight * ((read[rows, column] - value) ** 2).mean()
        vae_optimizer.zero_grad()
        loss.backward()
        vae_optimizer.step()
        if step % settings.eval_every == 0 or step == settings.max_steps:
            with torch.no_grad():
                mu_held = model._encode(hs[validation], cs[validation])[0]
                held = float(((model._decode(mu_held, cs[validation], ks[validation]) - hs[validation]) ** 2).mean())
            history.append({"step": step, "reconstruction": float(reconstruction.detach()), "kl": float(kl.detach()), "adversary": float(adversary_loss.detach()),
                            "held_out_reconstruction": held})
            # stop once the held-out reconstruction has not improved for `patience` checks; the last state is kept,
            # not the best: the best reconstruction is where z leaked the most of what the adversary should remove
            if step < settings.warmup:
                continue
            best, waited = (held, 0) if held < best else (best, waited + 1)
            if waited >= settings.patience:
                break
    return model.eval(), {"history": history, "steps": history[-1]["step"] if history else 0, "best_held_out_reconstruction": best}


def _batch_standardised(z: torch.Tensor) -> torch.Tensor:
    """z standardised over the batch, as the adversary reads it: an encoder could otherwise hide an attribute from
    the adversary by shrinking the dimension that carries it, where the check's regressor, which standardises its
    inputs, would still read it."""
    return (z - z.mean(0)) / (z.std(0) + 1e-4)


# ---- regressors for the checks -----------------------------------------------------------------------------------------


def fit_regressor(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 100) -> tuple[nn.Module, np.ndarray]:
    """A small MLP from x to every column of y (standardised), with its held-out R² per column (20 % held out)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    split = max(1, int(0.8 * len(x)))
    train, test = order[:split], order[split:]
    x_t, y_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    x_mean, x_std = x_t[train].mean(0), x_t[train].std(0).clamp_min(1e-6)
    y_mean, y_std = y_t[train].mean(0), y_t[train].std(0).clamp_min(1e-6)
    torch.manual_seed(seed)
    net = _mlp(x.shape[1], 64, y.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4, foreach=True)
    xs, ys = (x_t - x_mean) / x_std, (y_t - y_mean) / y_std
    for _ in range(epochs):
        for start in range(0, len(train), 512):
            index = torch.as_tensor(train[start : start + 512])
            loss = ((net(xs[index]) - ys[index]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    regressor = _Standardised(net, x_mean, x_std, y_mean, y_std).eval()
    with torch.no_grad():
        predicted = regressor(x_t[test]).numpy()
    return regressor, r_squared(y[test], predicted)


def beyond_the_others(context: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """Each knob less its least-squares fit on the context and the other knobs: the part of it that a sweep of that
    knob alone, the others held, changes and the others do not carry linearly. h's R² for it
    (`encoded_beyond_others_r2`) is a diagnostic beside the plain `encoded_r2`, which counts what the knob shares
    with the others; neither bounds fidelity (the checker reads the shared part too, and a nonlinear one)."""
    residual = np.empty_like(knobs, dtype=float)
    for j in range(knobs.shape[1]):
        others = np.column_stack([np.ones(len(knobs)), context, np.delete(knobs, j, axis=1)])
        coefficients, *_ = np.linalg.lstsq(others, knobs[:, j], rcond=None)
        residual[:, j] = knobs[:, j] - others @ coefficients
    return residual


class _Standardised(nn.Module):
    """A network trained on standardised inputs and outputs, applied in the original units."""

    def __init__(self, net: nn.Module, x_mean, x_std, y_mean, y_std):
        super().__init__()
        self.net = net
        for name, value in (("x_mean", x_mean), ("x_std", x_std), ("y_mean", y_mean), ("y_std", y_std)):
            self.register_buffer(name, value)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net((inputs - self.x_mean) / self.x_std) * self.y_std + self.y_mean


def r_squared(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    y, predicted = np.atleast_2d(np.asarray(y, dtype=float).T).T, np.atleast_2d(np.asarray(predicted, dtype=float).T).T
    residual = ((y - predicted) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.nan)


# ---- 3. sweeps and baselines ------------------------------------------------------------------------------------------------


def sweep_values(train_a: np.ndarray, steps: int) -> np.ndarray:
    """(attributes, steps): each attribute from its 5th to its 95th percentile over the training atoms."""
    low, high = np.nanpercentile(train_a, 5, axis=0), np.nanpercentile(train_a, 95, axis=0)
    return np.linspace(low, high, steps).T


@torch.no_grad()
def knob_responses(model: KnobModel, head, atoms: "AtomArrays", values: np.ndarray) -> np.ndarray:
    """(atoms, knobs, steps) head outputs of decoded ĥ with one knob set to each sweep value, the other knobs and the
    context the atom's own, z the atom's encoding (its mean)."""
    c_t, k_t = torch.as_tensor(atoms.context, dtype=torch.float32), torch.as_tensor(atoms.knobs, dtype=torch.float32)
    mu, _ = model.encode(torch.as_tensor(atoms.h, dtype=torch.float32), c_t)
    numbers = torch.as_tensor(atoms.numbers)
    out = np.empty((len(atoms.h), values.shape[0], values.shape[1]))
    for j in range(values.shape[0]):
        for k, value in enumerate(values[j]):
            swept = k_t.clone()
            swept[:, j] = float(value)
            out[:, j, k] = head(model.decode(mu, c_t, swept), numbers).numpy()
    return out


@torch.no_grad()
def concept_responses(directions: np.ndarray, head, atoms: "AtomArrays", values: np.ndarray) -> np.ndarray:
    """The linear baseline: h moved along each knob's concept direction (one unit of the attribute per step of the
    direction) from the atom's own value to each sweep value."""
    h_t, numbers = torch.as_tensor(atoms.h, dtype=torch.float32), torch.as_tensor(atoms.numbers)
    out = np.empty((len(atoms.h), values.shape[0], values.shape[1]))
    for j in range(values.shape[0]):
        direction = torch.as_tensor(directions[j], dtype=torch.float32)
        for k, value in enumerate(values[j]):
            shift = torch.as_tensor(value - atoms.knobs[:, j], dtype=torch.float32)[:, None]
            out[:, j, k] = head(h_t + shift * direction, numbers).numpy()
    return out


def concept_directions(h: np.ndarray, a: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Per attribute, the direction in h-space along which a linear read-out of it grows by one unit per unit step:
    the ridge regression weights w of a on h, scaled to w / |w|²."""
    x = h - h.mean(axis=0)
    gram = x.T @ x + ridge * len(x) * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ (a - a.mean(axis=0))).T  # (attributes, h_dim)
    return weights / np.maximum((weights**2).sum(axis=1, keepdims=True), 1e-12)


def slopes(values: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """(atoms, attributes): least-squares slope of each atom's response curve against the attribute."""
    centred = values - values.mean(axis=1, keepdims=True)  # (attributes, steps)
    denominator = np.maximum((centred**2).sum(axis=1), 1e-12)
    return ((curves - curves.mean(axis=2, keepdims=True)) * centred[None]).sum(axis=2) / denominator[None]


def monotonicity(curves: np.ndarray) -> np.ndarray:
    """(atoms, attributes): the Spearman correlation of each response curve with its step (±1 for monotone)."""
    ranks = curves.argsort(axis=2).argsort(axis=2).astype(float)
    steps = np.arange(curves.shape[2], dtype=float)
    ranks -= ranks.mean(axis=2, keepdims=True)
    steps -= steps.mean()
    denominator = np.sqrt((ranks**2).sum(axis=2) * (steps**2).sum())
    return np.where(denominator > 0, (ranks * steps).sum(axis=2) / np.where(denominator > 0, denominator, 1), 0.0)


# ---- the stage --------------------------------------------------------------------------------------------------------


KNOB_SETS = ("train", "id_test", "ood_test")  # their position is the stream of their seeded sample


@dataclass
class AtomArrays:
    """Atoms as the knob model reads them: h, the context (element properties), the knobs, and the atomic numbers
    (heads with per-element references need them)."""

    h: np.ndarray
    context: np.ndarray
    knobs: np.ndarray
    numbers: np.ndarray

    def take(self, rows) -> "AtomArrays":
        return AtomArrays(self.h[rows], self.context[rows], self.knobs[rows], self.numbers[rows])

    def __len__(self) -> int:
        return len(self.h)


@dataclass
class KnobData:
    """The sampled atoms of each set: their table (attributes, contribution, share) and arrays, and the knobs used.
    Missing values are filled with the training atoms' median (`fill`)."""

    tables: dict[str, pd.DataFrame]
    arrays: dict[str, AtomArrays]
    knobs: list[str]
    fill: pd.Series

    def arrays_of(self, table: pd.DataFrame, h: np.ndarray) -> AtomArrays:
        filled = table[ELEMENT_ATTRIBUTES + self.knobs].fillna(self.fill)
        return AtomArrays(h, filled[ELEMENT_ATTRIBUTES].to_numpy(dtype=float), filled[self.knobs].to_numpy(dtype=float),
                          table["Z"].to_numpy(dtype=np.int64))


def representations(trained: TrainedModel, crystal_set, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per atom of a set (graph order): h, the contribution (target units) and the crystal's size."""
    out = trained.predict(crystal_set.graphs, batch_size, keep_atoms=True)
    sizes = np.diff(out.atom_ptr)
    return out.atoms, out.contributions, np.repeat(sizes, sizes)


def described_atoms(trained: TrainedModel, crystal_set, materials, topology, omitted) -> tuple[pd.DataFrame, np.ndarray]:
    """The attribute table of a set's atoms with their contribution and share, and their h."""
    table = atom_table(crystal_set, materials, topology, omitted)
    h, contribution, size = representations(trained, crystal_set)
    table["contribution"], table["sites"], table["share"], table["set"] = contribution, size, contribution / size, crystal_set.name
    return table, h


def sample_atoms(trained: TrainedModel, data, materials: pd.DataFrame, topology: list[pd.DataFrame], options: dict) -> KnobData:
    """1. Attributes, h and contributions of the atoms of a seeded sample of crystals per set."""
    tables, h = {}, {}
    for stream, set_name in enumerate(KNOB_SETS):
        if set_name not in data.sets:
            continue
        limit = options["train_crystals"] if set_name == "train" else options["test_crystals"]
        tables[set_name], h[set_name] = described_atoms(trained, data.sets[set_name].subsample(limit, options["seed"], stream),
                                                        materials, topology, data.omitted)
    train = tables["train"]
    knobs = [name for name in KNOB_ATTRIBUTES if name in train and train[name].notna().mean() > 0.5 and train[name].nunique() > 1]
    knob_data = KnobData(tables, {}, knobs, train[ELEMENT_ATTRIBUTES + knobs].median())
    knob_data.arrays = {name: knob_data.arrays_of(table, h[name]) for name, table in tables.items()}
    return knob_data


@dataclass
class FittedKnobs:
    model: KnobModel
    settings: KnobTraining
    history: dict
    fitted: np.ndarray  # training atoms the knob model was fitted on
    held: np.ndarray  # the fifth held out for the checks
    guide: nn.Module  # the frozen regressor the decoder was asked to satisfy: the checks read it beside their own


def fit_knobs(knobs: KnobData, options: dict, rng, head=None) -> FittedKnobs:
    """2. The conditional VAE, on training atoms only (a fifth of them held out for the checks)."""
    train = knobs.arrays["train"]
    order = rng.permutation(len(train))
    held = order[: max(1, len(order) // 5)]
    fitted = order[len(held):]
    settings = KnobTraining(max_steps=options["max_steps"], z_dim=options["z_dim"], fidelity_weight=options["fidelity_weight"],
                            seed=options["seed"], warmup=min(KnobTraining.warmup, options["max_steps"] // 4))
    # the guide that shapes the knobs and the regressor that checks them are fitted on disjoint halves of the atoms
    # (and other seeds), so that the fidelity check does not grade the knob model by the function it was trained against
    guide_atoms = fitted[: len(fitted) // 2]
    guide, _ = fit_regressor(train.h[guide_atoms], train.knobs[guide_atoms], options["seed"] + 1)
    for parameter in guide.parameters():
        parameter.requires_grad_(False)
    model, history = fit_knob_model(train.h[fitted], train.context[fitted], train.knobs[fitted], settings, guide, head,
                                    train.numbers[fitted])
    return FittedKnobs(model, settings, history, fitted, held, guide)


@torch.no_grad()
def check_knobs(knobs: KnobData, fitted: FittedKnobs, head, values: np.ndarray, checked: np.ndarray, options: dict, rng) -> dict:
    """4. Reconstruction, fidelity, encoding, disentanglement and realism, on atoms the knob model was not fitted on."""
    train = knobs.arrays["train"]
    model, held, fit = fitted.model, train.take(fitted.held), fitted.fitted
    h_held, c_held = torch.as_tensor(held.h, dtype=torch.float32), torch.as_tensor(held.context, dtype=torch.float32)
    decoded = model.decode(model.encode(h_held, c_held)[0], c_held, torch.as_tensor(held.knobs, dtype=torch.float32))
    numbers = torch.as_tensor(held.numbers)
    reconstruction = float(r_squared(head(h_held, numbers).numpy(), head(decoded, numbers).numpy())[0])
    attributes = [*ELEMENT_ATTRIBUTES, *knobs.knobs]
    with torch.enable_grad():
        checker_atoms = fit[len(fit) // 2:]  # the half the guide was not fitted on
        from_h, encoded = fit_regressor(train.h[checker_atoms], train.knobs[checker_atoms], options["seed"])
        _, encoded_beyond = fit_regressor(train.h[checker_atoms], beyond_the_others(train.context[checker_atoms], train.knobs[checker_atoms]),
                                         options["seed"])
        z_all = model.encode(torch.as_tensor(train.h, dtype=torch.float32), torch.as_tensor(train.context, dtype=torch.float32))[0].detach().numpy()
        _, from_z = fit_regressor(z_all, np.concatenate([train.context, train.knobs], axis=1), options["seed"])
    swept_atoms = knobs.arrays["id_test" if "id_test" in knobs.arrays else "train"].take(checked)
    c_t, k_t = torch.as_tensor(swept_atoms.context, dtype=torch.float32), torch.as_tensor(swept_atoms.knobs, dtype=torch.float32)
    mu, _ = model.encode(torch.as_tensor(swept_atoms.h, dtype=torch.float32), c_t)
    fidelity, guide_fidelity = [], []
    for j in range(len(knobs.knobs)):
        targets, recovered, guided = [], [], []
        for value in values[j]:
            swept = k_t.clone()
            swept[:, j] = float(value)
            decoded = model.decode(mu, c_t, swept)
            recovered.append(from_h(decoded).numpy()[:, j])
            guided.append(fitted.guide(decoded).numpy()[:, j])
            targets.append(np.full(len(swept_atoms), value))
        fidelity.append(float(r_squared(np.concatenate(targets), np.concatenate(recovered))[0]))
        guide_fidelity.append(float(r_squared(np.concatenate(targets), np.concatenate(guided))[0]))
    realism = _realism(model, train.h, swept_atoms, values, rng)
    disentanglement = dict(zip(attributes, map(float, from_z)))
    final = fitted.history["history"][-1] if fitted.history["history"] else {}
    return {
        "attributes": knobs.knobs, "context": ELEMENT_ATTRIBUTES, "train_atoms": int(len(fit)), "held_out_atoms": int(len(held)),
        "reconstruction_r2": reconstruction, "reconstruction_goal": RECONSTRUCTION_GOAL,
        "fidelity_r2": dict(zip(knobs.knobs, fidelity)), "fidelity_goal": FIDELITY_GOAL,
        # the same reading by the guide the decoder was trained against: high where fidelity is low, the decoder has
        # learnt what that one regressor reads, not a representation another regressor of the same kind reads alike
        "guide_fidelity_r2": dict(zip(knobs.knobs, guide_fidelity)),
        "encoded_r2": dict(zip(knobs.knobs, map(float, encoded))), "encoded_threshold": ENCODED,
        "encoded_beyond_others_r2": dict(zip(knobs.knobs, map(float, encoded_beyond))),
        "not_encoded": [name for name, value in zip(knobs.knobs, encoded) if value < ENCODED],
        "knobs_failing_fidelity": [name for name, value, enc in zip(knobs.knobs, fidelity, encoded) if enc >= ENCODED and value < FIDELITY_GOAL],
        "disentanglement_r2": disentanglement, "disentanglement_goal": DISENTANGLEMENT_GOAL,
        "disentanglement_median": float(np.median([disentanglement[name] for name in knobs.knobs])) if knobs.knobs else None,
        "realism": {**realism, "goal": REALISM_GOAL},
        "training": {**fitted.settings.__dict__, "steps": fitted.history["steps"], "final": final},
    }


def sweep_knobs(knobs: KnobData, fitted: FittedKnobs, head, values: np.ndarray, sample: dict, checks: dict, options: dict,
                rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """3. Sweeps (ID, OOD, and the held-out element's atoms apart) and 6. the baselines beside them: the response
    curves, and per set, atom group and knob the slopes and whether the knob works."""
    train = knobs.arrays["train"]
    directions = concept_directions(train.h[fitted.fitted], train.knobs[fitted.fitted])
    fidelity = [checks["fidelity_r2"][name] for name in knobs.knobs]
    encoded = [checks["encoded_r2"][name] for name in knobs.knobs]
    rows, summaries = [], []
    for set_name, arrays in knobs.arrays.items():
        table = knobs.tables[set_name]
        groups = {"all": sample[set_name]}
        held_out = np.flatnonzero(table["is_held_out"].to_numpy())
        if len(held_out):
            groups["held_out"] = rng.permutation(held_out)[: options["sweep_atoms"]]
        for group, atoms in groups.items():
            members = held_out if group == "held_out" else np.arange(len(table))
            swept = arrays.take(atoms)
            curves = knob_responses(fitted.model, head, swept, values)
            linear = concept_responses(directions, head, swept, values)
            size = table["sites"].to_numpy()[atoms]
            knob_slopes, concept_slopes, mono = slopes(values, curves), slopes(values, linear), monotonicity(curves)
            for j, attribute in enumerate(knobs.knobs):
                observed = _regression_slope(table[attribute].to_numpy(dtype=float)[members], table["contribution"].to_numpy()[members])
                summaries.append({"set": set_name, "atoms": group, "attribute": attribute, "n": len(atoms),
                                  "knob_slope": float(np.mean(knob_slopes[:, j])), "knob_slope_spread": float(np.std(knob_slopes[:, j])),
                                  "monotonicity": float(np.mean(mono[:, j])), "concept_slope": float(np.mean(concept_slopes[:, j])),
                                  "regression_slope": observed, "fidelity": fidelity[j], "encoded": float(encoded[j]),
                                  "knob_works": bool(fidelity[j] >= FIDELITY_GOAL and encoded[j] >= ENCODED),
                                  "check_failed": _check_failed(encoded[j], fidelity[j])})
                for k, value in enumerate(values[j]):
                    rows.append(pd.DataFrame({"set": set_name, "atoms": group, "attribute": attribute, "step": k, "value": value,
                                              "id": table["id"].to_numpy()[atoms], "site": table["site"].to_numpy()[atoms],
                                              "contribution": curves[:, j, k], "share": curves[:, j, k] / size,
                                              "concept_contribution": linear[:, j, k]}))
    summary = pd.DataFrame(summaries)
    summary["methods_disagree"] = _disagreement(summary)
    return pd.concat(rows, ignore_index=True), summary


# ---- 5. the crystal as ground truth ---------------------------------------------------------------------------------

CRYSTAL_COLUMNS = ["set", "id", "site", "element", "atoms", "intervention", "path", "points", "judged", "crystal_slope", "knob_slope"]


@torch.no_grad()
def knob_edits(model: KnobModel, head, atom: AtomArrays, edited_knobs: np.ndarray, contexts: np.ndarray,
               numbers: np.ndarray) -> np.ndarray:
    """The head's reading of one atom (`atom`: one row; z its own) decoded with each row of `edited_knobs` and
    `contexts` (the knobs and element properties the edit gives it), for atoms of elements `numbers`."""
    mu, _ = model.encode(torch.as_tensor(atom.h, dtype=torch.float32), torch.as_tensor(atom.context, dtype=torch.float32))
    n = len(edited_knobs)
    decoded = model.decode(mu.repeat(n, 1), torch.as_tensor(contexts, dtype=torch.float32), torch.as_tensor(edited_knobs, dtype=torch.float32))
    return head(decoded, torch.as_tensor(numbers, dtype=torch.int64)).numpy()


@torch.no_grad()
def element_reference(head, atom: AtomArrays, numbers: np.ndarray) -> np.ndarray:
    """What the head adds for the element alone, at the atom's own h: head(h, Z) − head(h, Z_own). Zero for heads
    that read h only; for a head with per-element references (CHGNet's site energies) the reference step of a
    substitution, which the crystal's and the knob model's responses would otherwise share whatever the decoder does."""
    h = torch.as_tensor(atom.h, dtype=torch.float32).repeat(len(numbers), 1)
    own = head(h[:1], torch.as_tensor(atom.numbers[:1], dtype=torch.int64)).numpy()
    return head(h, torch.as_tensor(numbers, dtype=torch.int64)).numpy() - own


class EditedAttributes:
    """The knobs and context an intervention's edit gives one atom, recomputed on the edited structure exactly as
    the knob stage computes them on a real one (`environment`): a shell stretch changes the atom's bond lengths
    (and may change its coordination), a substitution its element and through it its bonds and electronegativity
    difference. The topological knobs are held (their persistence is not recomputed on the edited structure)."""

    def __init__(self, knobs: KnobData, crystal: Crystal):
        self.knobs, self.crystal = knobs, crystal
        self.properties = element_properties()
        self.i, self.j, self.d = neighbours(crystal)

    def _row(self, environment: dict, own: np.ndarray) -> np.ndarray:
        row = own.copy()
        for k, name in enumerate(self.knobs.knobs):
            value = environment.get(name)
            if value is not None:
                row[k] = value if np.isfinite(value) else self.knobs.fill[name]
        return row

    def stretched(self, site: int, own: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        mine = self.i == site
        z_site, z_neighbours = int(self.crystal.numbers[site]), self.crystal.numbers[self.j[mine]]
        return np.stack([self._row(stretched_environment(self.d[mine], z_site, z_neighbours, float(f)), own) for f in fractions])

    def substituted(self, site: int, own: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mine = self.i == site
        images = self.j[mine] == site
        rows = np.stack([self._row(substituted_environment(self.d[mine], int(self.crystal.numbers[site]), self.crystal.numbers[self.j[mine]],
                                                           images, int(z)), own) for z in numbers])
        contexts = self.properties.loc[numbers, ELEMENT_ATTRIBUTES].astype(float).fillna(self.knobs.fill[ELEMENT_ATTRIBUTES]).to_numpy()
        return rows, contexts


def compare_with_crystal(knobs: KnobData, fitted: FittedKnobs, trained: TrainedModel, data, materials, topology,
                         curves: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """Per atom and edit of the run's interventions (shell stretch, substitution along group and period): the slope
    of the site's contribution in the edited crystal and through the knob model (the same edit, its attributes
    recomputed), against the edit's value (stretch fraction; the substitute's electronegativity); for a head with
    per-element references, both without the reference step. Judged (`judged`): atoms of elements the knob model
    trained on, without the steps into the held-out element, whose context it never saw. Per intervention and
    path, the rank correlation over the judged curves and the verdict on the knobs it judges (`JUDGED_BY`)."""
    rows = []
    if curves is None or curves.empty:
        return pd.DataFrame(rows, columns=CRYSTAL_COLUMNS), crystal_agreement(pd.DataFrame(rows, columns=CRYSTAL_COLUMNS), knobs.knobs)
    curves = curves[curves["intervention"].isin(list(JUDGED_BY)) & curves["valid"] & ~curves["into_held_out"].astype(bool)]
    symbol_to_z = pd.Series(element_properties().index, index=element_properties()["symbol"])
    for set_name, frame in curves.groupby("set", sort=False):
        if set_name not in data.sets:
            continue
        crystal_set = data.sets[set_name]
        position = {crystal_id: k for k, crystal_id in enumerate(crystal_set.ids)}
        wanted = [position[i] for i in dict.fromkeys(frame["id"]) if i in position]
        if not wanted:
            continue
        table, h = described_atoms(trained, crystal_set.take(wanted), materials, topology, data.omitted)
        arrays = knobs.arrays_of(table, h)
        row_of = {(crystal_id, int(site)): k for k, (crystal_id, site) in enumerate(zip(table["id"], table["site"]))}
        for crystal_id, per_crystal in frame.groupby("id", sort=False):
            edits = EditedAttributes(knobs, Crystal.from_row(materials.loc[crystal_id, ["lattice", "frac_coords", "numbers"]].to_dict()))
            for (site, intervention, path), curve in per_crystal.groupby(["site", "intervention", "path"], sort=False):
                row = row_of.get((crystal_id, int(site)))
                if row is None or len(curve) < 3:
                    continue
                curve = curve.sort_values("step")
                atom = arrays.take([row])
                x, crystal = curve["value"].to_numpy(dtype=float), curve["contribution"].to_numpy(dtype=float)
                if intervention == "shell_stretch":
                    numbers = np.repeat(atom.numbers, len(curve))
                    edited, contexts = edits.stretched(int(site), atom.knobs[0], x), np.repeat(atom.context, len(curve), axis=0)
                    reference = np.zeros(len(curve))
                else:
                    substitutes = [symbol or curve["element"].iloc[0] for symbol in curve["substitute"]]
                    numbers = symbol_to_z[substitutes].to_numpy(dtype=np.int64)
                    edited, contexts = edits.substituted(int(site), atom.knobs[0], numbers)
                    reference = element_reference(trained.head, atom, numbers)
                knob = knob_edits(fitted.model, trained.head, atom, edited, contexts, numbers)
                rows.append({"set": set_name, "id": crystal_id, "site": int(site), "element": curve["element"].iloc[0],
                             "atoms": curve["atoms"].iloc[0], "intervention": intervention, "path": path, "points": len(curve),
                             "judged": curve["atoms"].iloc[0] != "held_out",
                             "crystal_slope": _regression_slope(x, crystal - reference), "knob_slope": _regression_slope(x, knob - reference)})
    compared = pd.DataFrame(rows, columns=CRYSTAL_COLUMNS)
    return compared, crystal_agreement(compared, knobs.knobs)


def cluster_bootstrap_spearman(x, y, clusters, resamples: int = AGREEMENT_RESAMPLES, seed: int = 0) -> tuple[float | None, float | None]:
    """The percentile 95 % interval of the Spearman correlation of x and y when clusters are resampled with
    replacement (every row of a drawn cluster comes along: the edits of one crystal, the knobs of one model); draws
    without variation are left out, and an interval of fewer than half the draws is None (as checks.json has it)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(clusters, dtype=object)))
    members = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng, draws = np.random.default_rng(seed), []
    for _ in range(resamples):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        draws.append(spearmanr(x[rows], y[rows]).statistic if np.ptp(x[rows]) and np.ptp(y[rows]) else np.nan)
    draws = np.asarray(draws, float)
    if np.isfinite(draws).sum() < resamples / 2:
        return None, None
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


def crystal_agreement(compared: pd.DataFrame, knobs: list[str]) -> dict:
    """Per intervention and path (and all paths of an intervention together): over the judged curves, the Spearman
    correlation of knob and crystal slopes with its crystal-bootstrap interval (`cluster_bootstrap_spearman`) and the
    number of crystals, the median of each slope, and the verdict: agrees, disagrees, too few curves,
    no variation (a slope constant over the curves), or not judged (no such edit, or none of its knobs in use);
    per knob judged, the verdict of its intervention over all paths."""
    per_path, per_knob = [], {}
    for intervention, judged in JUDGED_BY.items():
        frame = compared[(compared["intervention"] == intervention) & compared["judged"].astype(bool)]
        frame = frame.dropna(subset=["crystal_slope", "knob_slope"])
        in_use = [name for name in judged if name == ELEMENT or name in knobs]
        paths = frame.groupby("path", sort=True)
        for path, part in [("all", frame), *(paths if paths.ngroups > 1 else ())]:
            entry = {"intervention": intervention, "path": path, "curves": int(len(part)), "spearman": None}
            if not in_use or (path == "all" and compared[compared["intervention"] == intervention].empty):
                entry["verdict"] = "not judged"
            elif len(part) < MIN_COMPARED:
                entry["verdict"] = f"too few curves ({len(part)}, need {MIN_COMPARED})"
            else:
                rho = spearmanr(part["knob_slope"], part["crystal_slope"]).statistic
                knob_median, crystal_median = float(part["knob_slope"].median()), float(part["crystal_slope"].median())
                if not np.isfinite(rho):
                    entry.update(verdict="no variation", knob_median=knob_median, crystal_median=crystal_median)
                else:
                    agrees = rho >= AGREEMENT and np.sign(knob_median) == np.sign(crystal_median)
                    low, high = cluster_bootstrap_spearman(part["knob_slope"], part["crystal_slope"], part["id"])
                    entry.update(spearman=float(rho), spearman_low=low, spearman_high=high, crystals=int(part["id"].nunique()),
                                 knob_median=knob_median, crystal_median=crystal_median, verdict="agrees" if agrees else "disagrees")
            per_path.append(entry)
            if path == "all":
                for knob in in_use:
                    per_knob[knob] = {"intervention": intervention, **{k: v for k, v in entry.items() if k != "intervention"}}
    return {"paths": per_path, "knobs": per_knob, "agreement": AGREEMENT, "min_curves": MIN_COMPARED,
            "disagreeing": sorted(name for name, entry in per_knob.items() if entry["verdict"] == "disagrees")}


# ---- the stage: named steps ---------------------------------------------------------------------------------


def run_knobs(model_path, graphs_path, materials_path, split_path, topology_paths, intervention_curves, outputs: Mapping,
              options: dict, threads: int = 1) -> dict:
    """Train the knob model of one trained model and write (`outputs`: layout.RUN_FILES["knobs"] names to paths) the
    knob model, the sampled atoms (attributes, contribution and z in two principal components), the response curves,
    their summary, the comparison with the crystal's interventions (`intervention_curves`: that run's curves.parquet;
    None: no comparison) and the checks (last)."""
    started = time.perf_counter()
    Runtime(threads=threads, device="cpu").apply()
    outputs = run_paths("knobs", outputs)
    trained = load_trained(model_path)
    trained.require("knobs")
    data = load_split_data(graphs_path, materials_path, split_path, trained.record.target, trained.graphs)
    materials = pd.read_parquet(materials_path).set_index("id")
    topology = [pd.read_parquet(path) for path in topology_paths or ()]
    knobs = sample_atoms(trained, data, materials, topology, options)
    rng = np.random.default_rng(options["seed"])
    trained.module.requires_grad_(False)  # frozen: the knob model's losses pass through its head
    fitted = fit_knobs(knobs, options, rng, trained.head)
    values = sweep_values(knobs.arrays["train"].knobs, options["steps"])
    sample = {name: rng.permutation(len(arrays))[: options["sweep_atoms"]] for name, arrays in knobs.arrays.items()}
    checked = sample["id_test" if "id_test" in knobs.arrays else "train"]
    checks = check_knobs(knobs, fitted, trained.head, values, checked, options, rng)
    responses, summary = sweep_knobs(knobs, fitted, trained.head, values, sample, checks, options, rng)
    curves = pd.read_parquet(intervention_curves) if intervention_curves else None
    compared, checks["crystal"] = compare_with_crystal(knobs, fitted, trained, data, materials, topology, curves)
    summary["agrees_with_crystal"] = summary["attribute"].map(lambda name: _verdict(checks["crystal"], name))
    checks["seconds"] = round(time.perf_counter() - started, 1)
    write_torch({"state_dict": fitted.model.state_dict(), "h_dim": int(knobs.arrays["train"].h.shape[1]), "context": ELEMENT_ATTRIBUTES,
                 "attributes": knobs.knobs, "z_dim": fitted.settings.z_dim, "sweep_values": values.tolist()}, outputs["model"])
    write_parquet(_latent_map(fitted.model, knobs), outputs["atoms"])
    write_parquet(responses, outputs["responses"])
    write_parquet(summary, outputs["summary"])
    write_parquet(compared, outputs["crystal"])
    write_json(checks, outputs["checks"])
    log.info("knobs: reconstruction R² %.3f, knobs working %d of %d, disentanglement median %.2f, realism %.2f, "
             "disagreeing with the crystal: %s; %d steps, %.1f s", checks["reconstruction_r2"],
             int(summary.drop_duplicates("attribute")["knob_works"].sum()), len(knobs.knobs), checks["disentanglement_median"],
             checks["realism"]["ratio"], ", ".join(checks["crystal"]["disagreeing"]) or "none", checks["training"]["steps"], checks["seconds"])
    return checks


def _check_failed(encoded: float, fidelity: float) -> str:
    """Which of its own checks a knob fails, in words ("" where it works)."""
    if encoded < ENCODED:
        return f"not encoded by the model's h (R² {encoded:.2f} < {ENCODED})"
    return f"fidelity R² {fidelity:.2f} below its goal {FIDELITY_GOAL}" if fidelity < FIDELITY_GOAL else ""


def _verdict(crystal: dict, knob: str) -> str:
    entry = crystal["knobs"].get(knob)
    return "not judged" if entry is None else ("too few curves" if entry["verdict"].startswith("too few") else entry["verdict"])


def _regression_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x; NaN where x does not vary. Tested on the range, not on the sum of squares:
    the mean of n equal values can differ from them in the last bit, and the slope of that rounding is noise."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())):
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def _disagreement(summary: pd.DataFrame) -> pd.Series:
    """Where the knob, the concept direction and the plain regression give slopes of opposite sign (each larger than
    a tenth of the largest of the three, so that two flat responses do not count as disagreeing)."""
    columns = summary[["knob_slope", "concept_slope", "regression_slope"]].to_numpy()
    scale = np.nanmax(np.abs(columns), axis=1, keepdims=True)
    signs = np.where(np.abs(columns) > 0.1 * scale, np.sign(columns), 0)
    return pd.Series((signs.max(axis=1) > 0) & (signs.min(axis=1) < 0), index=summary.index)


@torch.no_grad()
def _realism(model: KnobModel, train_h: np.ndarray, atoms: AtomArrays, values: np.ndarray, rng) -> dict:
    """Median distance of decoded ĥ (each knob in turn at the middle of its sweep) to the nearest real training h,
    against that of real h to the nearest other."""
    reference = torch.as_tensor(train_h[rng.permutation(len(train_h))[:4000]], dtype=torch.float32)
    real = torch.as_tensor(atoms.h, dtype=torch.float32)
    c_t, k_t = torch.as_tensor(atoms.context, dtype=torch.float32), torch.as_tensor(atoms.knobs, dtype=torch.float32)
    mu, _ = model.encode(real, c_t)
    decoded = []
    for j in range(values.shape[0]):
        swept = k_t.clone()
        swept[:, j] = float(values[j, values.shape[1] // 2])
        decoded.append(model.decode(mu, c_t, swept))
    decoded = torch.cat(decoded)
    nearest_two = torch.cdist(real, reference).topk(2, dim=1, largest=False).values
    # an atom that is itself in the reference (or has an identical twin there) is measured to the next one
    real_to_real = torch.where(nearest_two[:, 0] < 1e-6, nearest_two[:, 1], nearest_two[:, 0])
    generated = torch.cdist(decoded, reference).min(dim=1).values
    return {"decoded_to_real_median": float(generated.median()), "real_to_real_median": float(real_to_real.median()),
            "ratio": float(generated.median() / real_to_real.median().clamp_min(1e-12))}


@torch.no_grad()
def _latent_map(model: KnobModel, knobs: KnobData) -> pd.DataFrame:
    """Per atom of every set: the first two principal components of its z (fitted on training atoms), with its
    attributes and contribution (the PGH-VAE view of the latent space)."""
    z = {name: model.encode(torch.as_tensor(a.h, dtype=torch.float32), torch.as_tensor(a.context, dtype=torch.float32))[0].numpy()
         for name, a in knobs.arrays.items()}
    centre = z["train"].mean(axis=0)
    _, _, components = np.linalg.svd(z["train"] - centre, full_matrices=False)
    frames = []
    for name, table in knobs.tables.items():
        projected = (z[name] - centre) @ components[:2].T
        frames.append(table.assign(z1=projected[:, 0], z2=projected[:, 1]))
    return pd.concat(frames, ignore_index=True)
