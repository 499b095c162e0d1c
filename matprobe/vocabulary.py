"""The workflow's vocabulary, written once for the stages, the figures and the report: the targets and the atom
attributes with their units, which targets are energies of the structure, and the sets' names in figures. It
imports nothing, so that a figure or report job reads it without loading torch, and the figure and report rules
list it among their code inputs (editing a unit or a label re-makes them)."""

from __future__ import annotations

# Targets, in the units of the datasets' DFT labels.
TARGET_UNITS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "band_gap_mbj": "eV", "e_above_hull": "eV/atom"}
# Targets whose value is an energy of the structure: their strain curve should have a minimum near the DFT cell.
ENERGY_TARGETS = frozenset({"formation_energy_per_atom", "e_above_hull"})

# The attributes an atom is described by in the knob stage (those with a unit): its element's, its environment's and
# its topology's.
ATTRIBUTE_UNITS = {"electronegativity": "Pauling", "covalent_radius": "Å", "mean_bond_length": "Å", "shortest_bond_length": "Å",
                   "bond_length_spread": "Å", "electronegativity_difference": "Pauling", "h1_total_persistence": "Å",
                   "h2_total_persistence": "Å", "ph_dir_b1_area": "Å", "ph_dir_b2_area": "Å"}

# The four sets of a split as figures and the report name them (matprobe.prepare.sets.SETS in that order).
SET_LABELS = {"train": "train", "val": "val", "id_test": "ID test", "ood_test": "OOD test"}


def target_units(target: str) -> str:
    return TARGET_UNITS.get(target, "target units")
