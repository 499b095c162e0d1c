"""Node features per element.

`physical`: a CGCNN-style vector computed from pymatgen's element data (Xie & Grossman 2018, Table S2):
group, period, Pauling electronegativity, covalent radius, valence electrons, first ionisation energy,
electron affinity, block and atomic (molar) volume, each one-hot encoded (continuous properties in
equal-width bins over the elements 1-100). Unlike a learned embedding, an element left out of training
still has a meaningful vector here: its bins are shared with elements that were seen.

`onehot`: the atomic number alone, for a learned embedding table.

`element_properties()` gives the raw, unbinned property table that attribution in element-property
space (TRIM) is expressed in."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd

MAX_Z = 100  # pymatgen has property data up to fermium; crystals here stop well before that

CONTINUOUS_BINS = 10
CONTINUOUS = ["electronegativity", "covalent_radius", "first_ionisation_energy", "electron_affinity", "atomic_volume"]
CATEGORICAL = {"group": list(range(1, 19)), "period": list(range(1, 8)), "valence_electrons": list(range(1, 13)), "block": ["s", "p", "d", "f"]}
PROPERTY_ORDER = ["group", "period", "electronegativity", "covalent_radius", "valence_electrons", "first_ionisation_energy", "electron_affinity", "block", "atomic_volume"]


@functools.lru_cache(maxsize=1)
def element_properties() -> pd.DataFrame:
    """Raw element properties for Z = 1..MAX_Z (index: Z), NaN where pymatgen has no value."""
    from ase.data import covalent_radii
    from pymatgen.core.periodic_table import Element

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each missing datum
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            group = int(element.group)
            ionisation = element.ionization_energies
            volume = element.molar_volume
            rows.append(
                {
                    "Z": z,
                    "symbol": element.symbol,
                    "group": group,
                    "period": int(element.row),
                    "electronegativity": float(element.X),
                    "covalent_radius": float(covalent_radii[z]),
                    # electrons counted the usual chemical way: the group number, less 10 for the p block
                    "valence_electrons": group if group <= 12 else group - 10,
                    "first_ionisation_energy": float(ionisation[0]) if ionisation and ionisation[0] else np.nan,
                    "electron_affinity": _float_or_nan(element.electron_affinity),
                    "block": element.block,
                    "atomic_volume": _float_or_nan(volume),
                    "mendeleev_number": _float_or_nan(element.mendeleev_no),
                }
            )
    return pd.DataFrame(rows).set_index("Z")


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _one_hot_categorical(values: pd.Series, categories: list) -> np.ndarray:
    out = np.zeros((len(values), len(categories)), dtype=np.float32)
    for row, value in enumerate(values):
        if value in categories:
            out[row, categories.index(value)] = 1.0
    return out


def _one_hot_binned(values: pd.Series, bins: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    edges = np.linspace(finite.min(), finite.max(), bins + 1)
    out = np.zeros((len(values), bins), dtype=np.float32)
    for row, value in enumerate(values):
        if np.isfinite(value):
            out[row, min(np.searchsorted(edges, value, side="right") - 1, bins - 1)] = 1.0
    return out  # a missing value stays all-zero: "unknown", not a made-up bin


@functools.lru_cache(maxsize=1)
def _physical_blocks() -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    props = element_properties()
    blocks, layout = [], []
    for name in PROPERTY_ORDER:
        if name in CATEGORICAL:
            block = _one_hot_categorical(props[name], CATEGORICAL[name])
        else:
            block = _one_hot_binned(props[name].astype(float), CONTINUOUS_BINS)
        blocks.append(block)
        layout.append((name, block.shape[1]))
    table = np.concatenate(blocks, axis=1)
    # row 0 is a padding element (Z = 0) so that the table is indexed by atomic number directly
    return np.vstack([np.zeros((1, table.shape[1]), dtype=np.float32), table]), tuple(layout)


def physical_feature_table() -> np.ndarray:
    """(MAX_Z + 1, 91) float32 table indexed by atomic number."""
    return _physical_blocks()[0].copy()


def physical_feature_layout() -> list[tuple[str, slice]]:
    """(property name, columns) of the physical feature vector, in order."""
    layout, start = [], 0
    for name, width in _physical_blocks()[1]:
        layout.append((name, slice(start, start + width)))
        start += width
    return layout


def node_feature_table(kind: str) -> np.ndarray:
    """Lookup table from atomic number to node input: physical features, or the number itself (onehot)."""
    if kind == "physical":
        return physical_feature_table()
    if kind == "onehot":
        return np.arange(MAX_Z + 1, dtype=np.float32)[:, None]
    raise ValueError(f"unknown node feature kind {kind!r}")
