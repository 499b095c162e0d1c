"""An atom's bonded environment, counted one way for the knobs (as attributes) and for the interventions (as the
shell they stretch), so that an edit made in the crystal and the same edit read as attributes agree by construction.

A neighbour is bonded when it is closer than `BOND_TOLERANCE` × the sum of the two covalent radii. An atom bonded to
none has as its shell the neighbours within (1 + `NEAREST_TOLERANCE`) × its nearest distance; its coordination
stays 0. Neighbours are searched within `SEARCH` Å, periodic images included: the longest bonds by this rule
(Cs–Cs, 1.2 × 2 × 2.44 Å = 5.9 Å) fit inside it."""

from __future__ import annotations

import numpy as np
from vesin import NeighborList

from matprobe.inputs.features import element_properties
from matprobe.inputs.structures import Crystal

BOND_TOLERANCE = 1.2
NEAREST_TOLERANCE = 0.1
SEARCH = 6.0  # Å
ENVIRONMENT_ATTRIBUTES = ["coordination", "mean_bond_length", "shortest_bond_length", "bond_length_spread",
                          "electronegativity_difference"]


def neighbours(crystal: Crystal, cutoff: float = SEARCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, d) of every ordered pair of atoms closer than `cutoff`, periodic images included."""
    return NeighborList(cutoff=cutoff, full_list=True).compute(points=crystal.cart_coords(), box=crystal.lattice, periodic=True,
                                                                quantities="ijd")


def is_bonded(distances: np.ndarray, z_site: int, z_neighbours: np.ndarray) -> np.ndarray:
    radius = element_properties()["covalent_radius"].to_numpy()
    return distances <= BOND_TOLERANCE * (radius[z_site - 1] + radius[z_neighbours - 1])


def shell_mask(distances: np.ndarray, z_site: int, z_neighbours: np.ndarray) -> np.ndarray:
    """The first shell among an atom's neighbours: the bonded ones, or those near its nearest where none is."""
    bonded = is_bonded(distances, z_site, z_neighbours)
    return bonded if bonded.any() else distances <= (1 + NEAREST_TOLERANCE) * distances.min()


def site_environment(distances: np.ndarray, z_site: int, z_neighbours: np.ndarray) -> dict[str, float]:
    """The environment attributes of one atom from its neighbours' distances and atomic numbers: coordination (bonded
    neighbours), mean, shortest and spread (standard deviation) of the shell's bond lengths, and the mean
    electronegativity of the shell minus the atom's own (NaN where the elements have none: noble gases)."""
    if not len(distances):
        return dict.fromkeys(ENVIRONMENT_ATTRIBUTES, np.nan)
    electronegativity = element_properties()["electronegativity"].to_numpy()
    shell = shell_mask(distances, z_site, z_neighbours)
    lengths = distances[shell]
    return {"coordination": float(is_bonded(distances, z_site, z_neighbours).sum()), "mean_bond_length": float(lengths.mean()),
            "shortest_bond_length": float(distances.min()), "bond_length_spread": float(lengths.std()),
            "electronegativity_difference": _mean_or_nan(electronegativity[z_neighbours[shell] - 1]) - electronegativity[z_site - 1]}


def environment_attributes(crystal: Crystal, cutoff: float = SEARCH) -> dict[str, np.ndarray]:
    """Per site of a crystal, its environment attributes (`site_environment`)."""
    i, j, d = neighbours(crystal, cutoff)
    columns = {name: np.full(crystal.nsites, np.nan) for name in ENVIRONMENT_ATTRIBUTES}
    for site in range(crystal.nsites):
        mine = i == site
        for name, value in site_environment(d[mine], int(crystal.numbers[site]), crystal.numbers[j[mine]]).items():
            columns[name][site] = value
    return columns


def stretched_environment(distances: np.ndarray, z_site: int, z_neighbours: np.ndarray, fraction: float) -> dict[str, float]:
    """The environment attributes of an atom after its first shell is stretched radially by `fraction` (the
    interventions' shell stretch: every shell member's distance × (1 + fraction), the other neighbours in place)."""
    edited = np.where(shell_mask(distances, z_site, z_neighbours), distances * (1 + fraction), distances)
    return site_environment(edited, z_site, z_neighbours)


def substituted_environment(distances: np.ndarray, z_site: int, z_neighbours: np.ndarray, images_of_site: np.ndarray,
                            z_substitute: int) -> dict[str, float]:
    """The environment attributes of an atom after its element is substituted (the interventions' substitution: the
    site changes in every periodic copy, so a neighbour that is an image of the site itself changes too)."""
    return site_environment(distances, z_substitute, np.where(images_of_site, z_substitute, z_neighbours))


def _mean_or_nan(values: np.ndarray) -> float:
    """The mean of the finite values (noble gases have no electronegativity), NaN where there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")
