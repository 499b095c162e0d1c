"""Speed of directed persistent path homology: matprobe before and now, and grpphati, side by side.

    python bench/path_homology.py [--n 30] [--rounds 3] [--radii 3.5 4.0 4.5 5.0] [--random 200] [--before d3d96b9]
    python bench/path_homology.py --settings 3.5:0.05:2 4.0:0.05:2 ... [--n 240] [--rounds 2]

The first form runs in one process, rounds interleaved, and prints medians over rounds of CPU seconds:
  * small random digraphs (5-9 vertices, 2-cycles allowed, integer weights 1-4) and, per radius, the
    neighbourhood digraphs of every symmetry orbit of every (36738/n)-th crystal of mp_cgcnn_36k;
  * on each: matprobe before (the module as it was at commit --before, read with `git show`: numpy peeling
    and SymPy's elimination), matprobe now (the compiled kernel), both for β₀-β₂, checked equal; and
    grpphati (Chaplin et al., persistent path homology on LoPHAT, one thread, no optimisation strategy) for β₁,
    the one degree it computes, beside matprobe now for β₀-β₁, its β₁ curve compared with ours;
  * the whole crystal_descriptors (neighbour list, spglib orbits, digraphs, curves, summaries) at 4 Å, β₀-β₂,
    before and now.
grpphati pins numpy~=1.24 and networkx~=2.8, older than matprobe's, so it is not a dependency: install it beside
matprobe without its pins (`pip install --no-deps grpphati==0.4.1 lophat==0.9.2`; it runs with numpy 2 and
networkx 3 as far as it is used here); without it its columns are left out. grpphati computes over Z/2,
matprobe over GF(2^61 - 1): a digraph whose homology had 2-torsion would differ, and the agreement column counts it.

The second form times matprobe.probes.path_homology.crystal_descriptors now for each setting (radius:step:max_dim)
and extrapolates CPU seconds per crystal to all 36,738 crystals on 2 processes (CIF parsing excluded: the
workflow reads parsed crystals)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tarfile
import time
import types
from pathlib import Path

import numpy as np

import matprobe.probes.path_homology as ph
from matprobe.inputs.structures import check_crystal, parse_cif

REPO = Path(__file__).resolve().parent.parent
DATASET_CRYSTALS = 36_738


def load_crystals(tar_path: Path, n: int):
    """Every (36738 // n)-th CIF of the archive: a spread over the whole set, not only its first files."""
    stride = max(1, DATASET_CRYSTALS // n)
    crystals, seen = [], 0
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                if seen % stride == 0:
                    crystals.append(check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5))
                    if len(crystals) == n:
                        break
                seen += 1
    return crystals


def time_setting(crystals, radius: float, step: float, max_dim: int) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, atoms computed) for all crystals."""
    cpu, wall, computed = time.process_time(), time.perf_counter(), 0
    for crystal in crystals:
        computed += ph.crystal_descriptors(crystal, radius, step, max_dim, "electronegativity")[3]
    return time.process_time() - cpu, time.perf_counter() - wall, computed


def speed(crystals, settings: list[str], rounds: int) -> None:
    parsed = [tuple(float(x) for x in s.split(":")) for s in settings]
    ph.crystal_descriptors(crystals[0], 3.0, 0.1, 1, "electronegativity")  # imports, caches
    results: dict[str, list[tuple[float, float, int]]] = {s: [] for s in settings}
    for _ in range(rounds):
        for name, (radius, step, max_dim) in zip(settings, parsed):
            results[name].append(time_setting(crystals, radius, step, int(max_dim)))
    atoms = sum(c.nsites for c in crystals)
    print(f"{len(crystals)} crystals, {atoms} atoms; medians over {rounds} interleaved rounds, one process\n")
    print("| radius (Å) | step (Å) | max dim | atoms computed | CPU s | wall s | atoms/CPU s | 36,738 crystals on 2 processes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (radius, step, max_dim) in zip(settings, parsed):
        cpu = statistics.median(r[0] for r in results[name])
        wall = statistics.median(r[1] for r in results[name])
        computed = results[name][0][2]
        whole = cpu / len(crystals) * DATASET_CRYSTALS / 2
        print(f"| {radius:g} | {step:g} | {int(max_dim)} | {computed} | {cpu:.1f} | {wall:.1f} | {computed / cpu:.0f} | {whole / 60:.0f} min |")


# ---------------------------------------------------------------- side by side: before, now, grpphati

def load_before(commit: str):
    """matprobe/probes/path_homology.py as it was at `commit`, loaded as a module of its own."""
    source = subprocess.run(["git", "show", f"{commit}:matprobe/probes/path_homology.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("path_homology_before")
    module.__file__ = f"{commit}:matprobe/probes/path_homology.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def random_digraphs(count: int, seed: int = 0):
    """(n, edges, weights): 5-9 vertices, each ordered pair an edge with a probability drawn in [0.2, 0.6]."""
    rng = np.random.default_rng(seed)
    digraphs = []
    for _ in range(count):
        n = int(rng.integers(5, 10))
        pairs = np.array([(a, b) for a in range(n) for b in range(n) if a != b])
        edges = pairs[rng.random(len(pairs)) < rng.uniform(0.2, 0.6)]
        digraphs.append((n, edges, rng.integers(1, 5, len(edges)).astype(float)))
    return digraphs


def crystal_digraphs(crystals, radius: float):
    """The neighbourhood digraph of one atom of each symmetry orbit of each crystal, as the workflow computes them."""
    digraphs = []
    for crystal in crystals:
        hoods = ph.neighbourhoods(crystal, radius)
        for atom in np.unique(ph.symmetry_classes(crystal)):
            numbers, positions = hoods[atom]
            _, edges, weights = ph.neighbourhood_digraph(numbers, positions, radius)
            digraphs.append((len(numbers), edges, weights))
    return digraphs


def grpphati_b1():
    """grpphati's pipeline for β₁ of a networkx DiGraph whose edges enter at their 'weight', and networkx; None
    where grpphati is not installed."""
    try:
        import networkx as nx
        from grpphati.backends import LoPHATBackend
        from grpphati.filtrations import Filtration
        from grpphati.homologies import RegularPathHomology
        from grpphati.pipelines.standard import make_standard_pipeline
    except ImportError:
        return None

    class EdgeWeights(Filtration):
        """Each edge enters at its own weight (grpphati's own filtrations close the digraph by shortest paths)."""

        def __init__(self, graph):
            self.graph = graph
            self.weights = {u: {v: data["weight"] for v, data in graph[u].items()} for u in graph.nodes}

        def node_time(self, node):
            return 0

        def edge_time(self, edge):
            return self.weights.get(edge[0], {}).get(edge[1], np.inf)

        def node_iter(self):
            return [(node, 0) for node in self.graph.nodes]

        def edge_iter(self):
            return [((u, v), w) for u, targets in self.weights.items() for v, w in targets.items()]

        def edge_dict(self):
            return self.weights

    pipeline = make_standard_pipeline(EdgeWeights, RegularPathHomology, backend=LoPHATBackend(num_threads=1, with_reps=False))

    return pipeline, nx


def b1_curve_from_bars(bars, times):
    """β₁ at each time from a barcode of [birth, death) bars."""
    bars = np.array(bars, dtype=float).reshape(-1, 2)
    return ((bars[:, 0][None] <= times[:, None]) & (times[:, None] < bars[:, 1][None])).sum(axis=1)


def side_by_side(crystals, radii, n_random: int, rounds: int, before_commit: str) -> None:
    before = load_before(before_commit)
    reference = grpphati_b1()
    sets = {"random digraphs, 5-9 vertices": random_digraphs(n_random)}
    for radius in radii:
        sets[f"crystal neighbourhoods, {radius:g} Å"] = crystal_digraphs(crystals, radius)
    graphs = {}
    if reference is not None:
        pipeline, nx = reference
        for name, digraphs in sets.items():
            graphs[name] = []
            for n, edges, weights in digraphs:
                graph = nx.DiGraph()
                graph.add_nodes_from(range(n))
                graph.add_weighted_edges_from((u, v, w) for (u, v), w in zip(edges.tolist(), weights.tolist()))
                graphs[name].append(graph)
    ph.betti_curves(3, [(0, 1), (1, 2), (0, 2)], [1.0, 2.0, 3.0])  # numba: compiled (or loaded from its cache) here
    ways = {"before β0-β2": lambda n, e, w: before.betti_curves(n, e, w, 2),
            "now β0-β2": lambda n, e, w: ph.betti_curves(n, e, w, 2),
            "now β0-β1": lambda n, e, w: ph.betti_curves(n, e, w, 1)}
    seconds = {(name, way): [] for name in sets for way in [*ways, "grpphati β1"]}
    results = {}
    for _ in range(rounds):
        for name, digraphs in sets.items():
            for way, function in ways.items():
                started = time.process_time()
                results[name, way] = [function(n, e, w) for n, e, w in digraphs]
                seconds[name, way].append(time.process_time() - started)
            if reference is not None:
                started = time.process_time()
                results[name, "grpphati β1"] = [pipeline(graph).barcode for graph in graphs[name]]
                seconds[name, "grpphati β1"].append(time.process_time() - started)
    print(f"{len(crystals)} crystals of mp_cgcnn_36k (every {DATASET_CRYSTALS // len(crystals)}th), one atom per symmetry "
          f"orbit; CPU seconds, medians of {rounds} interleaved rounds, one process; before = {before_commit}\n")
    print("| digraphs | count | largest Σ\\|A_p\\|, p ≤ 3 | before β₀–β₂ | now β₀–β₂ | speed-up | same curves "
          "| grpphati β₁ | now β₀–β₁ | vs grpphati | same β₁ |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, digraphs in sets.items():
        median = {way: statistics.median(seconds[name, way]) for way in [*ways, "grpphati β1"] if seconds[name, way]}
        same = sum(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                   for a, b in zip(results[name, "before β0-β2"], results[name, "now β0-β2"]))
        largest = max(int(ph.path_counts(n, e, 3).sum()) for n, e, _ in digraphs)
        row = (f"| {name} | {len(digraphs)} | {largest:,} | {median['before β0-β2']:.2f} | {median['now β0-β2']:.2f} | "
               f"{median['before β0-β2'] / median['now β0-β2']:.1f}× | {same}/{len(digraphs)} |")
        if reference is not None:
            agree = sum(np.array_equal(b1_curve_from_bars(bars, times), betti[:, 1])
                        for bars, (times, betti) in zip(results[name, "grpphati β1"], results[name, "now β0-β1"]))
            row += (f" {median['grpphati β1']:.2f} | {median['now β0-β1']:.2f} | "
                    f"{median['grpphati β1'] / median['now β0-β1']:.1f}× | {agree}/{len(digraphs)} |")
        else:
            row += " not installed | | | |"
        print(row)
    # the whole per-crystal computation at the default setting
    whole = {"before": [], "now": []}
    for _ in range(rounds):
        for label, module in (("before", before), ("now", ph)):
            started = time.process_time()
            for crystal in crystals:
                module.crystal_descriptors(crystal, 4.0, 0.05, 2, "electronegativity")
            whole[label].append(time.process_time() - started)
    b, n = statistics.median(whole["before"]), statistics.median(whole["now"])
    print(f"\ncrystal_descriptors at 4 Å, β₀–β₂, {len(crystals)} crystals: before {b:.2f} s, now {n:.2f} s, {b / n:.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30, help="crystals of mp_cgcnn_36k, spread over the set")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--radii", type=float, nargs="+", default=[3.5, 4.0, 4.5, 5.0])
    parser.add_argument("--random", type=int, default=200, help="small random digraphs")
    parser.add_argument("--before", default="d3d96b9", help="the commit whose matprobe/probes/path_homology.py is 'before'")
    parser.add_argument("--settings", nargs="+", help="radius:step:max_dim: time crystal_descriptors now instead")
    parser.add_argument("--tar", default=str(REPO.parent / "shared" / "datasets" / "mp_cgcnn_36k.tar.gz"))
    args = parser.parse_args()
    tar = Path(args.tar)
    if not tar.exists():
        raise SystemExit(f"skipped: {tar} is missing (the benchmark reads real crystals from mp_cgcnn_36k)")
    crystals = load_crystals(tar, args.n)
    if args.settings:
        speed(crystals, args.settings, args.rounds)
    else:
        side_by_side(crystals, args.radii, args.random, args.rounds, args.before)


if __name__ == "__main__":
    main()
