"""Crystal structures in the compact, lossless form every stage reads: a 3x3 lattice (rows are the
lattice vectors, Angstrom), fractional coordinates and atomic numbers; plus the checks that decide
whether a parsed structure is accepted."""

from __future__ import annotations

import ast
import io
import json
import warnings
from dataclasses import dataclass

import numpy as np

# Reasons a structure is rejected (stable names: they are the keys of summary.json's counts).
UNPARSABLE = "unparsable"
ZERO_ATOMS = "zero_atoms"
NON_FINITE = "non_finite_coordinates"
PARTIAL_OCCUPANCY = "partial_occupancy"
DUPLICATE_ID = "duplicate_id"
TOO_CLOSE = "atoms_too_close"
MISSING_TARGETS = "all_targets_missing"
UNSUPPORTED_ELEMENT = "unsupported_element"
EMPTY_ID = "empty_id"


class RejectedStructure(Exception):
    """A structure that is counted and skipped, never fatal. `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Crystal:
    lattice: np.ndarray  # (3, 3) float64, rows are lattice vectors
    frac_coords: np.ndarray  # (n, 3) float64
    numbers: np.ndarray  # (n,) int64 atomic numbers

    @property
    def nsites(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    def cart_coords(self) -> np.ndarray:
        return self.frac_coords @ self.lattice

    def to_pymatgen(self):
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.numbers.tolist(), self.frac_coords, coords_are_cartesian=False)

    def to_row(self) -> dict:
        return {
            "lattice": self.lattice.reshape(-1).tolist(),
            "frac_coords": self.frac_coords.reshape(-1).tolist(),
            "numbers": self.numbers.tolist(),
        }

    @classmethod
    def from_row(cls, row) -> "Crystal":
        """Rebuild from a materials.parquet row (a mapping with lattice, frac_coords, numbers)."""
        return cls(
            lattice=np.asarray(row["lattice"], dtype=np.float64).reshape(3, 3),
            frac_coords=np.asarray(row["frac_coords"], dtype=np.float64).reshape(-1, 3),
            numbers=np.asarray(row["numbers"], dtype=np.int64),
        )


def row_to_structure(row):
    """A pymatgen Structure from a row of materials.parquet."""
    return Crystal.from_row(row).to_pymatgen()


def crystal_from_pymatgen(structure) -> Crystal:
    """Convert a pymatgen Structure; partial occupancy and non-element species are rejected."""
    numbers = []
    for site in structure:
        species = site.species
        if len(species) != 1:
            raise RejectedStructure(PARTIAL_OCCUPANCY, f"site with {species}")
        (specie, occupancy), = species.items()
        if abs(occupancy - 1.0) > 1e-6:
            raise RejectedStructure(PARTIAL_OCCUPANCY, f"occupancy {occupancy:g} of {specie}")
        z = getattr(specie, "Z", None)
        if not z:
            raise RejectedStructure(UNPARSABLE, f"species {specie} is not an element")
        numbers.append(z)
    return Crystal(
        lattice=np.array(structure.lattice.matrix, dtype=np.float64),
        frac_coords=np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3),
        numbers=np.array(numbers, dtype=np.int64),
    )


def _quiet_pymatgen():
    # pymatgen warns on every CIF with rounded coordinates; those warnings are noise in rule logs
    return warnings.catch_warnings()


def parse_cif(text: str) -> Crystal:
    from pymatgen.io.cif import CifParser

    with _quiet_pymatgen():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser(io.StringIO(text), occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many types on bad CIFs
            raise RejectedStructure(UNPARSABLE, f"CIF: {type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
    if not structures:
        raise RejectedStructure(UNPARSABLE, "CIF holds no structure")
    if len(structures) > 1:  # which block the label belongs to cannot be told: none is guessed at
        blocks = [key for key in parser.as_dict()][:3]
        raise RejectedStructure(UNPARSABLE, f"CIF holds {len(structures)} structures (data blocks {', '.join(blocks)}); "
                                            "give one structure per file")
    return crystal_from_pymatgen(structures[0])


def parse_poscar(text: str) -> Crystal:
    from pymatgen.core import Structure

    with _quiet_pymatgen():
        warnings.simplefilter("ignore")
        try:
            structure = Structure.from_str(text, fmt="poscar")
        except Exception as exc:
            raise RejectedStructure(UNPARSABLE, f"POSCAR: {type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
    return crystal_from_pymatgen(structure)


def parse_structure_dict(value) -> Crystal:
    """A pymatgen Structure dict, given as a dict, JSON text or Python-literal text (matminer CSVs)."""
    from pymatgen.core import Structure

    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError) as exc:
                raise RejectedStructure(UNPARSABLE, f"structure text is neither JSON nor a literal: {exc}") from None
    if not isinstance(value, dict):
        raise RejectedStructure(UNPARSABLE, f"structure is a {type(value).__name__}, not a dict")
    with _quiet_pymatgen():
        warnings.simplefilter("ignore")
        try:
            structure = Structure.from_dict(value)
        except Exception as exc:
            raise RejectedStructure(UNPARSABLE, f"structure dict: {type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
    return crystal_from_pymatgen(structure)


def parse_structure_any(value) -> Crystal:
    """Guess the form of a table's structure cell: pymatgen dict, CIF text or POSCAR text."""
    if isinstance(value, dict):
        return parse_structure_dict(value)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        raise RejectedStructure(UNPARSABLE, "empty structure cell")
    text = value.decode() if isinstance(value, bytes) else str(value)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return parse_structure_dict(text)
    if "_cell_length_a" in text or stripped.startswith("data_"):
        return parse_cif(text)
    return parse_poscar(text)


def crystal_from_arrays(lattice, coords, symbols_or_numbers, cartesian: bool) -> Crystal:
    """Build from plain arrays (JARVIS `atoms` dicts); symbols may be element symbols or numbers."""
    from pymatgen.core.periodic_table import Element

    try:
        lattice = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        numbers = np.array(
            [int(s) if isinstance(s, (int, np.integer)) else Element(str(s).strip()).Z for s in symbols_or_numbers],
            dtype=np.int64,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise RejectedStructure(UNPARSABLE, f"atoms arrays: {exc}".splitlines()[0][:200]) from None
    if numbers.shape[0] != coords.shape[0]:
        raise RejectedStructure(UNPARSABLE, f"{numbers.shape[0]} species for {coords.shape[0]} coordinates")
    if cartesian:
        if not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) < 1e-8:
            raise RejectedStructure(NON_FINITE, "singular or non-finite lattice")
        coords = np.linalg.solve(lattice.T, coords.T).T
    return Crystal(lattice=lattice, frac_coords=coords, numbers=numbers)


def check_crystal(crystal: Crystal, min_distance: float) -> Crystal:
    """Reject empty, non-finite or unphysically dense structures; wrap coordinates into [0, 1)."""
    if crystal.nsites == 0:
        raise RejectedStructure(ZERO_ATOMS)
    if not (np.all(np.isfinite(crystal.frac_coords)) and np.all(np.isfinite(crystal.lattice))):
        raise RejectedStructure(NON_FINITE, "NaN or infinite lattice or coordinates")
    if crystal.volume < 1e-6:
        raise RejectedStructure(NON_FINITE, "singular lattice")
    from matprobe.inputs.features import MAX_Z

    beyond = sorted({int(z) for z in crystal.numbers if not 1 <= z <= MAX_Z})
    if beyond:  # the node feature tables stop at MAX_Z: such a crystal could not be featurised by any model
        raise RejectedStructure(UNSUPPORTED_ELEMENT, f"{_element_name(beyond[0])} (Z = {beyond[0]}): the node features "
                                                     f"cover Z = 1 to {MAX_Z} (H to Fm)")
    frac = crystal.frac_coords - np.floor(crystal.frac_coords)
    frac[frac >= 1.0] = 0.0  # floor of values a hair below an integer can round back to 1.0
    crystal = Crystal(crystal.lattice, frac, crystal.numbers)
    closest = shortest_distance(crystal, min_distance)
    if closest is not None:
        raise RejectedStructure(TOO_CLOSE, f"two atoms {closest:.3f} A apart (< {min_distance} A)")
    return crystal


def _element_name(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"element {z}"


def shortest_distance(crystal: Crystal, radius: float) -> float | None:
    """The shortest interatomic distance (periodic images included) if it is below `radius`, else None."""
    from vesin import NeighborList

    points = crystal.cart_coords()
    calculator = NeighborList(cutoff=float(radius), full_list=False)
    (distances,) = calculator.compute(points=points, box=crystal.lattice, periodic=True, quantities="d")
    if distances.size == 0:
        return None
    return float(distances.min())
