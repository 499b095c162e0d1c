"""A crystal model of your own behind matprobe's model seam (docs/own-model.md): an element embedding, `layers`
rounds of distance-gated messages from each atom's neighbours, an atom-wise head, and the crystal mean."""

import torch
from torch import nn


class MyNet(nn.Module):
    graph_kind = "crystal"  # the workflow's neighbour-list graphs: batch.z, .edge_index, .edge_dist, .batch
    # invariant messages summed over each atom's own edges, and a weighted mean: symmetry-reduced graphs (one atom
    # per class of equivalent atoms, batch.atom_weight) give the same predictions, for about half the atoms
    accepts_atom_weight = True

    def __init__(self, hidden: int = 32, layers: int = 2, cutoff: float = 8.0):
        super().__init__()
        self.embed = nn.Embedding(119, hidden)  # by atomic number
        self.register_buffer("centres", torch.linspace(0.0, cutoff, 16))
        self.filters = nn.ModuleList(nn.Linear(16, hidden) for _ in range(layers))
        self.updates = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def head(self, atoms):  # the atom-wise readout: one contribution per atom representation
        return self.out(atoms).squeeze(-1)

    def forward(self, batch):
        h = self.embed(batch.z)
        neighbour, centre = batch.edge_index  # row 0: the neighbour j, row 1: the centre atom i
        basis = torch.exp(-((batch.edge_dist[:, None] - self.centres) / 0.5) ** 2)
        for filter_, update in zip(self.filters, self.updates):
            messages = torch.sigmoid(filter_(basis)) * h[neighbour]
            h = h + torch.tanh(update(torch.zeros_like(h).index_add(0, centre, messages)))
        contributions = self.head(h)
        weight = getattr(batch, "atom_weight", None)
        weight = torch.ones_like(contributions) if weight is None else weight.to(h.dtype)
        # out-of-place index_add: batching rules exist for it, so landscapes may vmap over parameter sets
        counts = torch.zeros(batch.num_graphs, dtype=h.dtype, device=h.device).index_add(0, batch.batch, weight)
        prediction = torch.zeros_like(counts).index_add(0, batch.batch, weight * contributions) / counts
        latent = torch.zeros(batch.num_graphs, h.shape[1], dtype=h.dtype, device=h.device).index_add(
            0, batch.batch, weight[:, None] * h) / counts[:, None]
        return {"prediction": prediction, "contributions": contributions, "atoms": h, "latent": latent}


def build(options: dict) -> MyNet:
    """The factory: the config entry's options (without `factory`) become the model's arguments."""
    return MyNet(**options)
