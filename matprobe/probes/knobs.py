"""Generative knobs: turn a domain attribute of an atom's environment and read how the frozen model responds.

After Liu, Kailkhura et al. ("Explainable deep learning for uncovering actionable scientific insights for materials
discovery and design"), who inject domain attributes as tunable knobs into a generative model of a predictor's
inputs, and PGH-VAEs, which shape a VAE's latent space with topological and coordination descriptors. Here the
generated object is an atom's representation h, what the trained model's atom-wise head reads, so a generated h has
a contribution exactly as a real one does.

1. Attributes per atom (`ATTRIBUTES`): element properties, local environment (bonds by covalent radii), topological
   descriptors of its neighbourhood, and whether it is an atom of the held-out element (a grouping, not a knob).
2. A conditional VAE p(h | z, a), trained on training-set atoms only. z should carry what the attributes do not: an
   adversary (as in Fader networks, Lample et al. 2017) learns to predict a from z and the encoder is trained to
   defeat it. Chosen over a decorrelation penalty because the check of item 4 (attributes predicted from z) uses a
   non-linear regressor, and only an adversary that is itself non-linear removes what such a regressor would find.
3. Knob sweeps: for sampled real atoms, encode z, sweep one attribute over its 5th-95th percentile (of training
   atoms) with the others held at the atom's own values, decode, and apply the frozen head.
4. Checks: reconstruction (R² of head(ĥ) against head(h) on held-out atoms), knob fidelity (a regressor fit on real
   h recovers the knob's value from decoded ĥ), disentanglement (attributes predicted from z), realism (distance of
   decoded ĥ to the nearest real h against real-to-real). A knob that fails fidelity is reported as failing, and the
   figure draws it as such.
5. Baselines: a linear concept direction per attribute in h-space (concept activation vectors, Kim et al. 2018), and
   the plain regression of contribution on attribute over real atoms."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from vesin import NeighborList

from matprobe.inputs.features import element_properties
from matprobe.inputs.structures import Crystal
from matprobe.layout import run_paths
from matprobe.io import write_json, write_parquet, write_torch
from matprobe.models.seam import TrainedModel, load_trained
from matprobe.prepare.sets import load_split_data
from matprobe.runtime import Runtime

log = logging.getLogger("matprobe.probes.knobs")

ELEMENT_ATTRIBUTES = ["electronegativity", "covalent_radius", "group", "period", "valence_electrons"]
ENVIRONMENT_ATTRIBUTES = ["coordination", "mean_bond_length", "shortest_bond_length", "bond_length_spread",
                          "electronegativity_difference"]
TOPOLOGY_ATTRIBUTES = ["h1_count", "h1_total_persistence", "h2_count", "h2_total_persistence"]  # undirected (gudhi)
DIRECTED_ATTRIBUTES = ["ph_dir_b1_area", "ph_dir_b2_area"]  # directed (path homology)
UNITS = {"electronegativity": "Pauling", "covalent_radius": "Å", "mean_bond_length": "Å", "shortest_bond_length": "Å",
         "bond_length_spread": "Å", "electronegativity_difference": "Pauling", "h1_total_persistence": "Å",
         "h2_total_persistence": "Å", "ph_dir_b1_area": "Å", "ph_dir_b2_area": "Å"}
BOND_TOLERANCE = 1.2  # bonded: closer than 1.2 × the sum of the covalent radii
FIDELITY_GOAL, RECONSTRUCTION_GOAL, DISENTANGLEMENT_GOAL = 0.8, 0.95, 0.2
ENCODED = 0.5  # an attribute the real h predicts with R² below this is not encoded by the model: no knob can turn it


# ---- 1. attributes ------------------------------------------------------------------------------------------------


def environment_attributes(crystal: Crystal, cutoff: float = 4.5) -> dict[str, np.ndarray]:
    """Per site: coordination (neighbours closer than BOND_TOLERANCE × the sum of covalent radii), mean, shortest and
    spread of those bond lengths, and the mean electronegativity of the bonded neighbours minus the atom's own. An
    atom with no bonded neighbour gets its nearest one as its only bond (coordination 0)."""
    props = element_properties()
    radius = props["covalent_radius"].to_numpy()
    electronegativity = props["electronegativity"].to_numpy()
    z = crystal.numbers
    i, j, d = NeighborList(cutoff=cutoff, full_list=True).compute(points=crystal.cart_coords(), box=crystal.lattice, periodic=True,
                                                                   quantities="ijd")
    columns = {name: np.full(crystal.nsites, np.nan) for name in ENVIRONMENT_ATTRIBUTES}
    for site in range(crystal.nsites):
        mine = i == site
        neighbours, distances = j[mine], d[mine]
        if not len(distances):
            continue
        is_bonded = distances <= BOND_TOLERANCE * (radius[z[site] - 1] + radius[z[neighbours] - 1])
        bonded = is_bonded if is_bonded.any() else distances == distances.min()
        lengths = distances[bonded]
        columns["coordination"][site] = is_bonded.sum()
        columns["mean_bond_length"][site] = lengths.mean()
        columns["shortest_bond_length"][site] = distances.min()
        columns["bond_length_spread"][site] = lengths.std()
        columns["electronegativity_difference"][site] = _mean_or_nan(electronegativity[z[neighbours[bonded]] - 1]) - electronegativity[z[site] - 1]
    return columns


def _mean_or_nan(values: np.ndarray) -> float:
    """The mean of the finite values (noble gases have no electronegativity), NaN where there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


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
    """Encoder E(h) -> (mu, log var) of z; decoder D(z, a) -> h; adversary A(z) -> a. Inputs and outputs are
    standardised with the training atoms' statistics, which the model keeps (buffers) to map back."""

    def __init__(self, h_dim: int, a_dim: int, z_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.encoder = _mlp(h_dim, hidden, 2 * z_dim)
        self.decoder = _mlp(z_dim + a_dim, hidden, h_dim)
        self.adversary = _mlp(z_dim, hidden // 2, a_dim)
        for name, size in (("h_mean", h_dim), ("h_std", h_dim), ("a_mean", a_dim), ("a_std", a_dim)):
            self.register_buffer(name, torch.zeros(size) if name.endswith("mean") else torch.ones(size))
        self.z_dim = z_dim

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder((h - self.h_mean) / self.h_std).chunk(2, dim=-1)
        return mu, log_var.clamp(-8, 8)

    def decode(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, (a - self.a_mean) / self.a_std], dim=-1)) * self.h_std + self.h_mean


@dataclass
class KnobTraining:
    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    beta: float = 0.05  # weight of the KL term
    adversary_weight: float = 1.0
    adversary_steps: int = 3  # adversary updates per VAE update: a stronger adversary keeps more of a out of z
    fidelity_weight: float = 1.0  # weight of the guide's read-out of swapped attributes (0: none)
    z_dim: int = 8
    seed: int = 0


def fit_knob_model(h: np.ndarray, a: np.ndarray, settings: KnobTraining, guide: nn.Module | None = None) -> tuple[KnobModel, dict]:
    """Train the conditional VAE with its adversary on (h, a) of training atoms; returns it and its loss history.

    Attributes are correlated (an element's electronegativity, radius, group and period come together), so a decoder
    trained on real atoms alone learns to answer an attribute set to another atom's value, the rest held, with a
    compromise that carries it only in part. With a `guide` (a frozen regressor of a from real h), each step also sets
    one attribute of every atom to another atom's value and asks that the decoded h read as that value, as AttGAN
    (He et al. 2019) asks of its edited images: the knobs then move h the way the attribute does."""
    torch.manual_seed(settings.seed)
    h_t, a_t = torch.as_tensor(h, dtype=torch.float32), torch.as_tensor(a, dtype=torch.float32)
    model = KnobModel(h.shape[1], a.shape[1], settings.z_dim)
    model.h_mean.copy_(h_t.mean(0)), model.h_std.copy_(h_t.std(0).clamp_min(1e-6))
    model.a_mean.copy_(a_t.mean(0)), model.a_std.copy_(a_t.std(0).clamp_min(1e-6))
    a_scaled = (a_t - model.a_mean) / model.a_std
    vae_parameters = [*model.encoder.parameters(), *model.decoder.parameters()]
    vae_optimizer = torch.optim.Adam(vae_parameters, lr=settings.lr)
    adversary_optimizer = torch.optim.Adam(model.adversary.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    history = []
    for epoch in range(settings.epochs):
        # the adversary's weight grows over the first third, so that the VAE first learns to reconstruct
        weight = settings.adversary_weight * min(1.0, 3 * epoch / max(settings.epochs, 1))
        order = torch.randperm(len(h_t), generator=generator)
        totals = np.zeros(3)
        for start in range(0, len(order), settings.batch_size):
            index = order[start : start + settings.batch_size]
            h_batch, a_batch = h_t[index], a_scaled[index]
            for _ in range(settings.adversary_steps):  # the adversary's steps: predict a from z (z held fixed)
                adversary_loss = ((model.adversary(model.encode(h_batch)[0].detach()) - a_batch) ** 2).mean()
                adversary_optimizer.zero_grad()
                adversary_loss.backward()
                adversary_optimizer.step()
            # the VAE's step: reconstruct h from (z, a), keep z near the prior, and leave the adversary nothing
            mu, log_var = model.encode(h_batch)
            z = mu + torch.randn(mu.shape, generator=generator) * (0.5 * log_var).exp()
            reconstruction = (((model.decode(z, a_batch * model.a_std + model.a_mean) - h_batch) / model.h_std) ** 2).mean()
            kl = (-0.5 * (1 + log_var - mu**2 - log_var.exp())).sum(dim=1).mean()
            fooled = ((model.adversary(mu) - a_batch) ** 2).mean()
            loss = reconstruction + settings.beta * kl - weight * fooled
            if guide is not None and settings.fidelity_weight:
                rows = torch.arange(len(index))
                column = torch.randint(0, a_t.shape[1], (len(index),), generator=generator)
                value = a_scaled[torch.randint(0, len(a_scaled), (len(index),), generator=generator), column]
                swapped = a_batch.clone()
                swapped[rows, column] = value
                read = (guide(model.decode(z, swapped * model.a_std + model.a_mean)) - model.a_mean) / model.a_std
                loss = loss + settings.fidelity_weight * ((read[rows, column] - value) ** 2).mean()
            vae_optimizer.zero_grad()
            loss.backward()
            vae_optimizer.step()
            totals += [float(value.detach()) * len(index) for value in (reconstruction, kl, adversary_loss)]
        history.append({"epoch": epoch + 1, **dict(zip(("reconstruction", "kl", "adversary"), totals / len(h_t)))})
    return model.eval(), {"history": history}


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
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
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
def knob_responses(model: KnobModel, head, h: np.ndarray, a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(atoms, attributes, steps) head outputs of decoded ĥ with one attribute set to each sweep value, the others the
    atom's own, z the atom's encoding (its mean)."""
    mu, _ = model.encode(torch.as_tensor(h, dtype=torch.float32))
    a_t = torch.as_tensor(a, dtype=torch.float32)
    out = np.empty((len(h), values.shape[0], values.shape[1]))
    for j in range(values.shape[0]):
        for k, value in enumerate(values[j]):
            swept = a_t.clone()
            swept[:, j] = float(value)
            out[:, j, k] = head(model.decode(mu, swept)).numpy()
    return out


@torch.no_grad()
def concept_responses(directions: np.ndarray, head, h: np.ndarray, a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The linear baseline: h moved along each attribute's concept direction (one unit of attribute per step of the
    direction) from the atom's own attribute value to each sweep value."""
    h_t = torch.as_tensor(h, dtype=torch.float32)
    out = np.empty((len(h), values.shape[0], values.shape[1]))
    for j in range(values.shape[0]):
        direction = torch.as_tensor(directions[j], dtype=torch.float32)
        for k, value in enumerate(values[j]):
            shift = torch.as_tensor(value - a[:, j], dtype=torch.float32)[:, None]
            out[:, j, k] = head(h_t + shift * direction).numpy()
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


def representations(trained: TrainedModel, crystal_set, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per atom of a set (graph order): h, the contribution (target units) and the crystal's size."""
    out = trained.predict(crystal_set.graphs, batch_size, keep_atoms=True)
    sizes = np.diff(out.atom_ptr)
    return out.atoms, out.contributions, np.repeat(sizes, sizes)


# ---- the stage: named steps ---------------------------------------------------------------------------------

KNOB_SETS = ("train", "id_test", "ood_test")  # their position is the stream of their seeded sample


@dataclass
class KnobData:
    """The sampled atoms of each set: their table (attributes, contribution, share) and representations h, the
    attributes used as knobs, and those attributes as arrays (missing values filled with the training median)."""

    tables: dict[str, tuple[pd.DataFrame, np.ndarray]]
    attributes: list[str]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]


def sample_atoms(trained: TrainedModel, data, materials: pd.DataFrame, topology: list[pd.DataFrame], options: dict) -> KnobData:
    """1. Attributes, h and contributions of the atoms of a seeded sample of crystals per set."""
    tables = {}
    for stream, set_name in enumerate(KNOB_SETS):
        if set_name not in data.sets:
            continue
        limit = options["train_crystals"] if set_name == "train" else options["test_crystals"]
        crystal_set = data.sets[set_name].subsample(limit, options["seed"], stream)
        table = atom_table(crystal_set, materials, topology, data.omitted)
        h, contribution, size = representations(trained, crystal_set)
        table["contribution"], table["share"], table["set"] = contribution, contribution / size, set_name
        tables[set_name] = (table, h)
    train_table = tables["train"][0]
    attributes = [name for name in (*ELEMENT_ATTRIBUTES, *ENVIRONMENT_ATTRIBUTES, *TOPOLOGY_ATTRIBUTES, *DIRECTED_ATTRIBUTES)
                  if name in train_table and train_table[name].notna().mean() > 0.5 and train_table[name].nunique() > 1]
    fill = train_table[attributes].median()
    arrays = {name: (table[attributes].fillna(fill).to_numpy(dtype=float), h) for name, (table, h) in tables.items()}
    return KnobData(tables, attributes, arrays)


@dataclass
class FittedKnobs:
    model: KnobModel
    settings: KnobTraining
    history: dict
    fitted: np.ndarray  # training atoms the knob model was fitted on
    held: np.ndarray  # the fifth held out for the checks


def fit_knobs(knobs: KnobData, options: dict, rng) -> FittedKnobs:
    """2. The conditional VAE, on training atoms only (a held-out fifth of them for the checks)."""
    train_a, train_h = knobs.arrays["train"]
    order = rng.permutation(len(train_h))
    held = order[: max(1, len(order) // 5)]
    fitted = order[len(held):]
    settings = KnobTraining(epochs=options["epochs"], z_dim=options["z_dim"], fidelity_weight=options["fidelity_weight"],
                            seed=options["seed"])
    # the guide that shapes the knobs and the regressor that checks them are fitted apart (other seeds), so that the
    # fidelity check does not grade the knob model by the very function it was trained against
    guide, _ = fit_regressor(train_h[fitted], train_a[fitted], options["seed"] + 1)
    for parameter in guide.parameters():
        parameter.requires_grad_(False)
    model, history = fit_knob_model(train_h[fitted], train_a[fitted], settings, guide)
    return FittedKnobs(model, settings, history, fitted, held)


@torch.no_grad()
def check_knobs(knobs: KnobData, fitted: FittedKnobs, head, values: np.ndarray, checked: np.ndarray, options: dict, rng) -> dict:
    """4. Reconstruction, fidelity, encoding, disentanglement and realism, on atoms the knob model was not fitted on."""
    train_a, train_h = knobs.arrays["train"]
    model, held, fit = fitted.model, fitted.held, fitted.fitted
    mu_held, _ = model.encode(torch.as_tensor(train_h[held], dtype=torch.float32))
    decoded = model.decode(mu_held, torch.as_tensor(train_a[held], dtype=torch.float32))
    reconstruction = float(r_squared(head(torch.as_tensor(train_h[held], dtype=torch.float32)).numpy(), head(decoded).numpy())[0])
    with torch.enable_grad():
        from_h, encoded = fit_regressor(train_h[fit], train_a[fit], options["seed"])
        z_all = model.encode(torch.as_tensor(train_h, dtype=torch.float32))[0].detach().numpy()
        _, from_z = fit_regressor(z_all, train_a, options["seed"])
    checked_a, checked_h = knobs.arrays["id_test" if "id_test" in knobs.arrays else "train"]
    fidelity = []
    mu, _ = model.encode(torch.as_tensor(checked_h[checked], dtype=torch.float32))
    for j in range(len(knobs.attributes)):
        targets, recovered = [], []
        for value in values[j]:
            swept = torch.as_tensor(checked_a[checked], dtype=torch.float32).clone()
            swept[:, j] = float(value)
            recovered.append(from_h(model.decode(mu, swept)).numpy()[:, j])
            targets.append(np.full(len(checked), value))
        fidelity.append(float(r_squared(np.concatenate(targets), np.concatenate(recovered))[0]))
    realism = _realism(model, train_h, checked_h[checked], checked_a[checked], values, rng)
    attributes = knobs.attributes
    return {
        "attributes": attributes, "train_atoms": int(len(fit)), "held_out_atoms": int(len(held)),
        "reconstruction_r2": reconstruction, "reconstruction_goal": RECONSTRUCTION_GOAL,
        "fidelity_r2": dict(zip(attributes, fidelity)), "fidelity_goal": FIDELITY_GOAL,
        "encoded_r2": dict(zip(attributes, map(float, encoded))), "encoded_threshold": ENCODED,
        "not_encoded": [name for name, value in zip(attributes, encoded) if value < ENCODED],
        "knobs_failing_fidelity": [name for name, value, enc in zip(attributes, fidelity, encoded) if enc >= ENCODED and value < FIDELITY_GOAL],
        "disentanglement_r2": dict(zip(attributes, map(float, from_z))), "disentanglement_goal": DISENTANGLEMENT_GOAL,
        "realism": realism, "training": {**fitted.settings.__dict__, "final": fitted.history["history"][-1]},
    }


def sweep_knobs(knobs: KnobData, fitted: FittedKnobs, head, values: np.ndarray, sample: dict, checks: dict, options: dict,
                rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """3. Sweeps (ID, OOD, and the held-out element's atoms apart) and 5. the baselines beside them: the response
    curves, and per set, atom group and attribute the slopes and whether the knob works."""
    train_a, train_h = knobs.arrays["train"]
    directions = concept_directions(train_h[fitted.fitted], train_a[fitted.fitted])
    fidelity = [checks["fidelity_r2"][name] for name in knobs.attributes]
    encoded = [checks["encoded_r2"][name] for name in knobs.attributes]
    rows, summaries = [], []
    for set_name, (a, h) in knobs.arrays.items():
        table = knobs.tables[set_name][0]
        groups = {"all": sample[set_name]}
        held_out = np.flatnonzero(table["is_held_out"].to_numpy())
        if len(held_out):
            groups["held_out"] = rng.permutation(held_out)[: options["sweep_atoms"]]
        for group, atoms in groups.items():
            members = held_out if group == "held_out" else np.arange(len(table))
            curves = knob_responses(fitted.model, head, h[atoms], a[atoms], values)
            linear = concept_responses(directions, head, h[atoms], a[atoms], values)
            size = table["contribution"].to_numpy()[atoms] / table["share"].to_numpy()[atoms]
            knob_slopes, concept_slopes, mono = slopes(values, curves), slopes(values, linear), monotonicity(curves)
            for j, attribute in enumerate(knobs.attributes):
                observed = _regression_slope(a[members, j], table["contribution"].to_numpy()[members])
                summaries.append({"set": set_name, "atoms": group, "attribute": attribute, "n": len(atoms),
                                  "knob_slope": float(np.mean(knob_slopes[:, j])), "knob_slope_spread": float(np.std(knob_slopes[:, j])),
                                  "monotonicity": float(np.mean(mono[:, j])), "concept_slope": float(np.mean(concept_slopes[:, j])),
                                  "regression_slope": observed, "fidelity": fidelity[j], "encoded": float(encoded[j]),
                                  "knob_works": bool(fidelity[j] >= FIDELITY_GOAL and encoded[j] >= ENCODED)})
                for k, value in enumerate(values[j]):
                    rows.append(pd.DataFrame({"set": set_name, "atoms": group, "attribute": attribute, "step": k, "value": value,
                                              "id": table["id"].to_numpy()[atoms], "site": table["site"].to_numpy()[atoms],
                                              "contribution": curves[:, j, k], "share": curves[:, j, k] / size,
                                              "concept_contribution": linear[:, j, k]}))
    summary = pd.DataFrame(summaries)
    summary["methods_disagree"] = _disagreement(summary)
    return pd.concat(rows, ignore_index=True), summary


def run_knobs(model_path, graphs_path, materials_path, split_path, topology_paths, outputs: Mapping, options: dict,
              threads: int = 1) -> dict:
    """Train the knob model of one trained model and write (`outputs`: layout.RUN_FILES["knobs"] names to paths) the
    knob model, the sampled atoms (attributes, contribution and z in two principal components), the response curves,
    their summary and the checks (last)."""
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
    fitted = fit_knobs(knobs, options, rng)
    values = sweep_values(knobs.arrays["train"][0], options["steps"])
    sample = {name: rng.permutation(len(a))[: options["sweep_atoms"]] for name, (a, _) in knobs.arrays.items()}
    checked = sample["id_test" if "id_test" in knobs.arrays else "train"]
    checks = check_knobs(knobs, fitted, trained.head, values, checked, options, rng)
    responses, summary = sweep_knobs(knobs, fitted, trained.head, values, sample, checks, options, rng)
    checks["seconds"] = round(time.perf_counter() - started, 1)
    write_torch({"state_dict": fitted.model.state_dict(), "h_dim": int(knobs.arrays["train"][1].shape[1]),
                 "attributes": knobs.attributes, "z_dim": fitted.settings.z_dim, "sweep_values": values.tolist()}, outputs["model"])
    write_parquet(_latent_map(fitted.model, knobs.tables, knobs.arrays), outputs["atoms"])
    write_parquet(responses, outputs["responses"])
    write_parquet(summary, outputs["summary"])
    write_json(checks, outputs["checks"])
    log.info("knobs: reconstruction R² %.3f, knobs working %d of %d, %.1f s", checks["reconstruction_r2"],
             int(summary.drop_duplicates("attribute")["knob_works"].sum()), len(knobs.attributes), checks["seconds"])
    return checks


def _regression_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x; NaN where x does not vary. Tested on the range, not on the sum of squares:
    the mean of n equal values can differ from them in the last bit, and the slope of that rounding is noise."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x[ok], dtype=np.float64), np.asarray(y[ok], dtype=np.float64)
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
def _realism(model: KnobModel, train_h: np.ndarray, h: np.ndarray, a: np.ndarray, values: np.ndarray, rng) -> dict:
    """Median distance of decoded ĥ (swept) to the nearest real training h, against that of real h to the nearest other."""
    reference = torch.as_tensor(train_h[rng.permutation(len(train_h))[:4000]], dtype=torch.float32)
    real = torch.as_tensor(h, dtype=torch.float32)
    mu, _ = model.encode(real)
    decoded = []
    for j in range(values.shape[0]):
        swept = torch.as_tensor(a, dtype=torch.float32).clone()
        swept[:, j] = float(values[j, values.shape[1] // 2])
        decoded.append(model.decode(mu, swept))
    decoded = torch.cat(decoded)
    nearest_two = torch.cdist(real, reference).topk(2, dim=1, largest=False).values
    # an atom that is itself in the reference (or has an identical twin there) is measured to the next one
    real_to_real = torch.where(nearest_two[:, 0] < 1e-6, nearest_two[:, 1], nearest_two[:, 0])
    generated = torch.cdist(decoded, reference).min(dim=1).values
    return {"decoded_to_real_median": float(generated.median()), "real_to_real_median": float(real_to_real.median()),
            "ratio": float(generated.median() / real_to_real.median().clamp_min(1e-12))}


@torch.no_grad()
def _latent_map(model: KnobModel, tables: dict, arrays: dict) -> pd.DataFrame:
    """Per atom of every set: the first two principal components of its z (fitted on training atoms), with its
    attributes and contribution (the PGH-VAE view of the latent space)."""
    z = {name: model.encode(torch.as_tensor(h, dtype=torch.float32))[0].numpy() for name, (_, h) in arrays.items()}
    centre = z["train"].mean(axis=0)
    _, _, components = np.linalg.svd(z["train"] - centre, full_matrices=False)
    frames = []
    for name, (table, _) in tables.items():
        projected = (z[name] - centre) @ components[:2].T
        frames.append(table.assign(z1=projected[:, 0], z2=projected[:, 1]))
    return pd.concat(frames, ignore_index=True)
