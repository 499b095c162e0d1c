"""Crystal graphs with periodic images, built once per dataset and graph settings.

Each atom is joined to its neighbours within `cutoff` (periodic images included, an atom's own images
too), keeping the `max_neighbors` nearest (CGCNN keeps 12) or, with `max_neighbors=None`, all of them.
When the k-th neighbour sits in a shell of equal distances, the tie is broken by (distance rounded to
1e-5 Å, atomic number, neighbour index, image offset), so the graph never depends on a library's internal
order, and the (distance, element) pairs an atom keeps do not depend on site order or the choice of cell.

Neighbour search uses vesin (fastest measured here; see bench/graphs.py). The whole dataset is stored as
one file of concatenated tensors (PyG's InMemoryDataset layout) that loads with weights_only=True."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from vesin import NeighborList

from matprobe import MatprobeError
from matprobe.inputs.data import load_materials
from matprobe.io import read_torch_dict, write_json, write_parquet, write_torch
from matprobe.layout import GRAPH_FORMAT
from matprobe.models.architectures import regular_neighbors
from matprobe.parallel import parallel_map
from matprobe.inputs.structures import Crystal, RejectedStructure

log = logging.getLogger("matprobe.prepare.graphs")

ISOLATED_ATOM = "isolated_atom"
def neighbour_list(crystal: Crystal, cutoff: float, max_neighbors: int | None):
    """Edges (center i, neighbour j, image shift S, distance d, vector D = r_j + S·L - r_i), sorted by
    center, then by the tie-breaking key; at most `max_neighbors` per center."""
    points = crystal.cart_coords()
    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, d, vectors = calculator.compute(points=points, box=crystal.lattice, periodic=True, quantities="ijSdD")
    rounded = np.rint(d * 1e5).astype(np.int64)
    # ties at equal distance go to the lighter element first: the kept (distance, element) multiset of each atom,
    # and so everything a model computes, then depends neither on the order of the sites nor on the choice of cell
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, crystal.numbers[j], rounded, i))
    i, j, shifts, d, vectors = i[order], j[order], shifts[order], d[order], vectors[order]
    if max_neighbors is not None and i.size:
        starts = np.searchsorted(i, i, side="left")
        keep = (np.arange(i.size) - starts) < max_neighbors
        i, j, shifts, d, vectors = i[keep], j[keep], shifts[keep], d[keep], vectors[keep]
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64), d, vectors


def build_graph(crystal: Crystal, cutoff: float, max_neighbors: int | None) -> dict:
    i, j, shifts, d, vectors = neighbour_list(crystal, cutoff, max_neighbors)
    counts = np.bincount(i, minlength=crystal.nsites)
    if (counts == 0).any():
        lonely = int(np.flatnonzero(counts == 0)[0])
        raise RejectedStructure(ISOLATED_ATOM, f"site {lonely} (Z={crystal.numbers[lonely]}) has no neighbour within {cutoff} A")
    return {
        "numbers": crystal.numbers.astype(np.int16),
        "pos": crystal.cart_coords().astype(np.float32),
        "lattice": crystal.lattice.astype(np.float32),
        # PyG convention: edge_index[0] is the source (neighbour j), edge_index[1] the target (center i)
        "edge_index": np.stack([j, i]).astype(np.int32),
        "edge_shift": shifts.astype(np.int8),
        "edge_dist": d.astype(np.float32),
        "edge_vec": vectors.astype(np.float32),
    }


def _build_row(args):
    row_id, lattice, frac_coords, numbers, cutoff, max_neighbors = args
    crystal = Crystal.from_row({"lattice": lattice, "frac_coords": frac_coords, "numbers": numbers})
    try:
        return row_id, build_graph(crystal, cutoff, max_neighbors), None
    except RejectedStructure as exc:
        return row_id, None, (exc.reason, exc.detail)


def collate_graphs(ids: list[str], graphs: list[dict], settings: dict) -> dict:
    """Concatenate per-crystal graphs into one dict of tensors with node and edge offsets (ptr)."""
    node_counts = np.array([g["numbers"].shape[0] for g in graphs], dtype=np.int64)
    edge_counts = np.array([g["edge_dist"].shape[0] for g in graphs], dtype=np.int64)

    def cat(key, axis=0):
        return torch.from_numpy(np.concatenate([g[key] for g in graphs], axis=axis))

    return {
        "format": GRAPH_FORMAT,
        "settings": dict(settings),
        "ids": list(ids),
        "node_ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(node_counts)])),
        "edge_ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(edge_counts)])),
        "numbers": cat("numbers"),
        "pos": cat("pos"),
        "lattice": torch.from_numpy(np.stack([g["lattice"] for g in graphs])),
        "edge_index": cat("edge_index", axis=1),  # local (per-crystal) node indices
        "edge_shift": cat("edge_shift"),
        "edge_dist": cat("edge_dist"),
        "edge_vec": cat("edge_vec"),
    }


def build_graphs(
    materials_path: str | Path,
    out_graphs: str | Path,
    out_rejected: str | Path,
    out_summary: str | Path,
    cutoff: float = 8.0,
    max_neighbors: int | None = 12,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Build the graphs of every crystal of a materials table and store them in one file."""
    started = time.perf_counter()
    table = load_materials(materials_path, columns=["id", "lattice", "frac_coords", "numbers"])
    work = ((r.id, r.lattice, r.frac_coords, r.numbers, cutoff, max_neighbors) for r in table.itertuples(index=False))
    ids, graphs, rejected = [], [], []
    bar = tqdm(total=len(table), desc="graphs", unit="crystal", disable=not progress, mininterval=2.0)
    for row_id, graph, problem in parallel_map(_build_row, work, threads, chunksize=32):
        _collect(row_id, graph, problem, ids, graphs, rejected)
        bar.update()
    bar.close()
    if not graphs:
        raise MatprobeError(f"{materials_path}: no crystal gave a graph (cutoff {cutoff} A)")
    settings = {"cutoff": float(cutoff), "max_neighbors": max_neighbors}
    stored = collate_graphs(ids, graphs, settings)
    rejected_frame = pd.DataFrame(rejected, columns=["id", "reason", "detail"])
    edges_per_atom = stored["edge_dist"].numel() / stored["numbers"].numel()
    summary = {
        "materials": str(materials_path),
        **settings,
        "crystals": len(table),
        "graphs": len(ids),
        "rejected": len(rejected_frame),
        "rejected_by_reason": rejected_frame["reason"].value_counts().to_dict(),
        "atoms": int(stored["numbers"].numel()),
        "edges": int(stored["edge_dist"].numel()),
        "mean_edges_per_atom": round(edges_per_atom, 3),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_torch(stored, out_graphs)
    write_parquet(rejected_frame, out_rejected)
    write_json(summary, out_summary)
    log.info("graphs: %d built, %d rejected, %.1f edges/atom, %.1f s", len(ids), len(rejected_frame), edges_per_atom, summary["seconds"])
    return summary


def _collect(row_id, graph, problem, ids, graphs, rejected):
    if graph is None:
        rejected.append({"id": row_id, "reason": problem[0], "detail": problem[1]})
    else:
        ids.append(row_id)
        graphs.append(graph)


def load_graphs(path: str | Path) -> dict:
    """Load a stored graph set (weights_only: no code runs on load)."""
    return read_torch_dict(path, "graph", GRAPH_FORMAT, "run `snakemake graphs` first")


# ---- symmetry-reduced graphs ------------------------------------------------------------------------------


def equivalent_atoms(numbers: np.ndarray, source: np.ndarray, distance: np.ndarray, k: int,
                     tolerance: float = 1e-5) -> np.ndarray:
    """Classes of atoms that any message-passing model over elements and distances maps to equal features.

    Colour refinement (1-dimensional Weisfeiler-Lehman) on a k-regular graph whose edges are grouped by
    target atom: start from the element, then split classes by the multiset of (class of neighbour, distance
    rounded to `tolerance`) until no class splits. Atoms of one class have the same neighbourhood tree to any
    depth, so every layer of CGCNN or SchNet gives them the same features; in a crystal they are the
    symmetry-equivalent sites (and, rarely, sites that are equivalent to every depth without a symmetry).
    Returns a class per atom, numbered 0..C-1 in order of first appearance."""
    n = len(numbers)
    rounded = np.rint(np.asarray(distance, dtype=np.float64) / tolerance).astype(np.int64)
    colour = np.unique(np.asarray(numbers), return_inverse=True)[1].ravel()
    count = int(colour.max()) + 1 if n else 0
    while n:
        # one int64 key per edge: neighbour class in the high bits, rounded distance (< 2**32 bins) in the low
        keys = (colour[source].astype(np.int64) << 32) | rounded
        keys = np.sort(keys.reshape(n, k), axis=1)
        signature = np.concatenate([colour[:, None], keys], axis=1)
        refined = np.unique(signature, axis=0, return_inverse=True)[1].ravel()
        if int(refined.max()) + 1 == count:
            colour = refined
            break
        colour, count = refined, int(refined.max()) + 1
    _, first = np.unique(colour, return_index=True)
    renumber = np.empty(count, dtype=np.int64)
    renumber[np.argsort(np.argsort(first))] = np.arange(count)
    return renumber[colour]


def symmetry_reduced(data, tolerance: float = 1e-5):
    """The crystal graph on one representative atom per class of `equivalent_atoms`, each weighted by the
    number of atoms it stands for (`atom_weight`): every representative keeps its own k edges, their
    neighbours re-pointed to the neighbours' representatives. A model's crystal prediction (the weighted
    mean of contributions) is the same as on the full graph, for a fraction of the cost; the loss
    landscapes and Hessians, which evaluate one set of crystals thousands of times, run on it.
    Graphs that are not k-regular and grouped by target come back unchanged (weights of one)."""
    n = int(data.num_nodes)
    reduced = data.clone()
    k = regular_neighbors(data.edge_index, n)
    if not k:
        reduced.atom_weight = torch.ones(n, dtype=torch.float32)
        return reduced
    source = data.edge_index[0].numpy()
    classes = equivalent_atoms(data.z.numpy(), source, data.edge_dist.numpy(), k, tolerance)
    count = int(classes.max()) + 1
    _, representatives = np.unique(classes, return_index=True)
    kept = (representatives[:, None] * k + np.arange(k)[None, :]).ravel()
    reduced.z = data.z[torch.from_numpy(representatives)]
    reduced.edge_index = torch.from_numpy(np.stack([classes[source[kept]], np.repeat(np.arange(count), k)]))
    reduced.edge_dist = data.edge_dist[torch.from_numpy(kept)]
    reduced.atom_weight = torch.from_numpy(np.bincount(classes, minlength=count).astype(np.float32))
    reduced.num_nodes = count
    return reduced
