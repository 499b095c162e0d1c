"""Physical interventions: exact edits of a crystal's structure, passed through a frozen model as any input is.

A ground truth for the generative knobs that no generative model can fake (issue 35): the model's response to a
change of the crystal itself. Three interventions, each a curve of the model's prediction and of one atom's
contribution over a grid of the edit's strength:

- **isotropic strain** of the cell, the lattice scaled by (1 + s) with fractional coordinates kept, every distance
  scaled by (1 + s): the model's energy-volume curve. For an energy target (formation energy per atom, energy above
  the hull) a physically sensible model has its minimum near the DFT structure (a physicality check in the sense of
  Dale et al.). A parabola in the volume per atom, fitted to the `fit_points` points around the curve's lowest
  point, gives the minimum (as a linear strain), and a bulk-modulus-like number B = v·d²E/dv² (eV/Å³). A parabola
  rather than Birch-Murnaghan: over the window (a few % of volume) the third-order term is small, the fit is linear
  least squares and cannot fail to converge, and a model's curve need not have the shape an equation of state
  assumes. The curvature and slope at the DFT structure come from a parabola in s around s = 0. For a band gap no
  minimum is expected: the slope dE_g/ds is the number to read.
- **radial stretch of one atom's first shell**: the neighbours bonded to a centre atom (closer than
  `environment.BOND_TOLERANCE` (1.2) × the sum of covalent radii, as the knobs count bonds; without any, those within 1.1 × the
  nearest distance) move along their bond, r_j → r_i + (1 + f)(r_j − r_i). Where the cell is so small that one atom
  is the neighbour of the centre through two periodic images (or a neighbour is the centre's own image), no edit
  of that cell stretches the shell alone: the smallest supercell in which every shell member is an atom of its own
  is edited instead (`cell_atoms` says how many atoms the edited cell has).
- **substitution** of one atom's element along its group and along its period (O → S → Se, Fe → Mn/Co/Ru), up to
  `reach` steps each way, substitutes being elements with a Pauling electronegativity (noble gases left out, f-block
  elements only for an f-block atom). In ID crystals that includes the substitution into the held-out element
  (S → O when O is held out): what does a model that never saw oxygen do when an S becomes an O?

Every edit that makes an impossible structure (atoms closer than `min_distance`, an atom with no neighbour within
the graph's cutoff, an element without features) is counted, logged once per crystal, and left out of its curve;
a curve with fewer than `MIN_POINTS` valid points has its slope missing with the reason in a column.

The model is any callable `predict(crystals) -> [(prediction, contributions per atom)]` in physical units; all the
variants of one crystal go through it in one call (one batch of graph building and inference)."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from vesin import NeighborList

from matprobe import MatprobeError
from matprobe.inputs.features import MAX_Z, element_properties, physical_feature_table
from matprobe.inputs.structures import Crystal, RejectedStructure
from matprobe.io import write_json, write_parquet
from matprobe.layout import run_paths
from matprobe.models.seam import load_trained
from matprobe.prepare.graphs import equivalent_atoms, neighbour_list
from matprobe.prepare.splits import load_split
from matprobe.probes.environment import SEARCH, shell_mask  # bonds counted as the knobs count them
from matprobe.runtime import Runtime
from matprobe.vocabulary import ENERGY_TARGETS

log = logging.getLogger("matprobe.probes.interventions")

Predictor = Callable[[list[Crystal]], list[tuple[float, np.ndarray]]]

EV_PER_CUBIC_ANGSTROM_IN_GPA = 160.21766
MIN_POINTS = 3  # a slope or a parabola from fewer valid points is reported missing
CONSTANT = 1e-6  # a curve whose range is below this (relative to its size) is flat: float32 noise has no rank order

# Reasons an edited structure is not evaluated (stable names: keys of counts.json)
ATOMS_OVERLAP = "atoms_overlap"
ISOLATED_ATOM = "isolated_atom"
NO_FEATURES = "element_without_features"
SHELL_NOT_SEPARABLE = "shell_not_separable"
GRAPH_REJECTED = "rejected_by_graph_builder"


# ---- the edits ------------------------------------------------------------------------------------------------------


def symmetric_grid(max_percent: float, points: int, key: str) -> np.ndarray:
    """`points` fractions from −max to +max, the middle one exactly 0 (so the unedited crystal is a point of every
    curve, bit for bit)."""
    if points < MIN_POINTS or points % 2 == 0:
        raise MatprobeError(f"interventions.{key}.points: {points} must be odd and at least {MIN_POINTS} "
                            "(the middle point is the unedited crystal)")
    half = (points - 1) // 2
    return max_percent / 100.0 * (np.arange(points) - half) / half


def strained(crystal: Crystal, strain: float) -> Crystal:
    """The crystal with its lattice scaled by (1 + strain): every interatomic distance scales by (1 + strain)."""
    return Crystal(crystal.lattice * (1.0 + strain), crystal.frac_coords.copy(), crystal.numbers.copy())


def substituted(crystal: Crystal, site: int, z: int) -> Crystal:
    """The crystal with the element of one site replaced (every periodic copy of that site)."""
    numbers = crystal.numbers.copy()
    numbers[site] = z
    return Crystal(crystal.lattice.copy(), crystal.frac_coords.copy(), numbers)


@dataclass(frozen=True)
class Shell:
    """A centre atom's first shell: each member is atom `sites[k]` at lattice translation `shifts[k]`, at Cartesian
    offset `vectors[k]` from the centre."""

    centre: int
    sites: np.ndarray  # (m,)
    shifts: np.ndarray  # (m, 3) int
    vectors: np.ndarray  # (m, 3) Å

    @property
    def distances(self) -> np.ndarray:
        return np.linalg.norm(self.vectors, axis=1)


def first_shell(crystal: Crystal, site: int, search: float = SEARCH) -> Shell:
    """The neighbours of `site` in its first shell (`environment.shell_mask`: bonded by the covalent-radius rule, or
    near its nearest neighbour where none is)."""
    for cutoff in (search, 2 * search, 4 * search):
        i, j, shifts, d, vectors = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=crystal.cart_coords(), box=crystal.lattice, periodic=True, quantities="ijSdD")
        mine = i == site
        if mine.any():
            break
    else:
        raise MatprobeError(f"interventions: site {site} has no neighbour within {4 * search} Å")
    j, shifts, d, vectors = j[mine], shifts[mine], d[mine], vectors[mine]
    bonded = shell_mask(d, int(crystal.numbers[site]), crystal.numbers[j])
    order = np.lexsort((shifts[bonded, 2], shifts[bonded, 1], shifts[bonded, 0], j[bonded], d[bonded]))
    return Shell(site, j[bonded][order].astype(np.int64), shifts[bonded][order].astype(np.int64), vectors[bonded][order])


def shell_repeats(shell: Shell, max_repeats: int) -> tuple[int, int, int] | None:
    """The smallest supercell (repeats along each lattice vector, fewest atoms first) in which every shell member
    is an atom of its own and none is a copy of the centre; None if no supercell up to `max_repeats` does it."""
    options = sorted(np.ndindex(max_repeats, max_repeats, max_repeats), key=lambda r: (np.prod(np.add(r, 1)), r))
    for raw in options:
        repeats = np.add(raw, 1)
        keys = {(int(s), *map(int, np.mod(t, repeats))) for s, t in zip(shell.sites, shell.shifts)}
        if len(keys) == len(shell.sites) and (shell.centre, 0, 0, 0) not in keys:
            return tuple(int(r) for r in repeats)
    return None


def supercell(crystal: Crystal, repeats) -> Crystal:
    """The crystal repeated (n1, n2, n3) times; atom k of the copy at offset t (in np.ndindex order) is atom
    offset_index(t) · nsites + k, so the copy at offset 0 keeps the original indices."""
    repeats = np.asarray(repeats, dtype=np.int64)
    offsets = np.array(list(np.ndindex(*repeats)), dtype=np.float64)
    frac = (crystal.frac_coords[None, :, :] + offsets[:, None, :]) / repeats
    return Crystal(crystal.lattice * repeats[:, None], frac.reshape(-1, 3), np.tile(crystal.numbers, len(offsets)))


def shell_stretched(crystal: Crystal, shell: Shell, factor: float, repeats) -> Crystal:
    """The (super)cell with every shell member moved along its bond to the centre: r_j → r_i + (1 + factor)·(r_j − r_i).
    The centre keeps its index."""
    repeats = np.asarray(repeats, dtype=np.int64)
    big = supercell(crystal, repeats)
    image = np.mod(shell.shifts, repeats)
    offset_index = (image[:, 0] * repeats[1] + image[:, 1]) * repeats[2] + image[:, 2]
    members = offset_index * crystal.nsites + shell.sites
    frac = big.frac_coords.copy()
    frac[members] += factor * shell.vectors @ np.linalg.inv(big.lattice)
    return Crystal(big.lattice, frac % 1.0, big.numbers)


def substitution_paths(z: int, reach: int) -> dict[str, list[tuple[int, int]]]:
    """(step, atomic number) along the element's group (by period) and along its period (by atomic number), up to
    `reach` steps each way, the element itself at step 0. Substitutes have a Pauling electronegativity, are not noble
    gases and are f-block elements only for an f-block atom (pymatgen puts the lanthanides in group 3)."""
    return {path: list(steps) for path, steps in _substitution_paths(int(z), int(reach))}


@functools.lru_cache(maxsize=None)
def _substitution_paths(z: int, reach: int) -> tuple:
    props = element_properties()
    own = props.loc[z]
    usable = props[props["electronegativity"].notna() & (props["group"] != 18) & ((props["block"] != "f") | (own["block"] == "f"))]
    usable = usable[usable.index != z]
    paths = []
    for name, members, key in (("group", usable[usable["group"] == own["group"]], "period"),
                               ("period", usable[usable["period"] == own["period"]], "Z")):
        if name == "group" and own["block"] == "f":
            continue  # the lanthanides and actinides share pymatgen's group 3: no group to walk along
        place = members.index.to_numpy() if key == "Z" else members["period"].to_numpy()
        here = z if key == "Z" else own["period"]
        order = np.argsort(place, kind="stable")
        below = [int(members.index[k]) for k in order if place[k] < here][::-1][:reach]
        above = [int(members.index[k]) for k in order if place[k] > here][:reach]
        steps = [(-(n + 1), k) for n, k in enumerate(below)][::-1] + [(0, z)] + [(n + 1, k) for n, k in enumerate(above)]
        if len(steps) > 1:
            paths.append((name, tuple(steps)))
    return tuple(paths)


def neighbours_of(elements: Sequence[int], reach: int) -> set[int]:
    """The elements whose substitution paths reach one of `elements` (S and Se for O at reach 2, and N, F, C)."""
    targets = set(int(z) for z in elements)
    found = set()
    for z in element_properties().index:
        if z in targets:
            continue
        if any(k in targets for path in substitution_paths(int(z), reach).values() for _, k in path):
            found.add(int(z))
    return found


# ---- impossible structures ------------------------------------------------------------------------------------------


def feature_problem(numbers: np.ndarray) -> str | None:
    """An element that has no row of node features (matprobe.inputs.features), or None."""
    table = physical_feature_table()
    for z in np.unique(numbers):
        if not 1 <= z <= MAX_Z or not table[z].any():
            return f"{NO_FEATURES}: Z={int(z)}"
    return None


def structure_problem(crystal: Crystal, min_distance: float, cutoff: float) -> str | None:
    """Why a structure cannot be evaluated (a reason name and its detail), or None: an element without features,
    atoms closer than `min_distance`, an atom with no neighbour within the graph's `cutoff`."""
    return feature_problem(crystal.numbers) or Clearance.of(crystal, cutoff).problem(min_distance, cutoff)


@dataclass(frozen=True)
class Clearance:
    """A structure's shortest interatomic distance and its largest nearest-neighbour distance (Å), from one
    neighbour search at the graph's cutoff: the edits' checks bound how far an edit moves them, and search again
    only where the bound comes near the floor or the cutoff."""

    shortest: float
    loneliest: float
    lonely: int | None  # an atom with no neighbour within the cutoff

    @classmethod
    def of(cls, crystal: Crystal, cutoff: float) -> "Clearance":
        i, d = NeighborList(cutoff=float(cutoff), full_list=True).compute(points=crystal.cart_coords(), box=crystal.lattice,
                                                                           periodic=True, quantities="id")
        nearest = np.full(crystal.nsites, np.inf)
        np.minimum.at(nearest, i, d)
        lonely = np.flatnonzero(~np.isfinite(nearest))
        return cls(float(nearest.min()), float(nearest.max()), int(lonely[0]) if len(lonely) else None)

    def problem(self, min_distance: float, cutoff: float) -> str | None:
        if self.shortest < min_distance:
            return f"{ATOMS_OVERLAP}: {self.shortest:.3f} Å < {min_distance} Å"
        if self.lonely is not None:
            return f"{ISOLATED_ATOM}: site {self.lonely} has no neighbour within {cutoff} Å"
        return None

    def edit_problem(self, edited: Crystal, min_distance: float, cutoff: float, scale: float = 1.0, moved: float = 0.0) -> str | None:
        """The problem of an edit of this structure that scales every distance by `scale` and then moves atoms by at
        most `moved` Å (so any distance by at most 2·moved): exact, with a new search only near the limits."""
        problem = feature_problem(edited.numbers)
        if problem:
            return problem
        if self.shortest * scale - 2 * moved >= min_distance and self.loneliest * scale + 2 * moved <= cutoff:
            return None
        return structure_problem(edited, min_distance, cutoff)


# ---- the model --------------------------------------------------------------------------------------------------------


def predictor(trained, graph: dict, batch_size: int = 256) -> Predictor:
    """The predict callable of a model of the seam (matprobe.models.seam.TrainedModel): the crystals' inputs built by
    its graph kind as the graph stage builds them (`graph`: the config's graph settings), predictions and
    contributions in physical units, in one batched pass."""

    def predict(crystals: list[Crystal]) -> list[tuple[float, np.ndarray]]:
        out = trained.predict(trained.graphs.from_crystals(crystals, graph), batch_size)
        return list(zip(out.prediction.tolist(), out.per_crystal(out.contributions)))

    return predict


def evaluate(predict: Predictor, crystals: list[Crystal]) -> list[tuple[float, np.ndarray] | str]:
    """Every crystal through the model in one call; if the model's graph builder rejects one of them (a rule the
    structure check did not know), each is tried alone and the rejected ones give their reason instead."""
    if not crystals:
        return []
    try:
        return list(predict(crystals))
    except RejectedStructure:
        results = []
        for crystal in crystals:
            try:
                results.append(predict([crystal])[0])
            except RejectedStructure as exc:
                results.append(f"{GRAPH_REJECTED}: {exc}")
        return results


# ---- curves and their numbers -------------------------------------------------------------------------------------------


def is_flat(y: np.ndarray) -> bool:
    return bool(np.ptp(y) <= CONSTANT * max(1.0, float(np.abs(y).max())))


def response_summary(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares slope of y on x and the Spearman correlation of y with x over the finite points; each missing,
    with the reason, where it cannot be computed."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, dtype=np.float64)[ok], np.asarray(y, dtype=np.float64)[ok]
    if len(x) < MIN_POINTS:
        return {"slope": np.nan, "monotonicity": np.nan, "reason": f"too few valid points ({len(x)}, need {MIN_POINTS})"}
    if np.ptp(x) <= 0:
        return {"slope": np.nan, "monotonicity": np.nan, "reason": "the edit's value does not vary"}
    dx = x - x.mean()
    slope = float((dx * (y - y.mean())).sum() / (dx**2).sum())
    if is_flat(y):
        return {"slope": slope, "monotonicity": np.nan, "reason": "flat response: no rank order"}
    return {"slope": slope, "monotonicity": spearman(x, y), "reason": ""}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (tied values share their mean rank); NaN where either does not vary."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def average_ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts - 1) / 2)[inverse.ravel()]


def nearest_window(indices: np.ndarray, centre: int, size: int) -> np.ndarray:
    """The `size` indices (of a sorted array of valid grid points) closest in grid position to `centre`."""
    order = np.argsort(np.abs(indices - centre), kind="stable")
    return np.sort(indices[order[:size]])


def energy_volume_summary(strains: np.ndarray, values: np.ndarray, volume_per_atom: float, fit_points: int,
                          energy: bool) -> dict:
    """Numbers of one strain curve (values: NaN where the strained structure was invalid):
    slope and curvature at the DFT structure (a parabola in s over the `fit_points` valid points nearest s = 0),
    monotonicity, and for an energy target the minimum: its linear strain (%), whether it lies inside the range,
    and B = v·d²E/dv² at it (eV/Å³ for an energy per atom), from a parabola in the volume per atom over the
    `fit_points` valid points around the curve's lowest point."""
    valid = np.flatnonzero(np.isfinite(values))
    out = {"slope": np.nan, "curvature": np.nan, "monotonicity": np.nan, "reason": "",
           "minimum_strain_percent": np.nan, "minimum_in_range": False, "bulk_modulus": np.nan, "minimum_reason": ""}
    if len(valid) < MIN_POINTS:
        out["reason"] = out["minimum_reason"] = f"too few valid points ({len(valid)}, need {MIN_POINTS})"
        return out
    centre = int(np.argmin(np.abs(strains)))
    window = nearest_window(valid, centre, fit_points)
    c2, c1, _ = np.polyfit(strains[window], values[window], 2)
    out["slope"], out["curvature"] = float(c1), float(2 * c2)
    trend = response_summary(strains, values)
    out["monotonicity"] = trend["monotonicity"]
    out["reason"] = trend["reason"] if trend["reason"].startswith("flat") else ""
    if not energy:
        out["minimum_reason"] = "not an energy: a minimum at the DFT structure is not expected (read the slope)"
        return out
    lowest = int(valid[np.argmin(values[valid])])
    if lowest == valid[0] or lowest == valid[-1]:
        side = "compressed" if lowest == valid[0] else "expanded"
        out["minimum_reason"] = f"lowest at the {side} end ({100 * strains[lowest]:+.1f} %): the minimum lies outside the range"
        return out
    window = nearest_window(valid, lowest, fit_points)
    volumes = volume_per_atom * (1 + strains[window]) ** 3
    a, b, _ = np.polyfit(volumes, values[window], 2)
    if a <= 0:
        out["minimum_reason"] = "no minimum: the curve is not convex around its lowest point"
        return out
    v_min = -b / (2 * a)
    out["minimum_strain_percent"] = float(100 * (np.cbrt(v_min / volume_per_atom) - 1))
    out["minimum_in_range"] = bool(strains[valid[0]] <= out["minimum_strain_percent"] / 100 <= strains[valid[-1]])
    out["bulk_modulus"] = float(v_min * 2 * a)
    return out


# ---- which crystals and atoms ------------------------------------------------------------------------------------------


def common_sets(splits: list) -> dict[str, list[str]]:
    """Per set, the crystals in that set of every split given (matprobe.prepare.splits.Split; an omission and its
    control: the crystals both models saw in training, or both did not), in the first split's order."""
    common = {}
    for set_name in ("train", "id_test", "ood_test"):
        if not all(set_name in split.sets for split in splits):
            continue
        members = [set(split.sets[set_name]) for split in splits[1:]]
        common[set_name] = [i for i in splits[0].sets[set_name] if all(i in m for m in members)]
    return common


def atom_group(z: int, held_out: set[int], neighbours: set[int]) -> str:
    return "held_out" if z in held_out else "neighbour_of_held_out" if z in neighbours else "other"


def site_classes(crystal: Crystal, graph: dict) -> np.ndarray:
    """Classes of sites that every model over the graph's elements and distances treats alike (colour refinement on
    the k-nearest graph, matprobe.prepare.graphs.equivalent_atoms): an edit of one site of a class gives the same
    curve as the edit of any other. Without a k-regular graph (max_neighbors null), every site is its own class."""
    k = graph.get("max_neighbors")
    i, j, _, d, _ = neighbour_list(crystal, graph["cutoff"], k)
    if not k or len(i) != k * crystal.nsites:
        return np.arange(crystal.nsites)
    return equivalent_atoms(crystal.numbers, j, d, k, tolerance=1e-4)


def sample_sites(crystal: Crystal, groups: list[str], classes: np.ndarray, wanted: Sequence[str], per_group: int,
                 rng) -> list[tuple[int, str]]:
    """Up to `per_group` sites of each wanted atom group, one per class of equivalent sites, sites of another element
    before a second site of one element."""
    chosen = []
    for group in wanted:
        sites = [int(s) for s in rng.permutation(crystal.nsites) if groups[s] == group]
        representatives = [s for n, s in enumerate(sites) if classes[s] not in {classes[t] for t in sites[:n]}]
        seen: set[int] = set()
        first = [s for s in representatives if not (crystal.numbers[s] in seen or seen.add(crystal.numbers[s]))]
        chosen += [(s, group) for s in (first + [s for s in representatives if s not in first])[:per_group]]
    return chosen


# ---- the stage ---------------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    intervention: str
    site: int  # -1: the whole crystal (strain)
    atoms: str  # atom group of the site (crystal for strain)
    path: str  # substitution path (group, period), else ""
    step: int
    value: float  # strain, stretch (fractions), or the substitute's electronegativity (Pauling)
    crystal: Crystal | None
    centre: int  # index of the site in the edited cell (whose contribution is read)
    element: str = ""  # the site's element after the edit (substitution) or its own
    problem: str | None = None  # why the edited structure was not evaluated
    scale: float = 1.0  # the edit scales every distance by this, then moves atoms by at most `moved` Å
    moved: float = 0.0
    prediction: float = np.nan
    contributions: np.ndarray | None = None


def crystal_variants(crystal: Crystal, interventions: set[str], sites: list[tuple[int, str]], options: dict,
                     symbols: dict[int, str], electronegativity: pd.Series) -> list[Variant]:
    """Every edited structure of one crystal (the edited structure is None where the edit itself is impossible)."""
    variants = []
    if "strain" in interventions:
        grid = symmetric_grid(options["strain"]["max_percent"], options["strain"]["points"], "strain")
        half = len(grid) // 2
        variants += [Variant("strain", -1, "crystal", "", k - half, float(s), strained(crystal, s), -1, scale=1 + s)
                     for k, s in enumerate(grid)]
    for site, group in sites:
        own = symbols[int(crystal.numbers[site])]
        if "shell_stretch" in interventions:
            grid = symmetric_grid(options["shell_stretch"]["max_percent"], options["shell_stretch"]["points"], "shell_stretch")
            shell = first_shell(crystal, site)
            repeats = shell_repeats(shell, options["shell_stretch"]["max_repeats"])
            half = len(grid) // 2
            for k, f in enumerate(grid):
                edited = shell_stretched(crystal, shell, f, repeats) if repeats is not None else None
                variants.append(Variant("shell_stretch", site, group, "", k - half, float(f), edited, site, own,
                                        None if repeats else f"{SHELL_NOT_SEPARABLE}: site {site}'s shell shares atoms in every "
                                        f"supercell up to {options['shell_stretch']['max_repeats']}³",
                                        moved=abs(f) * float(shell.distances.max())))
        if "substitution" in interventions:
            for path, steps in substitution_paths(int(crystal.numbers[site]), options["substitution"]["reach"]).items():
                for step, z in steps:
                    variants.append(Variant("substitution", site, group, path, step, float(electronegativity.loc[z]),
                                            substituted(crystal, site, z), site, symbols[z]))
    return variants


def run_interventions(model_path, materials_path, split_paths: Sequence, outputs, options: dict, graph: dict, threads: int = 1) -> dict:
    """The stage: one trained model's interventions (see `intervene`); `outputs`: the curves, summary and counts
    paths (layout.RUN_FILES["interventions"] names), or a folder for them."""
    Runtime(threads=threads, device="cpu").apply()
    trained = load_trained(model_path)
    trained.require("interventions", ("contributions",))
    return intervene(predictor(trained, graph), trained.record.target, materials_path, split_paths, run_paths("interventions", outputs),
                     options, graph)


def intervene(predict: Predictor, target: str, materials_path, split_paths: Sequence, outputs: dict, options: dict, graph: dict) -> dict:
    """The interventions of one model on the crystals its split shares with the other splits given (an omission and
    its control sample the same crystals and atoms): per set id_test and ood_test, `crystals` crystals, strain of the
    cell, and the shell stretch and substitutions of up to `atoms_per_group` sites per atom group (the held-out
    element's atoms, atoms of its neighbours in the periodic table, the others); in the training crystals both models
    share, the substitutions of the held-out element's neighbours (into the held-out element among them). Writes
    outputs["curves"], outputs["summary"] (parquet) and outputs["counts"] (json)."""
    started = time.perf_counter()
    splits = [load_split(path) for path in split_paths]
    props = element_properties()
    symbols = props["symbol"].to_dict()
    numbers = {symbol: z for z, symbol in symbols.items()}
    omitted = list(splits[0].held_out)
    held_out = {numbers[e] for e in omitted}
    reach = options["substitution"]["reach"]
    neighbours = neighbours_of(held_out, reach) if held_out else set()
    sets = common_sets(splits)
    materials = pd.read_parquet(materials_path, columns=["id", "nsites", "lattice", "frac_coords", "numbers"]).set_index("id")
    energy = target in ENERGY_TARGETS

    edits = set(options["edits"])
    plans = []  # (set, interventions, atom groups wanted, crystals eligible)
    for set_name, stream in (("id_test", 1), ("ood_test", 2)):
        if sets.get(set_name):
            wanted = ["held_out", "other"] if set_name == "ood_test" else ["other", "neighbour_of_held_out"]
            plans.append((set_name, stream, edits, wanted, sets[set_name]))
    if neighbours and sets.get("train") and "substitution" in edits:
        plans.append(("train", 0, {"substitution"}, ["neighbour_of_held_out"], sets["train"]))
    if not plans:
        raise MatprobeError(f"{split_paths[0]}: no id_test or ood_test crystal is common to {', '.join(map(str, split_paths))}")

    rows, counts, problems_by_crystal = [], Counter(), {}
    sampled = Counter()
    for set_name, stream, interventions, wanted, ids in plans:
        rng = np.random.default_rng([options["seed"], stream])
        taken = 0
        for crystal_id in rng.permutation(np.array(ids, dtype=object)):
            if taken == options["crystals"]:
                break
            row = materials.loc[crystal_id]
            if row["nsites"] > options["max_atoms"]:
                continue
            crystal = Crystal.from_row(row)
            groups = [atom_group(int(z), held_out, neighbours) for z in crystal.numbers]
            if set_name == "train" and not any(g == "neighbour_of_held_out" for g in groups):
                continue
            clearance = Clearance.of(crystal, graph["cutoff"])
            problem = feature_problem(crystal.numbers) or clearance.problem(options["min_distance"], graph["cutoff"])
            if problem:
                counts[f"crystals_skipped: {problem.split(':')[0]}"] += 1
                log.info("interventions: %s (%s) skipped, its own structure: %s", crystal_id, set_name, problem)
                continue
            taken += 1
            sites = sample_sites(crystal, groups, site_classes(crystal, graph), wanted, options["atoms_per_group"],
                                 np.random.default_rng([options["seed"], stream, taken]))
            variants = crystal_variants(crystal, interventions, sites, options, symbols, props["electronegativity"])
            for variant in variants:
                if variant.problem is None:
                    variant.problem = clearance.edit_problem(variant.crystal, options["min_distance"], graph["cutoff"], variant.scale,
                                                             variant.moved)
            good = [v for v in variants if v.problem is None]
            results = evaluate(predict, [v.crystal for v in good])
            for variant, result in zip(good, results):
                if isinstance(result, str):
                    variant.problem = result
                else:
                    variant.prediction, variant.contributions = result
            rows += curve_rows(set_name, crystal_id, crystal, variants, symbols, held_out)
            invalid = Counter(f"{v.problem.split(':')[0]} ({v.intervention})" for v in variants if v.problem)
            counts["crystals"] += 1
            counts["variants"] += len(variants)
            counts["variants_invalid"] += sum(invalid.values())
            sampled[set_name] += 1
            for key, n in invalid.items():
                counts[f"invalid: {key}"] += n
            if invalid:
                problems_by_crystal[crystal_id] = dict(invalid)
                first = next(v.problem for v in variants if v.problem)
                log.info("interventions: %s (%s): %d of %d edits invalid: %s; first: %s", crystal_id, set_name, sum(invalid.values()),
                         len(variants), ", ".join(f"{k} ×{n}" for k, n in invalid.items()), first)
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    summary = summarise(curves, options, energy)
    groups = group_summary(summary)
    result = {"target": target, "energy_target": energy, "omitted_elements": omitted, "crystals_per_set": dict(sampled),
              "counts": dict(counts), "invalid_by_crystal": problems_by_crystal, "groups": groups,
              "seconds": round(time.perf_counter() - started, 2)}
    write_parquet(curves, outputs["curves"])
    write_parquet(summary, outputs["summary"])
    write_json(result, outputs["counts"])
    log.info("interventions: %d crystals, %d edits (%d invalid), %d curve points in %.1f s", counts["crystals"], counts["variants"],
             counts["variants_invalid"], len(curves), result["seconds"])
    return result


CURVE_COLUMNS = ["set", "id", "intervention", "site", "element", "atoms", "path", "step", "value", "substitute", "into_held_out",
                 "cell_atoms", "volume_per_atom", "prediction", "total", "contribution", "valid", "reason"]


def curve_rows(set_name: str, crystal_id: str, crystal: Crystal, variants: list[Variant], symbols: dict, held_out: set[int]) -> list[dict]:
    """One row per edit: what was edited and how far, and the model's prediction, the sum of the contributions over
    the edited cell (`total`) and the edited site's contribution; NaN with the reason where the edit was invalid."""
    rows = []
    held_symbols = {symbols[z] for z in held_out}
    for v in variants:
        ok = v.problem is None
        edited = v.crystal if v.crystal is not None else crystal
        prediction = float(v.prediction) if ok else np.nan
        rows.append({"set": set_name, "id": crystal_id, "intervention": v.intervention, "site": v.site,
                     "element": symbols[int(crystal.numbers[v.site])] if v.site >= 0 else "", "atoms": v.atoms, "path": v.path,
                     "step": int(v.step), "value": v.value, "substitute": v.element if v.intervention == "substitution" else "",
                     "into_held_out": bool(v.intervention == "substitution" and v.step != 0 and v.element in held_symbols),
                     "cell_atoms": edited.nsites, "volume_per_atom": edited.volume / edited.nsites, "prediction": prediction,
                     "total": prediction * edited.nsites,
                     "contribution": float(v.contributions[v.centre]) if ok and v.centre >= 0 else np.nan,
                     "valid": ok, "reason": v.problem or ""})
    return rows


SUMMARY_COLUMNS = ["set", "id", "intervention", "site", "element", "atoms", "path", "points", "valid_points", "cell_atoms",
                   "slope_prediction", "curvature_prediction", "monotonicity_prediction", "minimum_strain_percent", "minimum_in_range",
                   "bulk_modulus", "bulk_modulus_gpa", "minimum_reason", "slope_total", "monotonicity_total", "slope_contribution",
                   "monotonicity_contribution", "into_held_out", "change_total_into_held_out", "change_contribution_into_held_out",
                   "reason"]


def summarise(curves: pd.DataFrame, options: dict, energy: bool) -> pd.DataFrame:
    """One row per crystal (strain), per atom (shell stretch), per atom and path (substitution). Strain: the slope
    and curvature of the prediction at the DFT cell, its minimum (energy targets); local edits: slopes of the cell's
    total and of the site's contribution against the edit's value (stretch fraction; substitute's electronegativity)."""
    curves = curves.sort_values(["set", "id", "intervention", "site", "path", "step"], kind="stable")
    column = {name: curves[name].to_numpy() for name in curves.columns}
    rows = []
    for (set_name, crystal_id, intervention, site, path), index in curves.groupby(["set", "id", "intervention", "site", "path"],
                                                                                   sort=False).indices.items():
        take = {name: values[index] for name, values in column.items()}
        entry = dict.fromkeys(SUMMARY_COLUMNS, np.nan)
        entry.update({"set": set_name, "id": crystal_id, "intervention": intervention, "site": int(site), "element": take["element"][0],
                      "atoms": take["atoms"][0], "path": path, "points": len(index), "valid_points": int(take["valid"].sum()),
                      "cell_atoms": int(take["cell_atoms"].max()), "minimum_in_range": False, "minimum_reason": "",
                      "into_held_out": "", "reason": ""})
        x = take["value"].astype(np.float64)
        if intervention == "strain":
            unstrained = float(take["volume_per_atom"][0] / (1 + x[0]) ** 3)
            numbers = energy_volume_summary(x, take["prediction"].astype(np.float64), unstrained, options["strain"]["fit_points"], energy)
            entry.update(slope_prediction=numbers["slope"], curvature_prediction=numbers["curvature"],
                         monotonicity_prediction=numbers["monotonicity"], reason=numbers["reason"],
                         minimum_strain_percent=numbers["minimum_strain_percent"], minimum_in_range=numbers["minimum_in_range"],
                         bulk_modulus=numbers["bulk_modulus"], bulk_modulus_gpa=numbers["bulk_modulus"] * EV_PER_CUBIC_ANGSTROM_IN_GPA,
                         minimum_reason=numbers["minimum_reason"])
        else:
            by_total = response_summary(x, take["total"].astype(np.float64))
            by_contribution = response_summary(x, take["contribution"].astype(np.float64))
            entry.update(slope_total=by_total["slope"], monotonicity_total=by_total["monotonicity"],
                         slope_contribution=by_contribution["slope"], monotonicity_contribution=by_contribution["monotonicity"],
                         reason="; ".join(dict.fromkeys(r for r in (by_total["reason"], by_contribution["reason"]) if r)))
            if intervention == "substitution":
                entry.update(into_held_out_change(take, entry["reason"]))
        rows.append(entry)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def into_held_out_change(curve: dict, reason: str) -> dict:
    """For a substitution path that reaches the held-out element: the change of the cell's total and of the site's
    contribution when the site becomes that element (missing, with the reason, where either structure was invalid).
    `curve`: the path's columns (arrays)."""
    into = np.flatnonzero(curve["into_held_out"])
    if not len(into):
        return {}
    original, edited = int(np.flatnonzero(curve["step"] == 0)[0]), int(into[0])
    entry = {"into_held_out": curve["substitute"][edited]}
    if not (curve["valid"][original] and curve["valid"][edited]):
        why = f"into {entry['into_held_out']}: " + (curve["reason"][edited] or curve["reason"][original])
        return {**entry, "reason": "; ".join(r for r in (reason, why) if r)}
    return {**entry, "change_total_into_held_out": float(curve["total"][edited] - curve["total"][original]),
            "change_contribution_into_held_out": float(curve["contribution"][edited] - curve["contribution"][original])}


def group_summary(summary: pd.DataFrame) -> list[dict]:
    """The spread over atoms (crystals, for strain) of each set, atom group, intervention and path: how many, the
    median and interquartile range of the slopes, the share of monotone responses (|Spearman| ≥ 0.9), and for strain
    the median minimum offset and the share of minima inside the range."""
    out = []
    for (set_name, atoms, intervention, path), frame in summary.groupby(["set", "atoms", "intervention", "path"], sort=False):
        entry = {"set": set_name, "atoms": atoms, "intervention": intervention, "path": path, "n": int(len(frame))}
        columns = (["slope_prediction", "curvature_prediction", "minimum_strain_percent"] if intervention == "strain"
                   else ["slope_total", "slope_contribution", "change_contribution_into_held_out"])
        for column in columns:
            values = frame[column].dropna()
            entry[column] = ({"n": int(len(values)), "median": float(values.median()), "q25": float(values.quantile(0.25)),
                              "q75": float(values.quantile(0.75))} if len(values) else {"n": 0})
        monotone = frame["monotonicity_prediction" if intervention == "strain" else "monotonicity_contribution"].dropna()
        entry["monotone_share"] = float((monotone.abs() >= 0.9).mean()) if len(monotone) else None
        if intervention == "strain":
            entry["minimum_in_range_share"] = float(frame["minimum_in_range"].mean())
        out.append(entry)
    return out
