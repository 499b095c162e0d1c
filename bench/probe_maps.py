"""Probe-map speed (issue 27): a 50 × 50 plane of a ~20-atom real crystal, per model, in seconds, against the plain
way (one augmented crystal per forward pass) measured in the same run; the two must give the same map.

    python bench/probe_maps.py [--points 50] [--threads 2] [--atoms 20]

A seeded, untrained model of the default size: the cost does not depend on how well the weights fit."""

from __future__ import annotations

import argparse
import statistics
import tarfile
import time

import numpy as np
import torch

from matprobe.models.architectures import build_model
from matprobe.probes.probe_maps import plane_positions, probe_map
from matprobe.inputs.structures import check_crystal, parse_cif
from matprobe.runtime import Runtime
from real_data import DEFAULT_TAR


def real_crystal(atoms: int):
    """The first crystal of mp_cgcnn_36k with `atoms` sites (the demo's median size is 20)."""
    with tarfile.open(DEFAULT_TAR) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                crystal = check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5)
                if crystal.nsites == atoms:
                    return member.name, crystal
    raise SystemExit(f"no crystal with {atoms} sites")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--atoms", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    Runtime(threads=args.threads, deterministic=False).apply()  # the jobs' thread and denormal settings
    name, crystal = real_crystal(args.atoms)
    frac, _ = plane_positions(crystal, [0, 0, 1], float(crystal.frac_coords[0, 2]), args.points)
    record = {"target_mean": 0.0, "target_std": 1.0}
    print(f"{name}: {crystal.nsites} atoms, a {args.points} x {args.points} plane ({len(frac)} positions), {args.threads} threads")
    print("| model | batched (256 positions per pass), s | plain (one per pass), s | speed-up | positions computed |")
    print("| --- | --- | --- | --- | --- |")
    for model_name in ("cgcnn", "schnet"):
        torch.manual_seed(0)
        model = build_model(model_name, {}).eval()
        times = {"batched": [], "plain": []}
        maps = {}
        for _ in range(args.rounds):  # interleaved, medians: the machine is shared
            for way, batch_size in (("batched", 256), ("plain", 1)):
                started = time.perf_counter()
                maps[way] = probe_map(model, record, crystal, frac, 8, 8.0, 12, mask_distance=1.0, batch_size=batch_size)
                times[way].append(time.perf_counter() - started)
        np.testing.assert_allclose(maps["batched"]["probe_contribution"], maps["plain"]["probe_contribution"], atol=1e-5, equal_nan=True)
        batched, plain = statistics.median(times["batched"]), statistics.median(times["plain"])
        computed = int((~maps["batched"]["masked"]).sum())
        print(f"| {model_name} | {batched:.2f} | {plain:.2f} | {plain / batched:.1f}x | {computed} |")


if __name__ == "__main__":
    main()
