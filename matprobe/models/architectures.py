"""Crystal graph neural networks with atom-wise readouts (PyTorch Geometric).

Both models predict a contribution per atom and average them, so a crystal's prediction is exactly the mean
of its atom contributions (formation energy per atom and band gap are per-atom or intensive quantities);
this is SchNetPack's `Atomwise` readout with mean aggregation. Besides the prediction, `forward` returns the
per-atom contributions and a per-crystal latent vector (the mean of the atom representations the head
reads); `element_representation()` returns the vector the model gives each element.

The forward pass is split at its inputs, so that attribution can differentiate with respect to them:
`node_inputs(z)` (physical feature rows or learned embeddings) and `edge_inputs(dist)` (the radial
basis expansion of distances), then `forward_with_inputs(batch, node_inputs, edge_inputs)`, the model seam's
form, which runs `forward_from_inputs` on the batch's graph tensors."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn.models.schnet import InteractionBlock, ShiftedSoftplus

from matprobe.inputs.features import MAX_Z, node_feature_table, physical_feature_layout

# Gaussian tails underflow into float32 denormals, which make CPU matrix products several times slower
# (shared/notes/performance.md: 4.4x in training). Values this small carry no information: zero them.
DENORMAL_FLOOR = 1e-30


class GaussianExpansion(nn.Module):
    """exp(-(d - mu_k)^2 / width^2) on evenly spaced centres mu_k from `start` to `stop` (CGCNN, SchNet)."""

    def __init__(self, start: float, stop: float, num: int, width: float | None = None):
        super().__init__()
        centres = torch.linspace(start, stop, num)
        self.register_buffer("centres", centres)
        self.width = float(width if width is not None else (stop - start) / (num - 1))

    def forward(self, distances: Tensor) -> Tensor:
        expanded = torch.exp(-((distances[:, None] - self.centres[None, :]) ** 2) / self.width**2)
        return torch.where(expanded < DENORMAL_FLOOR, torch.zeros_like(expanded), expanded)


class ElementEncoder(nn.Module):
    """Atomic number -> node input (`physical`: fixed 91-wide property vector; `onehot`: learned
    embedding), then -> hidden representation."""

    def __init__(self, kind: str, hidden: int):
        super().__init__()
        self.kind = kind
        if kind == "physical":
            self.register_buffer("table", torch.from_numpy(node_feature_table("physical")))
            self.project = nn.Linear(self.table.shape[1], hidden)
        elif kind == "onehot":
            self.embedding = nn.Embedding(MAX_Z + 1, hidden)
        else:
            raise ValueError(f"unknown node feature kind {kind!r}")

    def node_inputs(self, z: Tensor) -> Tensor:
        return self.table[z] if self.kind == "physical" else self.embedding(z)

    def embed(self, node_inputs: Tensor) -> Tensor:
        return self.project(node_inputs) if self.kind == "physical" else node_inputs

    def element_representation(self) -> Tensor:
        """(MAX_Z + 1, hidden): the hidden vector each element starts from."""
        if self.kind == "physical":
            return self.project(self.table)
        return self.embedding.weight


# How CGCNN normalises each convolution's summed messages. "batch" is Xie & Grossman's batch norm; "layer"
# normalises each atom on its own, so training and evaluation compute the same function: with batch norm a
# crystal whose messages lie far outside the training distribution is tamed by its batch's statistics in
# training but not by the running statistics at evaluation, and can be predicted tens of eV/atom off (README).
NORMS = ("batch", "layer")


class CrystalGraphConv(nn.Module):
    """CGCNN's gated convolution, x_i + BN(sum_j sigmoid(z_ij W_f + b_f) * softplus(z_ij W_s + b_s)) with
    z_ij = [x_i, x_j, e_ij]: the same parameters (and state-dict names) as PyG's `CGConv`, evaluated the
    cheap way. The x_i and x_j blocks of W are applied to the N atoms before gathering to the E >> N edges,
    and the gate and core share one matmul per block; only the edge features are multiplied at edge level."""

    def __init__(self, channels: int, edge_dim: int, norm: str = "batch"):
        super().__init__()
        self.channels = channels
        self.lin_f = nn.Linear(2 * channels + edge_dim, channels)
        self.lin_s = nn.Linear(2 * channels + edge_dim, channels)
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {list(NORMS)}")
        self.norm_kind = norm
        if norm == "batch":
            self.bn = nn.BatchNorm1d(channels)
        else:
            self.ln = nn.LayerNorm(channels)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, neighbors: int | None = None,
                atom_weight: Tensor | None = None) -> Tensor:
        """`neighbors=k` declares that every atom has exactly k edges, grouped by target atom in order (as
        matprobe's k-nearest graphs are): the centre term then broadcasts and the sum is a reshape, with no
        gather or scatter over edges. `atom_weight`: how many atoms each row stands for (symmetry-reduced
        graphs); batch-norm statistics in training are then weighted, as if over the full graph."""
        h = self.channels
        weight = torch.cat([self.lin_f.weight, self.lin_s.weight], dim=0)  # (2h, 2h + edge_dim)
        bias = torch.cat([self.lin_f.bias, self.lin_s.bias])
        source, target = edge_index
        centre = x @ weight[:, :h].T
        neighbour = x @ weight[:, h : 2 * h].T
        edge_term = torch.addmm(bias, edge_attr, weight[:, 2 * h :].T)
        if neighbors:
            z = (neighbour[source] + edge_term).view(-1, neighbors, 2 * h) + centre[:, None, :]
            summed = (z[..., :h].sigmoid() * nn.functional.softplus(z[..., h:])).sum(dim=1)
        else:
            z = centre[target] + neighbour[source] + edge_term
            messages = z[:, :h].sigmoid() * nn.functional.softplus(z[:, h:])
            summed = torch.zeros_like(x).index_add(0, target, messages)
        if self.norm_kind == "layer":
            return x + self.ln(summed)  # per atom: symmetry-reduced graphs need no weights here
        if atom_weight is not None and self.bn.training:
            return x + weighted_batch_norm(self.bn, summed, atom_weight)
        return x + self.bn(summed)


def weighted_batch_norm(bn: nn.BatchNorm1d, x: Tensor, weight: Tensor) -> Tensor:
    """Training-mode batch norm over rows that stand for `weight` rows each: the statistics, the output and
    the running-statistics update (unbiased variance, momentum or cumulative average) are those of
    `bn` on the rows repeated by their weights."""
    weight = weight.to(x.dtype)[:, None]
    total = weight.sum()
    mean = (weight * x).sum(dim=0) / total
    var = (weight * (x - mean) ** 2).sum(dim=0) / total
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked += 1
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            bn.running_var.mul_(1 - factor).add_(var.detach() * total / (total - 1).clamp_min(1), alpha=factor)
    out = (x - mean) / torch.sqrt(var + bn.eps)
    return out * bn.weight + bn.bias if bn.affine else out


def regular_neighbors(edge_index: Tensor, num_nodes: int) -> int | None:
    """k if every node is the target of exactly k edges, stored grouped by target in node order; else None."""
    edges = edge_index.shape[1]
    if num_nodes == 0 or edges % num_nodes:
        return None
    k = edges // num_nodes
    expected = torch.arange(num_nodes, device=edge_index.device).repeat_interleave(k)
    return k if k and torch.equal(edge_index[1], expected) else None


class AtomwiseMean(nn.Module):
    """Per-atom MLP to one contribution each; the crystal value is their mean (SchNetPack's Atomwise)."""

    def __init__(self, hidden: int, head_hidden: int, activation: nn.Module):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, head_hidden), activation, nn.Linear(head_hidden, 1))

    def forward(self, atoms: Tensor, batch: Tensor, num_graphs: int, atom_weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """`atom_weight`: how many atoms each row stands for (symmetry-reduced graphs, see
        graphs.symmetry_reduced); the crystal value is then the weighted mean."""
        contributions = self.net(atoms).squeeze(-1)
        weight = torch.ones_like(contributions) if atom_weight is None else atom_weight.to(contributions.dtype)
        # out-of-place index_add rather than a scatter: it has batching rules, so vmap over parameter sets works
        zeros = torch.zeros(num_graphs, dtype=atoms.dtype, device=atoms.device)
        counts = zeros.index_add(0, batch, weight)
        prediction = zeros.index_add(0, batch, contributions * weight) / counts
        latent = torch.zeros(num_graphs, atoms.shape[-1], dtype=atoms.dtype, device=atoms.device).index_add(0, batch, atoms * weight[:, None]) / counts[:, None]
        return prediction, contributions, latent


class CrystalModel(nn.Module):
    """Shared plumbing: inputs, readout and outputs; subclasses define `interact`. A crystal model of the model seam
    (matprobe.models.seam) reading the workflow's neighbour-list graphs."""

    graph_kind = "crystal"
    # symmetry-reduced graphs (one weighted atom per class of equivalent atoms) give the same outputs
    accepts_atom_weight = True
    encoder: ElementEncoder
    expansion: GaussianExpansion
    readout: AtomwiseMean

    def node_inputs(self, z: Tensor) -> Tensor:
        return self.encoder.node_inputs(z)

    def edge_inputs(self, edge_dist: Tensor) -> Tensor:
        return self.expansion(edge_dist)

    def node_input_layout(self) -> list[tuple[str, slice]] | None:
        """(property, columns) of the node inputs when they are the physical element features (TRIM's property
        space); None for a learned embedding, whose columns mean no property."""
        return physical_feature_layout() if self.encoder.kind == "physical" else None

    def edge_input_centres(self) -> Tensor:
        """The distance (Å) each edge-input column is centred on (TRIM's distance bands)."""
        return self.expansion.centres

    def forward_with_inputs(self, batch, node_inputs: Tensor, edge_inputs: Tensor) -> dict[str, Tensor]:
        """The outputs on `batch` with these node and edge inputs (the model seam's form, what attribution
        differentiates); the fast path and atom weights are what the batch carries."""
        return self.forward_from_inputs(node_inputs, edge_inputs, batch.edge_index, batch.edge_dist, batch.batch,
                                        batch.num_graphs, getattr(batch, "neighbors", None),
                                        getattr(batch, "atom_weight", None))

    def forward_from_inputs(self, node_inputs, edge_inputs, edge_index, edge_dist, batch, num_graphs, neighbors=None,
                            atom_weight=None) -> dict[str, Tensor]:
        """The same pass from the graph's tensors one by one (`batch`: each atom's crystal); subclasses that
        compute differently override this, and `forward` and `forward_with_inputs` follow."""
        atoms = self.interact(self.encoder.embed(node_inputs), edge_inputs, edge_index, edge_dist, neighbors, atom_weight)
        prediction, contributions, latent = self.readout(atoms, batch, num_graphs, atom_weight)
        # "atoms": each atom's representation, what the atom-wise head reads (the generative knobs model it)
        return {"prediction": prediction, "contributions": contributions, "latent": latent, "atoms": atoms}

    def forward(self, data, edge_inputs: Tensor | None = None, neighbors: int | None = None) -> dict[str, Tensor]:
        """`edge_inputs` may be passed precomputed: the distance expansion has no parameters, so callers that
        evaluate one batch many times (loss landscapes) expand once. `neighbors`: see `regular_neighbors`; by
        default what the batch carries (seam.CrystalGraphs.collate sets it)."""
        if neighbors is None:
            neighbors = getattr(data, "neighbors", None)
        if edge_inputs is None:
            edge_inputs = self.edge_inputs(data.edge_dist)
        return self.forward_from_inputs(
            self.node_inputs(data.z), edge_inputs, data.edge_index, data.edge_dist, data.batch, data.num_graphs, neighbors,
            getattr(data, "atom_weight", None),
        )

    def head(self, atoms: Tensor, z: Tensor | None = None) -> Tensor:
        """The atom-wise head: one contribution per representation (the element `z` enters through h already)."""
        return self.readout.net(atoms).squeeze(-1)

    def element_representation(self) -> Tensor:
        return self.encoder.element_representation()


@dataclass
class CGCNNConfig:
    node_features: str = "physical"
    hidden: int = 64
    layers: int = 3
    head_hidden: int = 128
    cutoff: float = 8.0
    gaussian_step: float = 0.2
    norm: str = "batch"


class CGCNN(CrystalModel):
    """Xie & Grossman's crystal graph convolution: gated edge convolutions over (x_i, x_j, e_ij) with batch
    norm (PyG's `CGConv` parameters, see CrystalGraphConv; `norm="layer"`: layer norm instead), softplus
    between layers, Gaussian distance expansion (0 to cutoff, step 0.2 Å)."""

    def __init__(self, config: CGCNNConfig):
        super().__init__()
        self.config = config
        num = int(round(config.cutoff / config.gaussian_step)) + 1
        self.expansion = GaussianExpansion(0.0, config.cutoff, num, width=config.gaussian_step)
        self.encoder = ElementEncoder(config.node_features, config.hidden)
        self.convs = nn.ModuleList(CrystalGraphConv(config.hidden, num, config.norm) for _ in range(config.layers))
        self.readout = AtomwiseMean(config.hidden, config.head_hidden, nn.Softplus())

    def interact(self, x, edge_inputs, edge_index, edge_dist, neighbors=None, atom_weight=None):
        for conv in self.convs:
            x = nn.functional.softplus(conv(x, edge_index, edge_inputs, neighbors, atom_weight))
        return x


@dataclass
class SchNetConfig:
    node_features: str = "physical"
    hidden: int = 64
    filters: int = 64
    interactions: int = 3
    gaussians: int = 50
    cutoff: float = 8.0


class SchNet(CrystalModel):
    """Schütt et al.'s continuous-filter convolutions (PyG's `InteractionBlock`: filter network on a
    Gaussian expansion of distances times a cosine cutoff), residual updates, atom-wise head. It runs on
    the precomputed periodic edges, unlike PyG's `SchNet` model, which builds a non-periodic radius graph."""

    def __init__(self, config: SchNetConfig):
        super().__init__()
        self.config = config
        self.expansion = GaussianExpansion(0.0, config.cutoff, config.gaussians)
        self.encoder = ElementEncoder(config.node_features, config.hidden)
        self.interactions = nn.ModuleList(
            InteractionBlock(config.hidden, config.gaussians, config.filters, config.cutoff) for _ in range(config.interactions)
        )
        self.readout = AtomwiseMean(config.hidden, max(config.hidden // 2, 1), ShiftedSoftplus())

    def interact(self, x, edge_inputs, edge_index, edge_dist, neighbors=None, atom_weight=None):
        # no batch statistics: symmetry-reduced graphs need nothing beyond the weighted readout
        for interaction in self.interactions:
            x = x + interaction(x, edge_index, edge_dist, edge_inputs)
        return x


MODELS = {"cgcnn": (CGCNN, CGCNNConfig), "schnet": (SchNet, SchNetConfig)}


def build_model(name: str, options: dict) -> CrystalModel:
    """A model from its name and options (unknown options are an error, so typos cannot pass silently)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, config_cls = MODELS[name]
    return cls(config_cls(**options))


def model_options(model: CrystalModel) -> dict:
    """The options that rebuild `model`. CGCNN's norm is left out at its default, batch, so that the records
    (and checkpoint fingerprints) of models trained before the option existed still match."""
    options = asdict(model.config)
    if options.get("norm") == "batch":
        del options["norm"]
    return options
