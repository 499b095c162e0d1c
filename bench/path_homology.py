"""Speed of directed persistent path homology on real crystals, and the exact-rank libraries compared.

    python bench/path_homology.py [--n 240] [--rounds 2] [--settings 3.5:0.05:2 4.0:0.05:2 ...]
    python bench/path_homology.py --libraries [--n 40]

The first form times matprobe.path_homology.crystal_descriptors (neighbour list, spglib orbits, one
digraph and Betti curve per orbit, summaries) on every (36738/n)-th crystal of mp_cgcnn_36k, each setting
(radius:step:max_dim) once per round, rounds interleaved, one process. It prints, per setting, the median
over rounds of CPU seconds and the extrapolated time for all 36,738 crystals on 2 processes (CPU time,
which other jobs on a shared machine disturb less than wall time; CIF parsing is not included: the
workflow reads parsed crystals). The second form collects the matrices that reach the exact-rank step
(what the numpy peeling leaves) for radius 3.5 Å, max_dim 2, and times each library's column rank profile
on them, checking that all agree."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tarfile
import time
from pathlib import Path

import numpy as np

import matprobe.path_homology as ph
from matprobe.structures import check_crystal, parse_cif

REPO = Path(__file__).resolve().parent.parent
DATASET_CRYSTALS = 36_738
DEFAULT_SETTINGS = ["3.0:0.05:2", "3.5:0.05:1", "3.5:0.05:2", "3.5:0.01:2", "3.5:0.05:3", "4.0:0.05:1", "4.0:0.05:2", "4.5:0.05:1"]


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


# ---------------------------------------------------------------- libraries for the column rank profile

def flint_dense(rows, cols, values, modulus):
    """python-flint nmod_mat.rref on each connected block, pivots read along the echelon form."""
    import flint
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    row_ids, rows = np.unique(rows, return_inverse=True)
    col_ids, cols = np.unique(cols, return_inverse=True)
    size = row_ids.size + col_ids.size
    _, label = connected_components(coo_matrix((np.ones(rows.size), (rows, row_ids.size + cols)), shape=(size, size)))
    pivots = []
    for block in np.unique(label[rows]):
        entries = label[rows] == block
        block_rows, local_rows = np.unique(rows[entries], return_inverse=True)
        block_cols, local_cols = np.unique(cols[entries], return_inverse=True)
        matrix = flint.nmod_mat(block_rows.size, block_cols.size, modulus)
        for r, c, v in zip(local_rows.tolist(), local_cols.tolist(), (values[entries] % modulus).tolist()):
            matrix[r, c] = v
        echelon, rank = matrix.rref()
        col = 0
        for r in range(rank):
            while echelon[r, col] == 0:
                col += 1
            pivots.append(int(col_ids[block_cols[col]]))
            col += 1
    return sorted(pivots)


def galois_dense(rows, cols, values, modulus):
    """galois GF(p) FieldArray.row_reduce on the dense matrix (numba row operations driven from Python)."""
    import galois

    field = galois.GF(modulus)
    row_ids, rows = np.unique(rows, return_inverse=True)
    col_ids, cols = np.unique(cols, return_inverse=True)
    dense = np.zeros((row_ids.size, col_ids.size), dtype=np.int64)
    dense[rows, cols] = values % modulus
    reduced = np.asarray(field(dense).row_reduce())
    nonzero = reduced.any(axis=1)
    return sorted(col_ids[np.argmax(reduced[nonzero] != 0, axis=1)].tolist())


def sympy_sparse(rows, cols, values, modulus):
    return sorted(ph._sparse_pivots(rows, cols, values, modulus))


def sympy_rationals(rows, cols, values, modulus):
    """The same sparse elimination over Q (exact rationals, python-flint fmpq): no prime at all."""
    return sorted(ph._sparse_pivots(rows, cols, values, None))


def libraries(crystals) -> None:
    recorded = []
    original = ph._sparse_pivots

    def record(rows, cols, values, modulus):
        recorded.append((rows, cols, values))
        return original(rows, cols, values, modulus)

    ph._sparse_pivots = record
    try:
        for crystal in crystals:
            ph.crystal_descriptors(crystal, 3.5, 0.05, 2, "electronegativity")
    finally:
        ph._sparse_pivots = original
    sizes = np.array([len(np.unique(c)) for _, c, _ in recorded])
    print(f"{len(recorded)} matrices left after peeling, columns: median {np.median(sizes):.0f}, max {sizes.max()}\n")
    methods = {"SymPy sparse over GF(2^61-1), flint nmod elements (chosen)": (sympy_sparse, ph.MODULUS),
               "python-flint nmod_mat.rref per block, GF(2^61-1)": (flint_dense, ph.MODULUS),
               "SymPy sparse over Q (fmpq)": (sympy_rationals, None)}
    if importlib.util.find_spec("galois"):  # not a dependency of matprobe: `pip install galois` to compare it
        methods["galois GF(2^31-1) row_reduce, dense"] = (galois_dense, 2**31 - 1)
    reference = [sympy_sparse(r, c, v, ph.MODULUS) for r, c, v in recorded]
    print("| library | seconds, all matrices | seconds, matrices under 60 columns | agrees |")
    print("| --- | --- | --- | --- |")
    small = sizes < 60
    for name, (method, modulus) in methods.items():
        if method is galois_dense:
            method(*recorded[0], modulus)  # numba compiles on first use
        total = small_total = 0.0
        agrees = True
        for (rows, cols, values), is_small, expected in zip(recorded, small, reference):
            started = time.process_time()
            agrees &= method(rows, cols, values, modulus) == expected
            spent = time.process_time() - started
            total += spent
            small_total += spent * is_small
        print(f"| {name} | {total:.2f} | {small_total:.2f} | {agrees} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="radius:step:max_dim")
    parser.add_argument("--libraries", action="store_true", help="compare exact-rank libraries instead")
    parser.add_argument("--tar", default=str(REPO.parent / "shared" / "datasets" / "mp_cgcnn_36k.tar.gz"))
    args = parser.parse_args()
    tar = Path(args.tar)
    if not tar.exists():
        raise SystemExit(f"skipped: {tar} is missing (the benchmark reads real crystals from mp_cgcnn_36k)")
    crystals = load_crystals(tar, args.n)
    if args.libraries:
        libraries(crystals)
    else:
        speed(crystals, args.settings, args.rounds)


if __name__ == "__main__":
    main()
