"""CHGNet, a pretrained universal interatomic potential, behind the model seam (matprobe.models.seam).

CHGNet (Deng et al., Nature Machine Intelligence 5, 1031 (2023)) ships its 0.3.0 weights, trained on the Materials
Project trajectory set (MPtrj), inside the `chgnet` wheel: `pretrained({"version": "0.3.0"})` loads them with no
network. The workflow never trains it; it is a finished model that the probes read (issue 34, item 2b).

What the seam asks of it, and where each piece comes from:
- atoms (N, 64): the atom features after CHGNet's last atom convolution and its readout layer norm, i.e. exactly
  what its site-energy MLP reads (not chgnet's own `atom_fea` output, which is taken one convolution earlier).
- head(atoms, z): that MLP, plus CHGNet's fixed per-element composition energies (its `AtomRef`, fitted on MPtrj
  total energies), minus the formation reference mu_z below. The head needs the atomic numbers: a site energy is
  an absolute energy, and its reference depends on the element.
- contributions: site energy_i - mu_{Z_i} in eV. CHGNet's site energies sum to its total energy E; with
  per-element references mu, the formation energy per atom is (E - sum_i mu_{Z_i}) / N, the mean of the
  contributions. prediction: that mean, eV/atom, physical units (a record of mean 0 and std 1 scales nothing).
- latent: the mean of atoms per crystal.

Formation references (`fit_references`): CHGNet predicts total energies (those of its MPtrj training data), the
workflow's targets are formation energies per atom. The references mu are fitted by ordinary
least squares on a training set: with x_c the composition fractions of crystal c and E_c / N_c its CHGNet energy
per atom, mu minimises sum_c (E_c / N_c - x_c . mu - y_c)^2, so that the mean contribution best matches the DFT
formation energy y_c (minimum-norm where elements only occur in fixed ratios, which changes no prediction on such
crystals). Fit them on the split's training set, so that no test target is read. An element absent from it (the
held-out element of an omission split) gets, when crystals of that element alone are given (`elemental`), the
definition's own reference: CHGNet's lowest energy per atom among them, i.e. its elemental ground state, with no
target read (in an omission split those crystals belong to the OOD set: only their structures are used). Measured
on the demo when this was written: it agrees with the least-squares value to 0.04 eV/atom (median over the 50
elements with an elemental crystal), and with it the OOD error of omit-O is 0.035 eV/atom, as with mu_O fitted on
every crystal, test targets included.
An element with neither keeps mu = 0: its contributions are raw CHGNet site energies, off from a formation energy
by an unknown constant of several eV per atom of that element, so that predictions on its crystals are not
formation energies (2.6 eV/atom off on the demo's oxides); the summary of `fit_references` names such elements and
`unreferenced_atoms` counts their atoms in a set, to be reported with any number computed on it. The references
and how each was set are buffers: in the state dict, never moved by a landscape.

Parameters a landscape or a Hessian moves: `named_parameters()` is every trainable parameter CHGNet's energy
depends on (embeddings, learnable radial and angular basis frequencies, the bond, angle and atom convolutions, the
readout norm and MLP; 379,214 for 0.3.0). Not among them, so that no direction or eigenvector is wasted on them:
CHGNet's composition energies (frozen in chgnet itself; here a buffer), its magnetic-moment head `site_wise` (65
parameters) and its last angle update (33,152 parameters, whose output nothing reads), both removed.

Inputs: CHGNet builds its own graphs (all neighbours within 6 A, a bond graph of bonds within 3 A for the angles)
with its own converter, so `CHGNetGraphs` rebuilds each crystal from the stored numbers, positions and lattice and
ignores the workflow's graph settings. The stored positions are float32: graphs match those from the original
float64 crystal except for neighbours within ~1e-6 A of the cutoff, where CHGNet's smooth cutoff envelope makes
their weight vanish anyway."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from matprobe import MatprobeError

VERSIONS = ("0.3.0", "0.2.0", "r2scan")  # the checkpoints chgnet 0.4 ships in its wheel
MAX_Z = 94  # CHGNet embeds elements 1..94


# ---- inputs: the graph kind ---------------------------------------------------------------------------------


@dataclass
class CHGNetItem:
    """One crystal: CHGNet's graph, its target (NaN when unknown) and its position in the caller's list."""

    graph: object  # chgnet.graph.CrystalGraph
    y: float
    index: int

    @property
    def num_nodes(self) -> int:  # as PyG's Data has it: the landscape counts a set's atoms this way
        return int(self.graph.atomic_number.shape[0])


@dataclass
class CHGNetBatch:
    """Crystals batched for `CHGNetEnergy.forward`: CHGNet's graphs (its own batching runs inside forward, since
    it expands bond lengths and angles in bases whose frequencies are parameters) and the seam's per-atom and
    per-crystal tensors."""

    graphs: list
    z: Tensor  # (atoms,) atomic numbers, long
    batch: Tensor  # (atoms,) crystal index of each atom, long
    y: Tensor  # (crystals,) float32 targets
    item: Tensor  # (crystals,) positions of the items in the caller's list

    @property
    def num_graphs(self) -> int:
        return len(self.graphs)

    @property
    def num_nodes(self) -> int:
        return int(self.z.shape[0])

    def to(self, device) -> "CHGNetBatch":
        return CHGNetBatch([g.to(str(device)) for g in self.graphs], self.z.to(device), self.batch.to(device),
                           self.y.to(device), self.item.to(device))


class CHGNetGraphs:
    """CHGNet's crystal graphs (its CrystalGraphConverter) from the workflow's stored crystals or from crystals."""

    name = "chgnet"

    def __init__(self, atom_graph_cutoff: float = 6.0, bond_graph_cutoff: float = 3.0):
        from chgnet.graph import CrystalGraphConverter

        # "error": CHGNet's own advice is that atoms without neighbours within the cutoff give wrong energies
        self.converter = CrystalGraphConverter(atom_graph_cutoff=atom_graph_cutoff, bond_graph_cutoff=bond_graph_cutoff,
                                               algorithm="fast", on_isolated_atoms="error")

    def graph(self, crystal, name: str = ""):
        """CHGNet's graph of one `matprobe.inputs.structures.Crystal`; positions and lattice are plain inputs here
        (no forces or stresses are asked of the model), so they carry no autograd history."""
        structure = crystal.to_pymatgen()
        try:
            with warnings.catch_warnings():
                # the converter stores the formula, which pymatgen orders by electronegativity; noble gases have
                # none and pymatgen warns for each (a label only, nothing computed depends on it)
                warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
                graph = self.converter(structure, graph_id=name)
        except ValueError as exc:
            if "isolated atom" not in str(exc):
                raise
            raise MatprobeError(f"crystal {name or structure.composition.reduced_formula}: an atom has no neighbour "
                                f"within CHGNet's {self.converter.atom_graph_cutoff} A cutoff; CHGNet cannot "
                                "give it an energy") from None
        graph.atom_frac_coord = graph.atom_frac_coord.detach()
        graph.lattice = graph.lattice.detach()
        return graph

    def from_stored(self, stored: dict, ids: Sequence[str], targets: np.ndarray) -> list[CHGNetItem]:
        """Each crystal rebuilt from the stored numbers, Cartesian positions and lattice (prepare.graphs)."""
        from matprobe.inputs.structures import Crystal

        position = {crystal_id: k for k, crystal_id in enumerate(stored["ids"])}
        node_ptr = stored["node_ptr"]
        items = []
        for k, crystal_id in enumerate(ids):
            g = position[crystal_id]
            n0, n1 = int(node_ptr[g]), int(node_ptr[g + 1])
            lattice = stored["lattice"][g].double().numpy()
            cartesian = stored["pos"][n0:n1].double().numpy()
            crystal = Crystal(lattice=lattice, frac_coords=cartesian @ np.linalg.inv(lattice),
                              numbers=stored["numbers"][n0:n1].long().numpy())
            items.append(CHGNetItem(self.graph(crystal, str(crystal_id)), float(targets[k]), k))
        return items

    def from_crystals(self, crystals, graph_settings: dict | None = None) -> list[CHGNetItem]:
        """Graphs of (edited) crystals; the workflow's graph settings do not apply (CHGNet has its own cutoffs)."""
        return [CHGNetItem(self.graph(crystal, str(k)), float("nan"), k) for k, crystal in enumerate(crystals)]

    def collate(self, items: Sequence[CHGNetItem]) -> CHGNetBatch:
        graphs = [item.graph for item in items]
        counts = torch.tensor([int(g.atomic_number.shape[0]) for g in graphs])
        return CHGNetBatch(
            graphs=graphs,
            z=torch.cat([g.atomic_number for g in graphs]).long(),
            batch=torch.repeat_interleave(torch.arange(len(graphs)), counts),
            y=torch.tensor([item.y for item in items], dtype=torch.float32),
            item=torch.tensor([item.index for item in items]),
        )


# ---- the module -------------------------------------------------------------------------------------------


class CHGNetEnergy(nn.Module):
    """CHGNet's energy as a crystal model of the seam: formation energy per atom from site energies (module
    docstring). Built by `pretrained`; `fit_references` sets the formation references."""

    def __init__(self, chgnet: nn.Module):
        super().__init__()
        cutoffs = (float(chgnet.model_args["atom_graph_cutoff"]), float(chgnet.model_args["bond_graph_cutoff"]))
        if not chgnet.mlp_first:
            raise MatprobeError("CHGNet checkpoint: its readout pools before the MLP (mlp_first=False), so it has no "
                                "site energies to give as contributions")
        # CHGNet's fixed composition energies (zero where it has none) become a buffer indexed by Z, and the
        # magnetic-moment head goes: neither is a parameter the energy can be moved along
        composition = torch.zeros(MAX_Z + 1)
        if chgnet.composition_model is not None:
            composition[1:] = chgnet.composition_model.fc.weight.detach().reshape(-1)[:MAX_Z]
        chgnet.composition_model = None
        chgnet.site_wise = None
        # the angle update after the last bond convolution feeds nothing (the last atom convolution reads no angles;
        # chgnet computes it anyway): dropped, with its parameters, so that every parameter here moves the energy
        if isinstance(chgnet.angle_layers, nn.ModuleList) and len(chgnet.angle_layers) == chgnet.n_conv - 1:
            chgnet.angle_layers = nn.ModuleList(list(chgnet.angle_layers)[:-1])
        self.chgnet = chgnet
        self.cutoffs = cutoffs
        self.register_buffer("composition_energy", composition)
        # formation references mu_Z (eV per atom of element Z), zero until set, and how each was set (fit_references)
        self.register_buffer("formation_reference", torch.zeros(MAX_Z + 1))
        self.register_buffer("reference_source", torch.zeros(MAX_Z + 1, dtype=torch.int8))
        self.eval()

    @property
    def graph_kind(self) -> CHGNetGraphs:
        return CHGNetGraphs(*self.cutoffs)

    def site_reference(self) -> Tensor:
        """(MAX_Z + 1,): what the head adds to the MLP's output for an atom of element Z."""
        return self.composition_energy - self.formation_reference

    def representations(self, batch: CHGNetBatch) -> Tensor:
        """(atoms, 64): CHGNet's message passing (chgnet.model.CHGNet._compute for the energy, without forces,
        stresses or magnetic moments), up to and including the readout norm."""
        from chgnet.model.model import BatchedGraph

        model = self.chgnet
        g = BatchedGraph.from_graphs(batch.graphs, bond_basis_expansion=model.bond_basis_expansion,
                                     angle_basis_expansion=model.angle_basis_expansion, compute_stress=False)
        atom_feas = model.atom_embedding(g.atomic_numbers - 1)
        bond_feas = model.bond_embedding(g.bond_bases_ag)
        bond_weights_ag = model.bond_weights_ag(g.bond_bases_ag)
        bond_weights_bg = model.bond_weights_bg(g.bond_bases_bg)
        has_angles = len(g.angle_bases) != 0
        angle_feas = model.angle_embedding(g.angle_bases) if has_angles else None
        for idx, (atom_layer, bond_layer) in enumerate(zip(model.atom_conv_layers[:-1], model.bond_conv_layers, strict=True)):
            angle_layer = model.angle_layers[idx] if idx < len(model.angle_layers) else None
            atom_feas = atom_layer(atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=bond_weights_ag,
                                   atom_graph=g.batched_atom_graph, directed2undirected=g.directed2undirected)
            if has_angles and bond_layer is not None:
                bond_feas = bond_layer(atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=bond_weights_bg,
                                       angle_feas=angle_feas, bond_graph=g.batched_bond_graph)
                if angle_layer is not None:
                    angle_feas = angle_layer(atom_feas=atom_feas, bond_feas=bond_feas, angle_feas=angle_feas,
                                             bond_graph=g.batched_bond_graph)
        atom_feas = model.atom_conv_layers[-1](atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=bond_weights_ag,
                                               atom_graph=g.batched_atom_graph, directed2undirected=g.directed2undirected)
        return model.readout_norm(atom_feas) if model.readout_norm is not None else atom_feas

    def head(self, atoms: Tensor, z: Tensor | None = None) -> Tensor:
        """Contributions (eV) of atoms of elements `z` with representations `atoms`: CHGNet's site-energy MLP plus
        its composition energy of Z, minus the formation reference of Z."""
        if z is None:
            raise MatprobeError("CHGNet's head needs the atomic numbers z of the atoms: a site energy is an "
                                "absolute energy whose reference depends on the element")
        return self.chgnet.mlp(atoms).squeeze(-1) + self.site_reference()[z]

    def fit_to_training_set(self, items: Sequence[CHGNetItem], targets: np.ndarray, unlabelled: Sequence[CHGNetItem] = ()) -> dict:
        """The workflow's hook for a finished model (training.train_model): the formation references fitted on the
        split's training set; elements absent there from CHGNet's ground state among the split's single-element
        crystals in `unlabelled` (structures only: no target of theirs is read)."""
        return fit_references(self, items, targets, elemental=unlabelled)

    def forward(self, batch: CHGNetBatch) -> dict[str, Tensor]:
        atoms = self.representations(batch)
        contributions = self.head(atoms, batch.z)
        # out-of-place index_add, as in architectures.AtomwiseMean: it has batching rules, so vmap over parameters works
        zeros = torch.zeros(batch.num_graphs, dtype=atoms.dtype, device=atoms.device)
        counts = zeros.index_add(0, batch.batch, torch.ones_like(contributions))
        prediction = zeros.index_add(0, batch.batch, contributions) / counts
        latent = atoms.new_zeros(batch.num_graphs, atoms.shape[-1]).index_add(0, batch.batch, atoms) / counts[:, None]
        return {"prediction": prediction, "contributions": contributions, "atoms": atoms, "latent": latent}


def pretrained(options: dict) -> CHGNetEnergy:
    """The factory the seam names ("chgnet"): CHGNet with the weights its wheel ships, options {"version": "0.3.0"}
    (or "0.2.0", "r2scan"); on the CPU, in eval mode, formation references not yet fitted."""
    version = str(options.get("version", "0.3.0"))
    if version not in VERSIONS:
        raise MatprobeError(f"model chgnet: version {version!r} is not one its wheel ships ({', '.join(VERSIONS)})")
    from chgnet.model import CHGNet

    # CHGNet prints its parameter count and device on load; the workflow's logs say what was loaded instead
    with contextlib.redirect_stdout(io.StringIO()):
        chgnet = CHGNet.load(model_name=version, use_device="cpu", verbose=False)
    return CHGNetEnergy(chgnet)


# ---- formation references ----------------------------------------------------------------------------------

# how each element's formation reference was set (the `reference_source` buffer)
UNREFERENCED, LEAST_SQUARES, ELEMENTAL = 0, 1, 2


def composition_fractions(items: Sequence[CHGNetItem]) -> np.ndarray:
    """(crystals, MAX_Z + 1): the fraction of each crystal's atoms that are of element Z."""
    fractions = np.zeros((len(items), MAX_Z + 1))
    for row, item in enumerate(items):
        z = item.graph.atomic_number.long().numpy()
        fractions[row] = np.bincount(z, minlength=MAX_Z + 1) / len(z)
    return fractions


def _symbol(z: int) -> str:
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(z)).symbol


@torch.no_grad()
def energies_per_atom(module: CHGNetEnergy, items: Sequence[CHGNetItem], batch_size: int = 32) -> np.ndarray:
    """CHGNet's total energy per atom (eV/atom) of each item, whatever references the module holds."""
    module.eval()
    kind = module.graph_kind
    predictions = []
    for start in range(0, len(items), batch_size):
        batch = kind.collate(items[start : start + batch_size])
        predictions.append(module(batch)["prediction"].double().cpu())
    fractions = torch.from_numpy(composition_fractions(items))
    return (torch.cat(predictions) + fractions @ module.formation_reference.double().cpu()).numpy()


@torch.no_grad()
def fit_references(module: CHGNetEnergy, items: Sequence[CHGNetItem], targets: np.ndarray | None = None,
                   elemental: Sequence[CHGNetItem] = (), batch_size: int = 32) -> dict:
    """Set the module's formation references (module docstring): least squares on `items` and their formation
    energies per atom (`targets`, or the items' own), then, for elements absent from `items`, CHGNet's lowest
    energy per atom among the crystals of `elemental` that consist of that element alone (their targets are never
    read). Returns a summary: crystals, the elements fitted by least squares with their atom counts, those
    referenced by an elemental crystal with its energy, those left unreferenced, the rank of the fit and its RMS
    and mean absolute residual (eV/atom)."""
    targets = np.array([item.y for item in items] if targets is None else targets, dtype=np.float64)
    if len(targets) != len(items) or not len(items) or not np.isfinite(targets).all():
        raise MatprobeError(f"CHGNet references: need a finite target for each of the {len(items)} crystals "
                            f"({len(targets)} given, {int((~np.isfinite(targets)).sum())} not finite)")
    energy = energies_per_atom(module, items, batch_size)
    fractions = composition_fractions(items)
    present = np.flatnonzero(fractions.sum(axis=0) > 0)
    solution, _, rank, _ = np.linalg.lstsq(fractions[:, present], energy - targets, rcond=None)
    reference = np.zeros(MAX_Z + 1)
    source = np.full(MAX_Z + 1, UNREFERENCED, dtype=np.int8)
    reference[present], source[present] = solution, LEAST_SQUARES

    pure = [item for item in elemental if len(set(item.graph.atomic_number.tolist())) == 1]
    pure_z = np.array([int(item.graph.atomic_number[0]) for item in pure], dtype=np.int64)
    wanted = [k for k, z in enumerate(pure_z) if source[z] == UNREFERENCED]
    by_elemental = {}
    if wanted:
        energy_pure = energies_per_atom(module, [pure[k] for k in wanted], batch_size)
        for k, e in zip(wanted, energy_pure):
            z = int(pure_z[k])
            if source[z] == UNREFERENCED or e < reference[z]:
                reference[z], source[z] = e, ELEMENTAL
        by_elemental = {_symbol(z): round(float(reference[z]), 4) for z in sorted(set(pure_z[wanted].tolist()))}
    module.formation_reference.copy_(torch.from_numpy(reference).to(module.formation_reference.dtype))
    module.reference_source.copy_(torch.from_numpy(source))

    residual = energy - fractions[:, present] @ solution - targets
    atoms = np.bincount(np.concatenate([item.graph.atomic_number.long().numpy() for item in items]), minlength=MAX_Z + 1)
    return {
        "crystals": len(items),
        "least_squares": {_symbol(z): int(atoms[z]) for z in present},
        "elemental": by_elemental,
        "unreferenced": [_symbol(z) for z in range(1, MAX_Z + 1) if source[z] == UNREFERENCED],
        "rank": int(rank),
        "rms_residual": float(np.sqrt(np.mean(residual**2))),
        "mae_residual": float(np.mean(np.abs(residual))),
    }


def unreferenced_atoms(module: CHGNetEnergy, items: Sequence[CHGNetItem]) -> dict[str, int]:
    """Atoms per element, in `items`, whose element has no formation reference (their contributions, and the
    predictions of their crystals, carry an unknown constant)."""
    source = module.reference_source.cpu().numpy()
    numbers = [item.graph.atomic_number.long().numpy() for item in items]
    counts = np.bincount(np.concatenate(numbers) if numbers else np.zeros(0, np.int64), minlength=MAX_Z + 1)
    return {_symbol(z): int(counts[z]) for z in range(1, MAX_Z + 1) if counts[z] and source[z] == UNREFERENCED}
