"""Shared fixtures: paths to the real datasets beside the checkout, and small crystals the tests write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("MATPROBE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
MP36K_TAR = SHARED_DATASETS / "mp_cgcnn_36k.tar.gz"


@pytest.fixture(scope="session")
def mp36k_tar() -> Path:
    # In CI ../shared is always present: a missing file there is a failure, never a skip.
    assert MP36K_TAR.exists(), f"{MP36K_TAR} is missing: the real-data tests need ../shared/datasets beside the checkout"
    return MP36K_TAR


def rocksalt(a: float = 4.2, cation: str = "Na", anion: str = "Cl"):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def simple_cubic(a: float = 3.0, element: str = "Po"):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), [element], [[0, 0, 0]])


@pytest.fixture(scope="session")
def crystals():
    """A few real-looking crystals of different chemistry: NaCl, FeO, MgO, Si, CsCl."""
    from pymatgen.core import Lattice, Structure

    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {
        "NaCl": rocksalt(5.64, "Na", "Cl"),
        "FeO": rocksalt(4.33, "Fe", "O"),
        "MgO": rocksalt(4.21, "Mg", "O"),
        "Si": silicon,
        "CsCl": cscl,
    }


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (not the package, which is installed) to run snakemake in isolation."""
    for name in ("Snakefile", "rules", "workflow_scripts", "config", "profiles", "envs", "report"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        elif source.exists():
            shutil.copy(source, dest / name)
    return dest


def random_lattice_points(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, 3))


@pytest.fixture(scope="session")
def real_crystals(mp36k_tar):
    """The first 150 crystals of mp_cgcnn_36k (real Materials Project structures), parsed from the archive."""
    import tarfile

    from matprobe.structures import check_crystal, parse_cif

    found = []
    with tarfile.open(mp36k_tar) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                found.append((member.name, check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5)))
                if len(found) == 150:
                    break
    return found
