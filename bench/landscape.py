"""Loss-landscape grid speed on real crystals (issue 5).

    python bench/landscape.py [--n 1000] [--points 24] [--threads 2]

A 64-wide, 3-layer CGCNN (seeded initialisation, eval mode: the speed of a grid point does not depend on
how well the weights were trained) on the first n crystals of mp_cgcnn_36k, filter-normalised directions,
and points of a 21x21 grid on [-1, 1]^2. Three ways, interleaved over rounds, points per second:
(a) naive, as the reference loss-landscape libraries do it: load a perturbed state dict, loop over freshly
    collated batches, eager mode, one point at a time;
(b) matprobe: batches and distance expansions built once on symmetry-reduced graphs (one atom per class of
    equivalent atoms, weighted), weights moved in place, compiled model (CPU) or vmap over many points per
    pass (GPU);
(c) matprobe's fastest plain inference over the same prepared batches, as points per second if a grid point
    cost exactly one inference pass;
(d) for reference, the same compiled inference on the full graphs (what the symmetry reduction saves).
Goals: (b)/(a) >= 3 on the 2-core CPU, (b)/(c) >= 0.8. Compilation time is reported apart."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch_geometric.data import Batch

from matprobe.probes.landscape import (
    EvalSet,
    LandscapeEvaluator,
    PreparedBatch,
    direction_parameters,
    naive_point_loss,
    perturbed_state_dict,
    random_directions,
)
from matprobe.prepare.graphs import symmetry_reduced
from matprobe.models.architectures import build_model, regular_neighbors
from matprobe.runtime import Runtime
from real_data import DEFAULT_TAR, load_real_graph_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--points", type=int, default=24, help="grid points timed per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--points-per-pass", type=int, default=1, help=">1: vmap over points (the GPU path)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-symmetry-reduction", action="store_true")
    parser.add_argument("--hvp-crystals", type=int, default=500, help="also time one Hessian-vector product, full vs reduced graphs (0: skip)")
    parser.add_argument("--tar", default=str(DEFAULT_TAR))
    args = parser.parse_args()
    Runtime(threads=args.threads, deterministic=False).apply()  # the jobs' thread and denormal settings
    device = torch.device(args.device)

    data = load_real_graph_data(args.tar, args.n)
    torch.manual_seed(0)
    model = build_model("cgcnn", {"hidden": 64, "layers": 3}).to(device).eval()

    def prepare(graphs):
        batches = []
        for start in range(0, len(graphs), args.batch_size):
            batch = Batch.from_data_list(graphs[start : start + args.batch_size]).to(device)
            with torch.no_grad():
                batches.append(PreparedBatch(batch, model.edge_inputs(batch.edge_dist), batch.y, regular_neighbors(batch.edge_index, batch.num_nodes)))
        return batches

    reduced = data if args.no_symmetry_reduction else [symmetry_reduced(graph) for graph in data]
    batches, full_batches = prepare(reduced), prepare(data)
    atoms, evaluated = sum(g.num_nodes for g in data), sum(g.num_nodes for g in reduced)
    sets = {"test": EvalSet("test", [str(k) for k in range(len(data))], batches)}
    weights = direction_parameters(model)
    d1, d2 = random_directions({k: v.cpu() for k, v in weights.items()}, "filter", 0)
    d1, d2 = {k: v.to(device) for k, v in d1.items()}, {k: v.to(device) for k, v in d2.items()}
    axis = np.linspace(-1, 1, 21)
    grid = [(float(a), float(b)) for a in axis for b in axis]
    rng = np.random.default_rng(0)

    compiled = device.type == "cpu" and args.points_per_pass == 1
    project = LandscapeEvaluator(model, sets, weights, d1, d2, compile_model=compiled, points_per_pass=args.points_per_pass)
    started = time.perf_counter()
    project.evaluate(grid[:2])  # compiles for the batch shapes
    warmup = time.perf_counter() - started
    forward = project.forward

    def plain_inference(n_points, prepared_batches):
        with torch.no_grad():
            for _ in range(n_points):
                for prepared in prepared_batches:
                    forward(prepared.batch, prepared.edge_inputs, prepared.neighbors)["prediction"].sum().item()

    plain_inference(1, full_batches)  # compiles for the full graphs' shapes

    naive_model = build_model("cgcnn", {"hidden": 64, "layers": 3}).to(device)
    rates = {"naive": [], "project": [], "inference": [], "full": []}
    for _ in range(args.rounds):
        points = [grid[k] for k in rng.choice(len(grid), args.points, replace=False)]
        start = time.perf_counter()
        for alpha, beta in points:
            naive_point_loss(naive_model, perturbed_state_dict(model, weights, d1, d2, alpha, beta), {"test": data},
                             args.batch_size, 0.0, 1.0)
        rates["naive"].append(len(points) / (time.perf_counter() - start))
        start = time.perf_counter()
        project.evaluate(points)
        rates["project"].append(len(points) / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_inference(len(points), batches)
        rates["inference"].append(len(points) / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_inference(len(points), full_batches)
        rates["full"].append(len(points) / (time.perf_counter() - start))
    median = {k: statistics.median(v) for k, v in rates.items()}
    check = [grid[0], grid[220], grid[-3]]
    ours = [row["test"] for row in project.evaluate(check)]
    theirs = [naive_point_loss(naive_model, perturbed_state_dict(model, weights, d1, d2, a, b), {"test": data}, args.batch_size, 0.0, 1.0)["test"]
              for a, b in check]
    worst = max(abs(x - y) / abs(y) for x, y in zip(ours, theirs))
    print(f"{len(data)} real crystals ({atoms} atoms, {evaluated} evaluated), device {device}, {args.threads} threads, "
          f"batch {args.batch_size}, points per pass {args.points_per_pass}, {args.points} points x {args.rounds} rounds; "
          f"compile/warm-up {warmup:.1f} s")
    print(f"(a) naive              : {median['naive']:6.2f} points/s")
    print(f"(b) matprobe           : {median['project']:6.2f} points/s")
    print(f"(c) plain inference    : {median['inference']:6.2f} points/s")
    print(f"(d) on the full graphs : {median['full']:6.2f} points/s (reference)")
    print(f"(b)/(a) = {median['project'] / median['naive']:.2f}x (goal >= 3)   (b)/(c) = {median['project'] / median['inference']:.2f} (goal >= 0.8)")
    print(f"(b) equals (a) at 3 points to {worst:.1e} relative")
    print(f"a 21x21 grid at (b): {441 / median['project']:.0f} s")
    if args.hvp_crystals:
        time_hvp(model, data[: args.hvp_crystals], reduced[: args.hvp_crystals], prepare, weights)


def time_hvp(model, full, reduced, prepare, weights, repeats: int = 3) -> None:
    """One Hessian-vector product over a whole set (torch.func vjp of grad), on the full and the reduced graphs."""
    from matprobe.probes.hessian import set_hvp

    vector = torch.randn(sum(w.numel() for w in weights.values()), generator=torch.Generator().manual_seed(0)).to(next(iter(weights.values())).device)
    seconds = {}
    products = {}
    for name, graphs in (("full", full), ("reduced", reduced)):
        hvp = set_hvp(model, EvalSet(name, [str(k) for k in range(len(graphs))], prepare(graphs)), weights)
        products[name] = hvp(vector)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            hvp(vector)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    difference = float((products["full"] - products["reduced"]).norm() / products["full"].norm())
    print(f"one HVP over {len(full)} crystals: full graphs {seconds['full']:.2f} s, reduced {seconds['reduced']:.2f} s, "
          f"{seconds['full'] / seconds['reduced']:.2f}x; equal to {difference:.1e} relative")


if __name__ == "__main__":
    main()
