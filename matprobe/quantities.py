"""The quantities the workflow predicts and describes atoms by, with their units: written once for the stages, the
figures and the report alike. Imports nothing heavy, so that a figure or report job reads it without loading torch
(about 3 s of every job's start on the default run's two cores)."""

from __future__ import annotations

# Targets, in the units of the datasets' DFT labels.
TARGET_UNITS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "band_gap_mbj": "eV", "e_above_hull": "eV/atom"}
# Targets whose value is an energy of the structure (per atom): their strain curve should have a minimum near the DFT cell.
ENERGY_TARGETS = frozenset(target for target, unit in TARGET_UNITS.items() if unit == "eV/atom")

# The attributes an atom is described by (the knobs and their element context; matprobe.probes.knobs, .environment).
ATTRIBUTE_UNITS = {"electronegativity": "Pauling", "covalent_radius": "Å", "mean_bond_length": "Å", "shortest_bond_length": "Å",
                   "bond_length_spread": "Å", "electronegativity_difference": "Pauling", "h1_total_persistence": "Å",
                   "h2_total_persistence": "Å", "ph_dir_b1_area": "Å", "ph_dir_b2_area": "Å"}


def target_units(target: str) -> str:
    return TARGET_UNITS.get(target, "target units")
