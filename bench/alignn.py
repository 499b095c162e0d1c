"""ALIGNN in the workflow against the alignn package's own pipeline, on the same demo crystals and settings.

    python bench/alignn.py [--n 300] [--repeats 3] [--batch-size 64]

(a) Graph building: alignn's `build_pure_torch_graph` (8 Å, 12 nearest neighbours, angles between bonds up to
3.5 Å, one crystal at a time; the jarvis `Atoms` are made before the clock starts) against ours, counted both ways:
the line graphs and items from the cached neighbour list (what a training job does: the neighbour list is built once
per dataset and shared with CGCNN and SchNet), and the neighbour list plus the line graphs (a crystal from scratch).
(b) One training epoch of the same model (the same `ALIGNNAtomWisePure`, same initial weights, batch size, AdamW
and L1 loss): the workflow's loop (`matprobe.models.training.Trainer`'s epoch over `AngleGraphs` batches) against
alignn's own (`alignn.train.train_dgl` over its pure-torch LMDB loaders from `alignn.data.get_train_val_loaders`,
the path `train_alignn.py` takes for `model.name = alignn_atomwise_pure`); its epoch time is the one it prints.
alignn's loader drops the last incomplete batch, so epochs are compared per crystal trained.

One torch thread; denormals flushed for both (the workflow's runtime setting, process-wide). Every figure is the
median of `--repeats` rounds, the ways interleaved within a round so that load on a shared machine hits them alike;
the training rounds follow one warm-up epoch each."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

# run as `python bench/alignn.py`, this file's folder comes first on sys.path, and this file would shadow the alignn
# package it measures
if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import pandas as pd
import torch

from matprobe.inputs.sources import EMBEDDED_FILE
from matprobe.inputs.structures import Crystal
from matprobe.models.alignn import AngleGraphs, build, jarvis_atoms
from matprobe.prepare.graphs import build_graph, collate_graphs

SETTINGS = {"cutoff": 8.0, "max_neighbors": 12}
THREE_BODY = 3.5
TARGET = "formation_energy_per_atom"


def seconds_of(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def graph_building(crystals, ids, y, repeats):
    from alignn.torch_graph_builder import build_pure_torch_graph

    atoms = [jarvis_atoms(c) for c in crystals]
    kind = AngleGraphs(THREE_BODY)
    stored = collate_graphs(ids, [build_graph(c, **SETTINGS) for c in crystals], SETTINGS)
    ways = {
        "alignn build_pure_torch_graph": lambda: [build_pure_torch_graph(a, two_body_cutoff=SETTINGS["cutoff"],
                                                                         three_body_cutoff=THREE_BODY,
                                                                         max_neighbors=SETTINGS["max_neighbors"])
                                                  for a in atoms],
        "ours: line graphs + items from the cached neighbour list": lambda: kind.from_stored(stored, ids, y),
        "ours: neighbour list + line graphs + items": lambda: kind.from_crystals(crystals, SETTINGS),
    }
    seconds = {name: [] for name in ways}
    for _ in range(repeats):  # interleaved rounds: a burst of load on the shared machine hits every way alike
        for name, way in ways.items():
            seconds[name].append(seconds_of(way))
    return {name: statistics.median(values) for name, values in seconds.items()}


def workflow_epoch(items, y, batch_size, seed=0):
    """A function that trains one epoch with the workflow's Trainer and returns (seconds, crystals trained)."""
    from matprobe.models.training import Trainer
    from matprobe.prepare.sets import CrystalSet, SplitData
    from matprobe.prepare.splits import Split

    torch.manual_seed(seed)
    module = build({})
    ids = [str(k) for k in range(len(items))]
    train = CrystalSet("train", ids, y, [[] for _ in ids], items)
    data = SplitData(Split("bench", "random", {}, [], {"train": ids, "val": ids}), {"train": train, "val": train}, {})
    training = {"lr": 1e-3, "weight_decay": 0.0, "epochs": 100, "batch_size": batch_size, "clip_norm": 5.0, "patience": 100}
    trainer = Trainer(data, TARGET, "alignn", module, training, seed, torch.device("cpu"))
    for item in items:
        item.y_std = (item.y - trainer.scale.mean) / trainer.scale.std
    epochs = iter(range(1, 1000))

    def epoch():
        started = time.perf_counter()
        trainer._train_epoch(items, next(epochs), Path("bench-alignn"))
        return time.perf_counter() - started, len(items)

    return epoch


def alignn_epoch(crystals, ids, y, batch_size, folder, seed=0):
    """A function that trains one epoch with alignn's own loop (train_dgl, one epoch per call, the same model and
    loaders throughout) and returns (its printed training time of the epoch, crystals trained)."""
    from alignn.config import TrainingConfig
    from alignn.data import get_train_val_loaders
    from alignn.train import train_dgl

    torch.manual_seed(seed)
    module = build({})
    # one crystal each for its validation and test sets (neither is in the timed part of its epoch)
    records = [{"jid": i, "atoms": jarvis_atoms(c).to_dict(), "target": float(v)} for i, c, v in zip(ids, crystals, y)]
    records += records[:2]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its log, progress bars
        loaders = list(get_train_val_loaders(
            dataset_array=records, target="target", neighbor_strategy="pure_torch", atom_features="cgcnn", line_graph=True,
            batch_size=batch_size, workers=0, pin_memory=False, cutoff=SETTINGS["cutoff"],
            max_neighbors=SETTINGS["max_neighbors"], three_body_cutoff=THREE_BODY, n_train=len(crystals), n_val=1, n_test=1,
            keep_data_order=True, output_dir=folder, filename=folder + "/", use_pure_torch=True, standardize=False))
    config = TrainingConfig(
        dataset="user_data", target="target", epochs=1, batch_size=batch_size, learning_rate=1e-3, criterion="l1",
        optimizer="adamw", num_workers=0, output_dir=folder, neighbor_strategy="pure_torch", cutoff=SETTINGS["cutoff"],
        three_body_cutoff=THREE_BODY, max_neighbors=SETTINGS["max_neighbors"], random_seed=seed,
        model=module.net.config.model_dump(), write_predictions=False, progress=False,
        use_lmdb=False)  # the loaders are given; with use_lmdb it would close their LMDB files after its one epoch
    trained = (len(crystals) // batch_size) * batch_size  # its loader drops the last incomplete batch

    def epoch():
        with contextlib.redirect_stdout(io.StringIO()) as log, contextlib.redirect_stderr(io.StringIO()):
            train_dgl(config, model=module.net, train_val_test_loaders=loaders)
        # it prints "Train Loss: ... Time" and a row: epoch, six losses, seconds
        rows = re.findall(r"Train Loss:.*\n\s+\d+\s+" + r"\S+\s+" * 6 + r"([\d.]+)", log.getvalue())
        if len(rows) != 1:
            raise RuntimeError(f"found {len(rows)} epoch times in alignn's log, expected 1")
        return float(rows[0]), trained

    return epoch


def line_graph_cache(repeats):
    """The cache on the whole demo set: time to build and write it, its size, and items of every crystal with and
    without it."""
    from matprobe.io import write_torch
    from matprobe.models.alignn import build_line_graphs, load_line_graphs

    frame = pd.read_parquet(EMBEDDED_FILE)
    crystals = [Crystal.from_row(row) for row in frame.to_dict("records")]
    ids, y = list(frame["id"]), frame[TARGET].to_numpy()
    stored = collate_graphs(ids, [build_graph(c, **SETTINGS) for c in crystals], SETTINGS)
    with tempfile.TemporaryDirectory() as folder:
        write_torch(stored, Path(folder) / "graphs.pt")
        for cutoff in (THREE_BODY, None):
            path = Path(folder) / "line_graphs.pt"
            build = statistics.median(seconds_of(lambda: build_line_graphs(Path(folder) / "graphs.pt", path, cutoff))
                                      for _ in range(repeats))
            angles = load_line_graphs(path)["lg_cos"].numel()
            with_cache, without = [], []
            for _ in range(repeats):
                with_cache.append(seconds_of(lambda: AngleGraphs(cutoff, cache=load_line_graphs(path)).from_stored(stored, ids, y)))
                without.append(seconds_of(lambda: AngleGraphs(cutoff).from_stored(stored, ids, y)))
            print(f"  angles between bonds up to {cutoff or SETTINGS['cutoff']} Å: {angles} angles "
                  f"({angles / stored['numbers'].numel():.1f} per atom), build_line_graphs {build:.2f} s, "
                  f"file {path.stat().st_size / 1e6:.0f} MB; items of all crystals {statistics.median(with_cache):.2f} s "
                  f"from the cache (loading it included), {statistics.median(without):.2f} s without")
    return len(crystals)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if args.n < args.batch_size:
        parser.error(f"--n {args.n} < --batch-size {args.batch_size}: alignn's loader, which drops an incomplete batch, "
                     "would train on nothing")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    frame = pd.read_parquet(EMBEDDED_FILE).iloc[: args.n]
    crystals = [Crystal.from_row(row) for row in frame.to_dict("records")]
    ids, y = list(frame["id"]), frame[TARGET].to_numpy()
    atoms = sum(c.nsites for c in crystals)
    print(f"{len(crystals)} demo crystals ({atoms} atoms), cutoff {SETTINGS['cutoff']} Å, {SETTINGS['max_neighbors']} "
          f"neighbours, angles between bonds up to {THREE_BODY} Å; torch {torch.__version__}, 1 thread")

    print("\n(a) graph building, seconds for all crystals (median of rounds)")
    seconds = graph_building(crystals, ids, y, args.repeats)
    reference = seconds["alignn build_pure_torch_graph"]
    for name, value in seconds.items():
        print(f"  {name:58s} {value:7.3f} s  {1e3 * value / len(crystals):6.3f} ms/crystal  "
              f"{reference / value:5.1f}x alignn's speed")

    print(f"\n(b) one training epoch, batch size {args.batch_size} (median of {args.repeats} interleaved rounds after a warm-up)")
    stored = collate_graphs(ids, [build_graph(c, **SETTINGS) for c in crystals], SETTINGS)
    with tempfile.TemporaryDirectory() as folder:
        ways = {"workflow (Trainer epoch)": workflow_epoch(AngleGraphs(THREE_BODY).from_stored(stored, ids, y), y, args.batch_size),
                "alignn (train_dgl, its own timing)": alignn_epoch(crystals, ids, y, args.batch_size, folder)}
        epochs = {name: [] for name in ways}
        for _ in range(args.repeats + 1):
            for name, epoch in ways.items():
                epochs[name].append(epoch())
    rates = {}
    for name, rounds in epochs.items():
        seconds, trained = statistics.median(s for s, _ in rounds[1:]), rounds[0][1]
        rates[name] = trained / seconds
        print(f"  {name:36s} {seconds:6.2f} s for {trained} crystals, {rates[name]:6.1f} crystals/s  "
              f"(epochs: {', '.join(f'{s:.2f}' for s, _ in rounds[1:])})")
    workflow, alignn = rates.values()
    print(f"  workflow / alignn throughput: {workflow / alignn:.2f}x")

    print(f"\n(c) the line-graph cache on the whole demo set (median of {args.repeats} rounds)")
    line_graph_cache(args.repeats)


if __name__ == "__main__":
    main()
