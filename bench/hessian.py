"""Hessian-spectrum speed (issue 25): one set's `hessian_summary` the reference way (one product at a time, each
rebuilding the crystal batches' gradient graphs) against the batched way (all Lanczos runs in one block, trace probes
in chunks, gradient graphs built once and reused), measured in the same run on real crystals, results compared.

    python bench/hessian.py [--n 500] [--threads 2] [--steps 30] [--trace-samples 20] [--slq-runs 5] [--seeds 3]

A 64-wide, 3-layer CGCNN (seeded, eval mode: the cost does not depend on how well it fits) on the first n crystals
of mp_cgcnn_36k, symmetry-reduced and batched as the landscape stage prepares its sets. The default budget is the
full study config's (config/mp36k-study.yaml: 30 Lanczos steps x 3 starts, 20 probes x 3 seeds, 5 density runs, 500
crystals); pass smaller numbers for a quick look (the ratio is a property of the block width, 8 runs and 16 probes)."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch_geometric.data import Batch

from matprobe.prepare.graphs import symmetry_reduced
from matprobe.probes.hessian import hessian_summary, set_hvp
from matprobe.probes.landscape import EvalSet, PreparedBatch, direction_parameters
from matprobe.models.architectures import build_model, regular_neighbors
from matprobe.runtime import Runtime
from real_data import DEFAULT_TAR, load_real_graph_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--trace-samples", type=int, default=20)
    parser.add_argument("--slq-runs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="cgcnn")
    args = parser.parse_args()
    Runtime(threads=args.threads, deterministic=False).apply()  # the jobs' thread and denormal settings
    data = [symmetry_reduced(graph) for graph in load_real_graph_data(DEFAULT_TAR, args.n)]
    torch.manual_seed(0)
    model = build_model(args.model, {}).eval()
    batches = []
    for start in range(0, len(data), 64):
        batch = Batch.from_data_list(data[start : start + 64])
        with torch.no_grad():
            edge_inputs = model.edge_inputs(batch.edge_dist)
        batches.append(PreparedBatch(batch, edge_inputs, batch.y, regular_neighbors(batch.edge_index, batch.num_nodes)))
    eval_set = EvalSet("bench", [str(k) for k in range(len(data))], batches)
    weights = direction_parameters(model)
    dim = sum(w.numel() for w in weights.values())
    hvps = {"one at a time": set_hvp(model, eval_set, weights, reuse_graphs=False), "batched": set_hvp(model, eval_set, weights)}
    options = {"top_k": 3, "lanczos_steps": args.steps, "trace_samples": args.trace_samples, "slq_runs": args.slq_runs, "seeds": args.seeds}
    products = args.seeds * args.steps + args.seeds * args.trace_samples + args.slq_runs * args.steps
    print(f"{args.model}, {args.n} crystals, {dim} parameters, {args.threads} threads; {products} Hessian-vector products per summary")
    times = {"one at a time": [], "batched": []}
    results = {}
    for _ in range(args.rounds):  # interleaved: the machine is shared
        for way, batched in (("one at a time", False), ("batched", True)):
            started = time.perf_counter()
            results[way] = hessian_summary(hvps[way], dim, options, batched=batched)
            times[way].append(time.perf_counter() - started)
    plain, fast = statistics.median(times["one at a time"]), statistics.median(times["batched"])
    print("| way | seconds | top eigenvalue | trace (± sd over seeds) |")
    print("| --- | --- | --- | --- |")
    for way in times:
        r = results[way]
        print(f"| {way} | {statistics.median(times[way]):.1f} | {r['top_eigenvalue_mean']:.4g} ± {r['top_eigenvalue_std']:.2g} "
              f"| {r['trace_mean']:.4g} ± {r['trace_std']:.2g} |")
    print(f"speed-up: {plain / fast:.2f}x")


if __name__ == "__main__":
    main()
