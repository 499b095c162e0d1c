"""What an ALIGNN costs on Materials Project crystals, against CGCNN on the same crystals in the same run.

    python bench/alignn_cost.py [--n 384] [--repeats 3]

The mp36k trainings and landscapes of CGCNN are measured (bench/RESULTS.md); an ALIGNN study of the same crystals is
planned from them and the ratios printed here: (a) one training epoch with the workflow's Trainer, CGCNN on the
symmetry-reduced graphs it trains on by default and on the full graphs, ALIGNN on the full graphs with their line
graphs (it cannot take reduced ones); (b) a forward pass in evaluation mode, as landscapes and attributions run it.
The first n crystals of mp_cgcnn_36k (28.6 atoms each at the default n, three and a half times the demo's), one
torch thread, denormals flushed; medians of `--repeats` interleaved rounds after a warm-up round."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from real_data import DEFAULT_TAR, load_real_stored

# bench/alignn.py would shadow the alignn package that the model imports: this folder leaves the path once real_data
# is in
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

TARGET = "formation_energy_per_atom"
WAYS = ("cgcnn, reduced graphs", "cgcnn, full graphs", "alignn")


def split_data(items: list, y: np.ndarray, reduce: bool):
    from matprobe.models.training import reduce_symmetry
    from matprobe.prepare.sets import CrystalSet, SplitData
    from matprobe.prepare.splits import Split

    ids = [str(k) for k in range(len(items))]
    train = CrystalSet("train", ids, y, [[] for _ in ids], items)
    data = SplitData(Split("bench", "random", {}, [], {"train": ids, "val": ids}), {"train": train, "val": train}, {})
    if reduce:
        reduce_symmetry(data)
    return data


def prepared(way: str, stored: dict, ids: list[str], y: np.ndarray):
    """The way's Trainer and its training items."""
    from matprobe.models.seam import graph_kind_of
    from matprobe.models.training import Trainer, new_module

    model = way.split(",")[0]
    module = new_module(model, {}, 0)
    items = graph_kind_of(module).from_stored(stored, ids, y)
    data = split_data(items, y, reduce=way.endswith("reduced graphs"))
    training = {"lr": 1e-3, "weight_decay": 0.0, "epochs": 100, "batch_size": 64, "clip_norm": 5.0, "patience": 100}
    trainer = Trainer(data, TARGET, model, module, training, 0, torch.device("cpu"))
    items = data.sets["train"].graphs
    for item in items:
        item.y_std = (item.y - trainer.scale.mean) / trainer.scale.std
    return trainer, items


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tar", default=str(DEFAULT_TAR))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    stored, ids, y = load_real_stored(Path(args.tar), args.n)
    atoms = int(stored["node_ptr"][-1])
    print(f"{len(ids)} mp_cgcnn_36k crystals ({atoms / len(ids):.1f} atoms each), batch 64, 1 thread, "
          f"medians of {args.repeats} interleaved rounds after a warm-up")
    ways = {way: prepared(way, stored, ids, y) for way in WAYS}
    epochs = iter(range(1, 10_000))
    train = {way: [] for way in WAYS}
    forward = {way: [] for way in WAYS}
    for _ in range(args.repeats + 1):
        for way, (trainer, items) in ways.items():
            trainer.model.train()
            # the checkpoint path is only named in a non-finite-loss error: nothing is written
            train[way].append(timed(lambda: trainer._train_epoch(items, next(epochs), Path("bench-alignn-cost/checkpoint.pt"))))
            trainer.model.eval()
            batches = [trainer.graphs.collate(items[k : k + 64]) for k in range(0, len(items), 64)]
            with torch.no_grad():
                forward[way].append(timed(lambda: [trainer.model(batch) for batch in batches]))
    rates = {way: {"train": len(ids) / statistics.median(train[way][1:]), "forward": len(ids) / statistics.median(forward[way][1:])}
             for way in WAYS}
    for way, rate in rates.items():
        print(f"  {way:24s} training {rate['train']:7.1f} crystals/s   forward {rate['forward']:8.1f} crystals/s")
    base = rates["cgcnn, reduced graphs"]
    for way in WAYS[1:]:
        print(f"  cgcnn (reduced) / {way:22s}: training {base['train'] / rates[way]['train']:5.2f}x as fast, "
              f"forward {base['forward'] / rates[way]['forward']:5.2f}x")


if __name__ == "__main__":
    main()
