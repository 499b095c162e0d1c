"""The sets of a split as every model stage reads them: ids, targets, elements and crystal graphs, together.

A split file (results/splits/...) lists ids per set; `load_split_data` joins them with the materials table and
the stored graphs, dropping (and counting) crystals that have no graph or no value of the target."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from matprobe import MatprobeError

if TYPE_CHECKING:  # torch is imported where graphs are built: split jobs, which read SETS, start faster without it
    from torch_geometric.data import Data

    from matprobe.prepare.splits import Split

# The four sets a split can have, in the order every table and figure lists them.
SETS = ("train", "val", "id_test", "ood_test")
TEST_SETS = ("id_test", "ood_test")


@dataclass
class CrystalSet:
    name: str
    ids: list[str]
    y: np.ndarray  # target values, physical units
    elements: list[list[str]]
    graphs: list[Data] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions) -> "CrystalSet":
        positions = [int(k) for k in positions]
        return replace(self, ids=[self.ids[k] for k in positions], y=self.y[positions],
                       elements=[self.elements[k] for k in positions], graphs=[self.graphs[k] for k in positions])

    def subsample(self, limit: int, seed: int, stream: int) -> "CrystalSet":
        """At most `limit` crystals, a seeded sample kept in set order (the whole set when it is small enough).
        `stream` tells apart samples drawn with one seed (a set's position in the caller's list of sets)."""
        if len(self) <= limit:
            return self
        return self.take(np.sort(np.random.default_rng([seed, stream]).choice(len(self), limit, replace=False)))


@dataclass
class SplitData:
    split: Split
    sets: dict[str, CrystalSet]  # the sets present, in SETS order
    dropped: dict[str, int]  # per set, crystals without a graph or a target value

    @property
    def omitted(self) -> list[str]:
        return self.split.held_out


def graph_data(stored: dict, ids: list[str], targets: np.ndarray) -> list[Data]:
    """PyG Data objects for the given ids (each: z, edge_index, edge_dist, y, index into `ids`)."""
    import torch
    from torch_geometric.data import Data

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


def load_split_data(graphs_path, materials_path, split_path, target: str, graph_kind=None) -> SplitData:
    """Per set: ids, targets and graphs; crystals without a graph or without the target are dropped and counted.
    `graph_kind` (matprobe.models.seam) turns the cached graphs into a model's inputs; default: PyG graphs of the
    neighbour list (graph_data)."""
    from matprobe.inputs.data import load_materials
    from matprobe.prepare.graphs import load_graphs

    from matprobe.prepare.splits import load_split

    split = load_split(split_path)
    materials = load_materials(materials_path, columns=["id", "elements", target])
    stored = load_graphs(graphs_path)
    have_graph = set(stored["ids"])
    values = dict(zip(materials["id"], materials[target]))
    elements = dict(zip(materials["id"], materials["elements"]))
    sets, dropped = {}, {}
    for set_name in SETS:
        if set_name not in split.sets:
            continue
        members = split.sets[set_name]
        usable = [i for i in members if i in have_graph and np.isfinite(values.get(i, np.nan))]
        dropped[set_name] = len(members) - len(usable)
        y = np.array([values[i] for i in usable], dtype=np.float64)
        items = graph_data(stored, usable, y) if graph_kind is None else graph_kind.from_stored(stored, usable, y)
        sets[set_name] = CrystalSet(set_name, usable, y, [list(elements[i]) for i in usable], items)
    for set_name, crystal_set in sets.items():
        if not len(crystal_set):
            raise MatprobeError(f"{split_path}: no {set_name} crystal has both a graph and a {target} value "
                                f"({dropped[set_name]} dropped; see the graphs' rejected.parquet and the data summary)")
    return SplitData(split, sets, dropped)
