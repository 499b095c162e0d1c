"""Graph building speed: the project's builder (vesin + vectorised k-nearest selection) against the
per-site `get_all_neighbors` loop of the original CGCNN loader, on the same real crystals.

    python bench/graphs.py [--n 2000] [--tar ../shared/datasets/mp_cgcnn_36k.tar.gz]

Prints structures per second of each and their ratio (goal: >= 20x), single process, interleaved rounds."""

from __future__ import annotations

import argparse
import statistics
import tarfile
import time
from pathlib import Path

import numpy as np

from matprobe.prepare.graphs import build_graph
from matprobe.inputs.structures import check_crystal, parse_cif

REPO = Path(__file__).resolve().parent.parent


def load_crystals(tar_path: Path, n: int):
    crystals = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                crystals.append(check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5))
                if len(crystals) == n:
                    break
    return crystals


def project_builder(crystals, cutoff, k):
    for crystal in crystals:
        build_graph(crystal, cutoff, k)


def cgcnn_loop(structures, cutoff, k):
    """As in CGCNN's data.py: all neighbours per site, sorted by distance, the first k kept."""
    for structure in structures:
        neighbours = structure.get_all_neighbors(cutoff, include_index=True)
        neighbours = [sorted(site, key=lambda x: x[1]) for site in neighbours]
        for site in neighbours:
            kept = site[:k]
            _ = np.array([n[2] for n in kept]), np.array([n[1] for n in kept])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tar", default=str(REPO.parent / "shared" / "datasets" / "mp_cgcnn_36k.tar.gz"))
    parser.add_argument("--cutoff", type=float, default=8.0)
    parser.add_argument("--k", type=int, default=12)
    args = parser.parse_args()

    crystals = load_crystals(Path(args.tar), args.n)
    structures = [c.to_pymatgen() for c in crystals]
    print(f"{len(crystals)} crystals, median {int(np.median([c.nsites for c in crystals]))} atoms, cutoff {args.cutoff} A, k={args.k}")
    rates = {"project": [], "cgcnn_loop": []}
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        start = time.perf_counter()
        project_builder(crystals, args.cutoff, args.k)
        rates["project"].append(len(crystals) / (time.perf_counter() - start))
        start = time.perf_counter()
        cgcnn_loop(structures, args.cutoff, args.k)
        rates["cgcnn_loop"].append(len(crystals) / (time.perf_counter() - start))
    project, baseline = statistics.median(rates["project"]), statistics.median(rates["cgcnn_loop"])
    print(f"project builder   : {project:8.1f} structures/s (median of {args.rounds})")
    print(f"CGCNN per-site    : {baseline:8.1f} structures/s (median of {args.rounds})")
    print(f"ratio             : {project / baseline:8.1f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
