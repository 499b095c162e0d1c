"""Training throughput (crystals per second per epoch) of both models on real crystals, and peak memory.

    python bench/train.py [--n 2000] [--epochs 3] [--threads 2]

Baselines measured in the same run: CGCNN with float32 denormals left in the distance expansion (no
zeroing, no flush-to-zero), the way a straightforward implementation runs; and both models on the full
graphs against the symmetry-reduced graphs that training uses by default (`training.symmetry_reduction`:
one atom per class of equivalent atoms, weighted; the same losses and gradients). Each configuration
trains in a fresh forked process, so its peak resident memory is its own."""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

import torch

from real_data import DEFAULT_TAR, load_real_graph_data



def _measure(model_name, data, epochs, threads, keep_denormals, queue):
    import matprobe.models.architectures as models
    from matprobe.models.architectures import build_model, regular_neighbors
    from torch_geometric.loader import DataLoader

    torch.set_num_threads(threads)
    if keep_denormals:
        models.DENORMAL_FLOOR = 0.0  # the expansion keeps its float32 denormals
        torch.set_flush_denormal(False)
    else:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = build_model(model_name, {})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rates = []
    for epoch in range(epochs + 1):  # the first epoch warms up allocators and caches
        loader = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            prediction = model(batch, neighbors=regular_neighbors(batch.edge_index, batch.num_nodes))["prediction"]
            loss = torch.nn.functional.l1_loss(prediction, batch.y)
            loss.backward()
            optimizer.step()
        if epoch:
            rates.append(len(data) / (time.perf_counter() - start))
    queue.put((statistics.median(rates), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(model_name, data, epochs, threads, keep_denormals=False):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(model_name, data, epochs, threads, keep_denormals, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tar", default=str(DEFAULT_TAR))
    args = parser.parse_args()
    from matprobe.prepare.graphs import symmetry_reduced

    data = load_real_graph_data(Path(args.tar), args.n)
    started = time.perf_counter()
    reduced = [symmetry_reduced(graph) for graph in data]
    reduction = time.perf_counter() - started
    atoms, kept = sum(g.num_nodes for g in data), sum(g.num_nodes for g in reduced)
    print(f"{len(data)} real crystals, batch 64, {args.threads} threads, median of {args.epochs} epochs after one warm-up; "
          f"symmetry reduction keeps {kept} of {atoms} atoms ({reduction:.1f} s, once)")
    results = {
        "cgcnn": measure("cgcnn", reduced, args.epochs, args.threads),
        "schnet": measure("schnet", reduced, args.epochs, args.threads),
        "cgcnn, full graphs": measure("cgcnn", data, args.epochs, args.threads),
        "schnet, full graphs": measure("schnet", data, args.epochs, args.threads),
        "cgcnn, denormals kept (baseline)": measure("cgcnn", data, args.epochs, args.threads, keep_denormals=True),
    }
    for name, (rate, peak) in results.items():
        print(f"{name:34s}: {rate:7.1f} crystals/s   peak RSS {peak:6.0f} MiB")
    for name in ("cgcnn", "schnet"):
        print(f"{name + ' reduced / full graphs':34s}: {results[name][0] / results[name + ', full graphs'][0]:7.2f}x")
    ratio = results["cgcnn, full graphs"][0] / results["cgcnn, denormals kept (baseline)"][0]
    print(f"cgcnn full graphs / denormal base : {ratio:7.2f}x")


if __name__ == "__main__":
    main()
