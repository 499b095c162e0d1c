"""Topological descriptors of crystals: persistent homology (gudhi) of atom-centred neighbourhoods.

For every atom of the cell, the atoms (periodic images included) within `radius` of it form a point cloud;
its alpha complex gives H0, H1 and H2 persistence diagrams (gudhi's alpha filtration values are squared
radii: here they are converted to radii in Å, the scale at which growing balls touch, close rings and fill
voids). Each diagram is summarised by six numbers — bar count, total, maximum and entropy of the
persistence, mean birth and mean death — and the crystal's descriptor is the mean over its atoms: a
fixed-length vector of 18, cached per dataset in results/topology/{dataset}/ph.parquet.

Bars that never die (the one H0 component) are cut at radius/2, beyond which a finite neighbourhood
no longer stands for the crystal. The directed counterpart, persistent path homology of the same neighbourhoods with
edges ordered by electronegativity, is matprobe.probes.path_homology."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from tqdm import tqdm
from vesin import NeighborList

from matprobe.inputs.data import load_materials
from matprobe.io import write_json, write_parquet
from matprobe.parallel import parallel_map
from matprobe.inputs.structures import Crystal

log = logging.getLogger("matprobe.probes.topology")

STATISTICS = ("count", "total_persistence", "max_persistence", "entropy", "mean_birth", "mean_death")
DIMENSIONS = (0, 1, 2)
DESCRIPTORS = [f"h{dim}_{stat}" for dim in DIMENSIONS for stat in STATISTICS]
MIN_PERSISTENCE = 1e-3  # Å: shorter bars are numerical ties of degenerate (symmetric) point sets


def neighbourhood_clouds(crystal: Crystal, radius: float) -> list[np.ndarray]:
    """For each atom, the Cartesian positions (centred on it) of every atom and image within `radius`."""
    points = crystal.cart_coords()
    i, vectors = NeighborList(cutoff=float(radius), full_list=True).compute(points=points, box=crystal.lattice, periodic=True, quantities="iD")
    clouds = []
    for atom in range(crystal.nsites):
        clouds.append(np.vstack([np.zeros((1, 3)), vectors[i == atom]]))
    return clouds


def persistence_diagrams(points: np.ndarray, max_death: float) -> dict[int, np.ndarray]:
    """Alpha-complex persistence of a point cloud: per dimension, an (n, 2) array of (birth, death) radii."""
    import gudhi

    tree = gudhi.AlphaComplex(points=points).create_simplex_tree()
    tree.compute_persistence()
    diagrams = {}
    for dim in DIMENSIONS:
        bars = np.asarray(tree.persistence_intervals_in_dimension(dim), dtype=np.float64).reshape(-1, 2)
        bars = np.sqrt(np.clip(bars, 0.0, None))  # squared radii -> radii; inf stays inf
        bars[:, 1] = np.minimum(bars[:, 1], max_death)
        diagrams[dim] = bars[(bars[:, 1] - bars[:, 0]) > MIN_PERSISTENCE]
    return diagrams


def summarise(bars: np.ndarray) -> list[float]:
    if len(bars) == 0:
        return [0.0] * len(STATISTICS)
    persistence = bars[:, 1] - bars[:, 0]
    total = float(persistence.sum())
    p = persistence / total
    entropy = float(-(p * np.log(p)).sum())
    return [float(len(bars)), total, float(persistence.max()), entropy, float(bars[:, 0].mean()), float(bars[:, 1].mean())]


def atom_descriptors(crystal: Crystal, radius: float) -> np.ndarray:
    """(atoms, 18): each atom's neighbourhood summarised (DESCRIPTORS), in site order."""
    per_atom = []
    for cloud in neighbourhood_clouds(crystal, radius):
        diagrams = persistence_diagrams(cloud, radius / 2)
        per_atom.append([value for dim in DIMENSIONS for value in summarise(diagrams[dim])])
    return np.array(per_atom)


def crystal_descriptor(crystal: Crystal, radius: float) -> np.ndarray:
    return atom_descriptors(crystal, radius).mean(axis=0)


def _descriptor_row(args):
    row_id, lattice, frac_coords, numbers, radius = args
    crystal = Crystal.from_row({"lattice": lattice, "frac_coords": frac_coords, "numbers": numbers})
    return row_id, atom_descriptors(crystal, radius)


def compute_topology(materials_path, out_path, out_summary, radius: float = 5.0, threads: int = 1, progress: bool = True,
                     out_atoms=None) -> pd.DataFrame:
    """Descriptors of every crystal of a materials table (one row per crystal, columns DESCRIPTORS: the mean over its
    atoms), and with `out_atoms` each atom's own (id, site, DESCRIPTORS; what the knobs read as attributes)."""
    started = time.perf_counter()
    table = load_materials(materials_path, columns=["id", "lattice", "frac_coords", "numbers"])
    work = ((r.id, r.lattice, r.frac_coords, r.numbers, radius) for r in table.itertuples(index=False))
    ids, rows = [], []
    with tqdm(total=len(table), desc="topology", unit="crystal", disable=not progress, mininterval=2.0) as bar:
        for row_id, descriptor in parallel_map(_descriptor_row, work, threads, chunksize=16):
            ids.append(row_id), rows.append(descriptor), bar.update()
    frame = pd.DataFrame(np.array([atoms.mean(axis=0) for atoms in rows]), columns=DESCRIPTORS)
    frame.insert(0, "id", ids)
    write_parquet(frame, out_path)
    if out_atoms is not None:
        atoms = pd.DataFrame(np.concatenate(rows).astype(np.float32), columns=DESCRIPTORS)
        atoms.insert(0, "site", np.concatenate([np.arange(len(a)) for a in rows]).astype(np.int32))
        atoms.insert(0, "id", np.repeat(ids, [len(a) for a in rows]))
        write_parquet(atoms, out_atoms)
    write_json({"crystals": len(frame), "radius": radius, "descriptors": DESCRIPTORS,
                "seconds": round(time.perf_counter() - started, 1)}, out_summary)
    log.info("topology: %d crystals in %.1f s", len(frame), time.perf_counter() - started)
    return frame


def persistence_examples(ids_by_set: dict[str, list[str]], materials: pd.DataFrame, radius: float) -> pd.DataFrame:
    """The persistence diagram of site 0 of the smallest crystal of each set, as a tidy table (set, id, formula,
    site, dim, birth, death, max_death): what the topology figure draws, computed once here rather than in a
    plotting job. `materials` is indexed by id."""
    rows = []
    for set_name, ids in ids_by_set.items():
        if not len(ids):
            continue
        crystal_id = sorted(ids, key=lambda i: (materials.loc[i, "nsites"], i))[0]
        crystal = Crystal.from_row(materials.loc[crystal_id])
        for dim, bars in persistence_diagrams(neighbourhood_clouds(crystal, radius)[0], radius / 2).items():
            rows += [{"set": set_name, "id": crystal_id, "formula": materials.loc[crystal_id, "reduced_formula"], "site": 0,
                      "dim": dim, "birth": float(birth), "death": float(death), "max_death": radius / 2} for birth, death in bars]
    return pd.DataFrame(rows, columns=["set", "id", "formula", "site", "dim", "birth", "death", "max_death"])
