"""Path (GLMY) homology: every known result is checked twice, by matprobe.probes.path_homology (its compiled
kernel) and by an independent brute force written here (all allowed paths listed recursively, Ω_p as a
nullspace over the rationals, ranks by exact Gaussian elimination), then random digraphs up to 9 vertices
and filtrations, regular and non-regular, against the same brute force, the compiled kernel against the
earlier numpy/SymPy code (engine="sympy") on the demo's neighbourhoods, then the crystal descriptors'
invariances and continuity."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from matprobe import MatprobeError
from matprobe.probes.path_homology import (PathSpaceTooLarge, betti_curves, betti_numbers, compute_path_homology,
                                    crystal_descriptors, descriptor_names, neighbourhood_digraph, neighbourhoods,
                                    omega_dimensions, path_counts, symmetry_classes)
from matprobe.inputs.structures import Crystal, crystal_from_pymatgen


# ---------------------------------------------------------------- brute force over the rationals

def _echelon(rows: list[list[Fraction]], ncols: int) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row echelon form over Q and its pivot columns (SymPy's DomainMatrix over QQ beyond 20 rows,
    Fraction elimination written out here below that; both exact)."""
    if len(rows) > 20 and ncols:
        from sympy import QQ
        from sympy.polys.matrices import DomainMatrix

        reduced, pivots = DomainMatrix([[QQ(int(x.numerator), int(x.denominator)) for x in r] for r in rows],
                                       (len(rows), ncols), QQ).rref()
        return [[Fraction(int(x.numerator), int(x.denominator)) for x in r] for r in reduced.to_list()], list(pivots)
    rows = [list(r) for r in rows]
    pivots: list[int] = []
    for col in range(ncols):
        pivot = next((i for i in range(len(pivots), len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        top = len(pivots)
        rows[top], rows[pivot] = rows[pivot], rows[top]
        rows[top] = [x / rows[top][col] for x in rows[top]]
        for i in range(len(rows)):
            if i != top and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[top])]
        pivots.append(col)
    return rows, pivots


def _nullspace(rows: list[list[int]], ncols: int) -> list[list[Fraction]]:
    reduced, pivots = _echelon([[Fraction(x) for x in r] for r in rows], ncols)
    basis = []
    for free in (c for c in range(ncols) if c not in pivots):
        vector = [Fraction(0)] * ncols
        vector[free] = Fraction(1)
        for r, c in enumerate(pivots):
            vector[c] = -reduced[r][free]
        basis.append(vector)
    return basis


def _brute_boundary(path: tuple, regular: bool) -> dict[tuple, int]:
    terms: dict[tuple, int] = {}
    for k in range(len(path)):
        face = path[:k] + path[k + 1:]
        if regular and any(a == b for a, b in zip(face, face[1:])):
            continue
        terms[face] = terms.get(face, 0) + (-1) ** k
    return terms


def brute_force(n: int, edges, max_dim: int, regular: bool = True) -> tuple[list[int], list[list[list[Fraction]]], list[list[tuple]]]:
    """(β_0..β_max_dim, Ω_p bases as coefficient vectors over A_p, A_p) by definition, over Q."""
    edge_set = {tuple(e) for e in edges}
    allowed = [[(v,) for v in range(n)]]
    for _ in range(max_dim + 1):
        allowed.append([q + (w,) for q in allowed[-1] for w in range(n) if (q[-1], w) in edge_set])
    boundaries = [[_brute_boundary(q, regular) for q in paths] for paths in allowed]
    omega = [[[Fraction(int(i == j)) for j in range(n)] for i in range(n)]]
    for p in range(1, max_dim + 2):
        below = set(allowed[p - 1])
        outside = sorted({f for terms in boundaries[p] for f in terms if f not in below})
        constraints = [[terms.get(f, 0) for terms in boundaries[p]] for f in outside]
        omega.append(_nullspace(constraints, len(allowed[p])))

    def boundary_rank(p: int) -> int:
        if p == 0 or not omega[p]:
            return 0
        below = set(allowed[p - 1])
        images = []
        for vector in omega[p]:
            image: dict[tuple, Fraction] = {}
            for coefficient, terms in zip(vector, boundaries[p]):
                if coefficient:
                    for face, sign in terms.items():
                        image[face] = image.get(face, 0) + coefficient * sign
            assert all(v == 0 for f, v in image.items() if f not in below), "∂Ω_p left A_{p-1}"
            images.append([Fraction(image.get(f, 0)) for f in allowed[p - 1]])
        return len(_echelon(images, len(allowed[p - 1]))[1])

    ranks = [boundary_rank(p) for p in range(max_dim + 2)]
    return [len(omega[p]) - ranks[p] - ranks[p + 1] for p in range(max_dim + 1)], omega, allowed


def both(n, edges, max_dim=2, regular=True) -> list[int]:
    """Betti numbers from the module, asserted equal to the brute force's."""
    module = betti_numbers(n, edges, max_dim=max_dim, regular=regular).tolist()
    assert module == brute_force(n, edges, max_dim, regular)[0]
    return module


# ---------------------------------------------------------------- known digraphs

def test_transitive_triangle_is_filled():
    assert both(3, [(0, 1), (1, 2), (0, 2)]) == [1, 0, 0]


@pytest.mark.parametrize("n", [3, 4, 5])
def test_directed_cycles_have_one_hole(n):
    assert both(n, [(i, (i + 1) % n) for i in range(n)]) == [1, 1, 0]


def test_square_is_filled_by_a_difference_of_two_paths():
    a, b, c, d = range(4)
    edges = [(a, b), (a, c), (b, d), (c, d)]
    assert both(4, edges) == [1, 0, 0]
    _, omega, allowed = brute_force(4, edges, 2)
    (vector,) = omega[2]  # Ω_2 is one-dimensional, spanned by e_abd - e_acd
    coefficients = dict(zip(allowed[2], vector))
    assert coefficients[(a, b, d)] == -coefficients[(a, c, d)] != 0
    assert omega_dimensions(4, edges, 2).tolist() == [4, 4, 1]


def test_bidirected_edge_regular_and_non_regular():
    edges = [(0, 1), (1, 0)]
    assert both(2, edges, regular=True) == [1, 0, 0]
    assert both(2, edges, regular=False) == [1, 1, 0]
    assert omega_dimensions(2, edges, 2, regular=True)[2] == 2 and omega_dimensions(2, edges, 2, regular=False)[2] == 0


def test_three_layers_enclose_a_two_dimensional_hole():
    layers = [(0, 1), (2, 3), (4, 5)]
    edges = [(a, b) for first, second in zip(layers, layers[1:]) for a in first for b in second]
    assert both(6, edges, max_dim=3) == [1, 0, 1, 0]


def test_disjoint_unions_add_up():
    triangle, cycle, square = [(0, 1), (1, 2), (0, 2)], [(0, 1), (1, 2), (2, 0)], [(0, 1), (0, 2), (1, 3), (2, 3)]
    layers = [(a, b) for a in (0, 1) for b in (2, 3)] + [(a, b) for a in (2, 3) for b in (4, 5)]
    parts = [(3, triangle), (3, cycle), (4, square), (6, layers), (2, [])]
    offset, union, expected = 0, [], np.zeros(3, dtype=int)
    for n, edges in parts:
        union += [(a + offset, b + offset) for a, b in edges]
        expected += betti_numbers(n, edges)
        offset += n
    assert both(offset, union) == expected.tolist()
    assert expected[0] == len(parts) + 1  # the two isolated vertices are components of their own


def _random_digraph(rng, n, acyclic):
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b and (a < b or not acyclic)]
    chosen = rng.random(len(pairs)) < rng.uniform(0.2, 0.8)
    return [pair for pair, keep in zip(pairs, chosen) if keep]


@pytest.mark.parametrize("regular", [True, False])
def test_random_digraphs_match_brute_force(regular):
    rng = np.random.default_rng(11 if regular else 12)
    for _ in range(40):
        n = int(rng.integers(2, 6))
        both(n, _random_digraph(rng, n, acyclic=False), max_dim=2, regular=regular)


def test_random_layered_dags_match_brute_force():
    """Layered digraphs often have β_2 > 0 (random ones almost never do)."""
    rng = np.random.default_rng(13)
    seen_b2 = 0
    for _ in range(25):
        sizes = rng.integers(1, 4, size=int(rng.integers(3, 5)))
        layer = np.repeat(np.arange(len(sizes)), sizes)
        pairs = [(a, b) for a in range(len(layer)) for b in range(len(layer)) if layer[b] == layer[a] + 1]
        edges = [pair for pair in pairs if rng.random() < 0.85]
        seen_b2 += both(len(layer), edges, max_dim=2)[2] > 0
    assert seen_b2 >= 3


def test_filtration_matches_brute_force_at_every_value():
    rng = np.random.default_rng(14)
    for acyclic in (True, False):
        for _ in range(12):
            n = int(rng.integers(3, 6))
            edges = _random_digraph(rng, n, acyclic)
            weights = rng.integers(1, 5, len(edges)).astype(float)
            times, betti = betti_curves(n, edges, weights, max_dim=2)
            assert times[0] == 0 and np.all(np.diff(times) > 0)
            for t, row in zip(times, betti):
                present = [e for e, w in zip(edges, weights) if w <= t]
                assert row.tolist() == brute_force(n, present, 2)[0]


def test_higher_dimension_matches_brute_force():
    """β_3 of the four-layer digraph (a suspension of the three-layer one) and of random DAGs."""
    layers = [(0, 1), (2, 3), (4, 5), (6, 7)]
    edges = [(a, b) for first, second in zip(layers, layers[1:]) for a in first for b in second]
    assert both(8, edges, max_dim=3) == [1, 0, 0, 1]
    rng = np.random.default_rng(15)
    for _ in range(8):
        both(5, _random_digraph(rng, 5, acyclic=True), max_dim=3)


@pytest.mark.parametrize("regular", [True, False])
def test_random_digraphs_up_to_nine_vertices_match_brute_force(regular):
    """6-9 vertices, 2-cycles allowed, sparse enough for the rational brute force; β_0..β_2 and, for a third of
    them, the whole filtration (every value at which the digraph changes)."""
    rng = np.random.default_rng(21 if regular else 22)
    sizes, seen_b1, cycles = [], 0, 0
    for trial in range(24):
        n = int(rng.integers(6, 10))
        pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
        edges = [pair for pair in pairs if rng.random() < rng.uniform(0.12, 0.3)]
        cycles += any((b, a) in edges for a, b in edges)
        if trial % 3:
            seen_b1 += both(n, edges, max_dim=2, regular=regular)[1] > 0
        else:
            weights = rng.integers(1, 4, len(edges)).astype(float)
            times, betti = betti_curves(n, edges, weights, max_dim=2, regular=regular)
            for t, row in zip(times, betti):
                present = [e for e, w in zip(edges, weights) if w <= t]
                assert row.tolist() == brute_force(n, present, 2, regular)[0]
        sizes.append(n)
    assert max(sizes) == 9 and seen_b1 >= 3 and cycles >= 10


def test_filtration_of_the_non_regular_theory_matches_brute_force():
    """Persistence in the non-regular theory, on digraphs with 2-cycles (where it differs from the regular one)."""
    rng = np.random.default_rng(23)
    differ = 0
    for _ in range(12):
        n = int(rng.integers(3, 7))
        edges = _random_digraph(rng, n, acyclic=False)
        weights = rng.integers(1, 5, len(edges)).astype(float)
        times, betti = betti_curves(n, edges, weights, max_dim=2, regular=False)
        differ += not np.array_equal(betti, betti_curves(n, edges, weights, max_dim=2, regular=True)[1])
        for t, row in zip(times, betti):
            present = [e for e, w in zip(edges, weights) if w <= t]
            assert row.tolist() == brute_force(n, present, 2, regular=False)[0]
    assert differ >= 3


def test_compiled_kernel_ranks_match_the_rationals_on_dense_matrices():
    """The column rank profile of the compiled column reduction over GF(2^61 - 1) against SymPy's elimination over
    Q, on random ±1 matrices dense enough for the field elements to grow past 32 bits (where a multiplication
    that lost bits would show) and with planted dependent columns."""
    from matprobe.probes.path_homology import MODULUS, _reduce_columns, _sparse_pivots

    rng = np.random.default_rng(24)
    for _ in range(60):
        nrows, ncols = (int(x) for x in rng.integers(2, 30, 2))
        matrix = (rng.random((nrows, ncols)) < rng.uniform(0.2, 0.7)) * rng.choice([-1, 1], (nrows, ncols))
        if ncols > 3:  # a column that is the sum of two others: never a pivot
            a, b, c = sorted(rng.choice(ncols, 3, replace=False))
            matrix[:, c] = np.clip(matrix[:, a] + matrix[:, b], -1, 1) if rng.random() < 0.5 else matrix[:, a] - matrix[:, b]
        rows, cols = np.nonzero(matrix.T)[::-1]  # entries column by column
        values = np.where(matrix[rows, cols] > 0, 1, MODULUS - 1).astype(np.uint64)
        start = np.searchsorted(cols, np.arange(ncols + 1))
        compiled = np.flatnonzero(_reduce_columns(start, rows.astype(np.int64), values, nrows)).tolist()
        assert compiled == sorted(_sparse_pivots(rows, cols, matrix[rows, cols], None))


def test_compiled_kernel_equals_the_earlier_code_on_the_demo():
    """Every orbit's neighbourhood digraph of 40 crystals spread over the embedded demo, radius 4 Å: the compiled
    kernel gives the same Betti curves (β_0..β_2) as the earlier numpy peeling and SymPy elimination (engine
    'sympy', the code before the kernel) over the same prime, and, for every fifth, over the rationals."""
    from importlib.resources import files

    table = pd.read_parquet(files("matprobe") / "resources" / "flla_2015.parquet")
    compared = with_b2 = 0
    for row in table.iloc[:: len(table) // 40].itertuples():
        crystal = Crystal.from_row({"lattice": row.lattice, "frac_coords": row.frac_coords, "numbers": row.numbers})
        hoods = neighbourhoods(crystal, 4.0)
        for atom in np.unique(symmetry_classes(crystal)):
            numbers, positions = hoods[atom]
            _, edges, weights = neighbourhood_digraph(numbers, positions, 4.0)
            compiled = betti_curves(len(numbers), edges, weights, max_dim=2)
            earlier = betti_curves(len(numbers), edges, weights, max_dim=2, engine="sympy")
            np.testing.assert_array_equal(compiled[0], earlier[0])
            np.testing.assert_array_equal(compiled[1], earlier[1])
            if compared % 5 == 0:
                np.testing.assert_array_equal(compiled[1], betti_curves(len(numbers), edges, weights, 2, modulus=None)[1])
            compared += 1
            with_b2 += compiled[1][:, 2].max() > 0
    assert compared >= 100 and with_b2 >= 10


def test_size_guard_and_vertex_labels():
    complete = [(a, b) for a in range(6) for b in range(6) if a != b]
    counts = path_counts(6, complete, 3)
    assert counts.tolist() == [6, 30, 150, 750]  # 6 * 5^p
    assert betti_numbers(6, complete, max_dim=2, max_paths=936).tolist() == [1, 0, 0]
    with pytest.raises(PathSpaceTooLarge) as error:
        betti_numbers(6, complete, max_dim=2, max_paths=935)
    assert error.value.count == 936 and "\n" not in str(error.value) and "936" in str(error.value)
    with pytest.raises(MatprobeError, match="integers"):
        betti_numbers(2, [(0.0, 1.7)])  # once truncated to (0, 1)
    with pytest.raises(MatprobeError, match="integers"):
        betti_numbers(2, [("0", "1")])
    assert betti_numbers(2, np.array([[0.0, 1.0]])).tolist() == [1, 0, 0]  # whole numbers as floats are labels
    with pytest.raises(MatprobeError, match="GF"):
        betti_curves(2, [(0, 1)], modulus=7, engine="compiled")
    assert betti_numbers(3, [(0, 1), (1, 2), (2, 0)], modulus=7).tolist() == [1, 1, 0]  # other moduli: engine sympy


def test_size_guard_names_the_crystal_and_the_atom(tmp_path):
    crystals = {"nacl": rocksalt(), "srtio3": perovskite()}
    pd.DataFrame([{"id": key, **crystal.to_row()} for key, crystal in crystals.items()]).to_parquet(tmp_path / "materials.parquet")
    outputs = [tmp_path / "ph.parquet", tmp_path / "elements.parquet", tmp_path / "summary.json"]
    for threads in (1, 2):
        with pytest.raises(PathSpaceTooLarge) as error:
            compute_path_homology(tmp_path / "materials.parquet", *outputs, radius=RADIUS, step=0.1, max_dim=2,
                                  threads=threads, progress=False, max_paths=1000)
        message = str(error.value)
        # NaCl's neighbourhoods stay under 1,000 paths; SrTiO3's first orbit (Sr, site 0) holds 1,965
        assert message.startswith("path homology of crystal srtio3, atom 0 (27 atoms within 4.2 Å)") and "max_paths = 1,000" in message
        assert "\n" not in message and f"{error.value.count:,}" in message and error.value.count > 1000
    assert not outputs[0].exists()


def test_input_errors_are_one_line():
    for call in (lambda: betti_numbers(2, [(0, 0)]), lambda: betti_numbers(2, [(0, 2)]),
                 lambda: betti_curves(2, [(0, 1)], [-1.0]), lambda: betti_numbers(2, [(0, 1)], max_dim=-1)):
        with pytest.raises(MatprobeError) as error:
            call()
        assert "\n" not in str(error.value)


# ---------------------------------------------------------------- crystals

def rocksalt():
    from pymatgen.core import Lattice, Structure

    return crystal_from_pymatgen(Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def perovskite():
    from pymatgen.core import Lattice, Structure

    return crystal_from_pymatgen(Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]))


def rattled(crystal: Crystal, amplitude: float, seed: int) -> Crystal:
    rng = np.random.default_rng(seed)
    cart = crystal.cart_coords() + rng.normal(scale=amplitude, size=(crystal.nsites, 3))
    return Crystal(crystal.lattice, cart @ np.linalg.inv(crystal.lattice), crystal.numbers)


RADIUS = 4.2  # reaches the second shell of both crystals, where β_1 and β_2 appear


def descriptors(crystal, order="electronegativity"):
    means, curves, by_element, _, _ = crystal_descriptors(crystal, RADIUS, 0.05, 2, order)
    return means, curves, by_element


@pytest.mark.parametrize("build", [rocksalt, perovskite])
def test_descriptors_ignore_site_order_and_supercells(build):
    crystal = build()
    means, curves, by_element = descriptors(crystal)
    assert means[descriptor_names(2).index("ph_dir_b1_area")] > 0
    permutation = np.random.default_rng(0).permutation(crystal.nsites)
    shuffled = Crystal(crystal.lattice, crystal.frac_coords[permutation], crystal.numbers[permutation])
    for scale in ([2, 1, 1], [2, 2, 2]):
        structure = crystal.to_pymatgen()
        structure.make_supercell(scale)
        for other in (shuffled, crystal_from_pymatgen(structure)):
            other_means, other_curves, other_elements = descriptors(other)
            np.testing.assert_allclose(other_means, means, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(other_curves, curves, rtol=1e-9, atol=1e-9)
            assert other_elements.keys() == by_element.keys()
            for z in by_element:
                for got, expected in zip(other_elements[z], by_element[z]):  # descriptors and curves
                    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


AREAS = [descriptor_names(2).index(f"ph_dir_b{d}_area") for d in range(3)]


def _area_change(a: Crystal, b: Crystal) -> float:
    return float(np.max(np.abs(descriptors(a)[0][AREAS] - descriptors(b)[0][AREAS])))


def test_rattling_rocksalt_changes_areas_in_proportion():
    crystal = rocksalt()
    changes = [_area_change(crystal, rattled(crystal, amplitude, seed=1)) for amplitude in (1e-4, 1e-3, 1e-2)]
    assert 0 < changes[0] < changes[1] < changes[2] < 1.0
    assert changes[0] < 0.05 and changes[1] < 0.2


@pytest.mark.parametrize("build", [rocksalt, perovskite])
def test_small_displacements_of_a_distorted_crystal_change_areas_little(build):
    """Once the ties of a symmetric structure are broken (here by a 0.05 Å rattle), the order of the atoms
    stands under smaller displacements and the areas follow the distances continuously. (At the symmetric
    structure itself the area is not continuous: a tie between equidistant atoms of one element is broken
    by position there and by the displacement in a rattled copy, which can orient the digraph differently.)"""
    base = rattled(build(), 0.05, seed=2)
    small, larger = (_area_change(base, rattled(base, amplitude, seed=3)) for amplitude in (1e-5, 1e-3))
    assert small < 1e-3 and larger < 0.1
    assert small < larger


def test_noble_gases_come_last_and_order_options_differ():
    numbers = np.array([18, 11, 17])  # Ar, Na, Cl on a line
    positions = np.array([[0.0, 0, 0], [2.0, 0, 0], [4.0, 0, 0]])
    ranked = neighbourhood_digraph(numbers, positions, 10.0, "electronegativity")[0]
    assert numbers[ranked].tolist() == [11, 17, 18]  # Na (0.93) before Cl (3.16) before Ar (none)
    ranked = neighbourhood_digraph(numbers, positions, 10.0, "atomic_number")[0]
    assert numbers[ranked].tolist() == [11, 17, 18]
    numbers = np.array([8, 26])  # O (3.44) after Fe (1.83) by electronegativity, before it by atomic number
    positions = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    assert numbers[neighbourhood_digraph(numbers, positions, 3.0, "electronegativity")[0]].tolist() == [26, 8]
    assert numbers[neighbourhood_digraph(numbers, positions, 3.0, "atomic_number")[0]].tolist() == [8, 26]
    with pytest.raises(MatprobeError):
        neighbourhood_digraph(numbers, positions, 3.0, "alphabetical")


def test_equal_elements_are_ordered_by_distance_then_position():
    numbers = np.array([8, 8, 8, 8])
    positions = np.array([[0.0, 0, 0], [0, 0, 2.0], [1.5, 0, 0], [-1.5, 0, 0]])
    ranked, edges, weights = neighbourhood_digraph(numbers, positions, 5.0)
    assert ranked.tolist() == [0, 3, 2, 1]  # centre, then 1.5 Å (x = -1.5 before x = 1.5), then 2 Å
    assert np.all(edges[:, 0] < edges[:, 1]) and len(edges) == 6  # every pair once, earlier to later


def test_real_neighbourhoods_match_the_rationals(real_crystals):
    """Neighbourhood digraphs of real crystals: the same Betti curves over GF(2^61-1) as over Q, and at
    small radius (small enough for the brute force) the same Betti numbers as the brute force."""
    checked = 0
    for _, crystal in real_crystals[:12]:
        for numbers, positions in neighbourhoods(crystal, 3.5)[:3]:
            _, edges, weights = neighbourhood_digraph(numbers, positions, 3.5)
            prime = betti_curves(len(numbers), edges, weights, max_dim=2)
            rational = betti_curves(len(numbers), edges, weights, max_dim=2, modulus=None)
            np.testing.assert_array_equal(prime[1], rational[1])
            short = edges[weights <= 3.0]
            if len(short) <= 30:
                assert betti_numbers(len(numbers), short).tolist() == brute_force(len(numbers), short.tolist(), 2)[0]
                checked += 1
    assert checked >= 10


def test_compute_path_homology_writes_both_tables(tmp_path):
    crystals = {"nacl": rocksalt(), "srtio3": perovskite()}
    pd.DataFrame([{"id": key, **crystal.to_row()} for key, crystal in crystals.items()]).to_parquet(tmp_path / "materials.parquet")
    outputs = [tmp_path / "ph.parquet", tmp_path / "elements.parquet", tmp_path / "summary.json"]
    frame = compute_path_homology(tmp_path / "materials.parquet", *outputs, radius=RADIUS, step=0.1, max_dim=2, threads=2, progress=False,
                                  out_atoms=tmp_path / "atoms.parquet")
    names = descriptor_names(2)
    assert list(frame.columns) == ["id", "nsites", "orbits", *names, *(f"ph_dir_b{d}_curve" for d in range(3))]
    assert frame["orbits"].tolist() == [2, 3] and frame["nsites"].tolist() == [8, 5]
    assert len(frame.loc[0, "ph_dir_b1_curve"]) == 42
    single = compute_path_homology(tmp_path / "materials.parquet", *outputs, radius=RADIUS, step=0.1, max_dim=2, threads=1, progress=False)
    pd.testing.assert_frame_equal(frame, single)
    elements = pd.read_parquet(outputs[1])
    assert list(elements.columns) == ["id", "element", *names, *(f"ph_dir_b{d}_curve" for d in range(3))]
    # the crystal mean is the atom-weighted mean of its elements' means, and of its atoms' own
    area = elements[elements.id == "srtio3"].set_index("element")["ph_dir_b1_area"]
    weighted = (area["Sr"] + area["Ti"] + 3 * area["O"]) / 5
    assert weighted == pytest.approx(frame.loc[1, "ph_dir_b1_area"])
    atoms = pd.read_parquet(tmp_path / "atoms.parquet")
    assert len(atoms) == 13 and atoms.groupby("id")["ph_dir_b1_area"].mean()["srtio3"] == pytest.approx(frame.loc[1, "ph_dir_b1_area"], rel=1e-6)
    with pytest.raises(MatprobeError):
        compute_path_homology(tmp_path / "materials.parquet", *outputs, radius=3.0, step=4.0, progress=False)
