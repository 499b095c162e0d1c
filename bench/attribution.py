"""Time per 1,000 crystals of each attribution method (issue 6), on real crystals of mp_cgcnn_36k.

    python bench/attribution.py [--n 1000] [--threads 2] [--model cgcnn]

A seeded, untrained 64-wide 3-layer model: the cost of a method does not depend on how well the weights fit.
Persistent homology is timed on the same crystals (atom-centred alpha complexes, radius 5 Å, one process)."""

from __future__ import annotations

import argparse
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

from matprobe.probes.attribution import atom_contributions, element_embedding_analysis, integrated_gradients, trim_attributions
from matprobe.models.architectures import build_model
from matprobe.inputs.structures import check_crystal, parse_cif
from matprobe.probes.topology import crystal_descriptor
from matprobe.runtime import Runtime
from real_data import DEFAULT_TAR, load_real_graph_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="cgcnn")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--tar", default=str(DEFAULT_TAR))
    args = parser.parse_args()
    Runtime(threads=args.threads, deterministic=False).apply()  # the jobs' thread and denormal settings
    data = load_real_graph_data(Path(args.tar), args.n)
    torch.manual_seed(0)
    model = build_model(args.model, {}).eval()
    record = {"target_mean": 0.0, "target_std": 1.0}
    ids = [str(k) for k in range(len(data))]
    sets = {"id_test": {"ids": ids, "data": data, "y": np.zeros(len(data)), "elements": [[] for _ in ids]}}
    per_thousand = 1000 / len(data)
    timings = {}

    start = time.perf_counter()
    atom_contributions(model, record, sets)
    timings["atom-wise contributions"] = time.perf_counter() - start
    start = time.perf_counter()
    element_embedding_analysis(model, {"O"}, {"O", "Fe", "Na", "Cl", "Si", "Li", "Mg", "Al", "S", "N"}, ["Fe"])
    timings["element-representation PCA (per model, not per crystal)"] = time.perf_counter() - start
    start = time.perf_counter()
    integrated_gradients(model, record, sets, "zeros", steps=args.steps)
    timings[f"integrated gradients ({args.steps} steps)"] = time.perf_counter() - start
    start = time.perf_counter()
    trim_attributions(model, record, sets, "properties", steps=args.steps)
    timings[f"TRIM, element properties ({args.steps} steps)"] = time.perf_counter() - start
    start = time.perf_counter()
    trim_attributions(model, record, sets, "distance_bands", steps=args.steps)
    timings[f"TRIM, distance bands ({args.steps} steps)"] = time.perf_counter() - start

    crystals = []
    with tarfile.open(args.tar) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                crystals.append(check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5))
                if len(crystals) == args.n:
                    break
    start = time.perf_counter()
    for crystal in crystals:
        crystal_descriptor(crystal, 5.0)
    timings["persistent homology (1 process)"] = time.perf_counter() - start

    print(f"{len(data)} real crystals, {args.model}, {args.threads} threads; seconds per 1,000 crystals:")
    for name, seconds in timings.items():
        scale = 1.0 if "per model" in name else per_thousand
        print(f"  {name:58s} {seconds * scale:8.1f} s")


if __name__ == "__main__":
    main()
