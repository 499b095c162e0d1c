"""Shared fixtures: paths to the real datasets beside the checkout, and small crystals the tests write."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("MATPROBE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
MP36K_TAR = SHARED_DATASETS / "mp_cgcnn_36k.tar.gz"


def shared_dataset(path: Path) -> Path:
    """A file of ../shared/datasets: skipped with the reason on a user's fresh clone, where it is absent; under CI=true,
    where it is always there, its absence fails the test instead."""
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} is missing: CI runs with ../shared/datasets beside the checkout")
    pytest.skip(f"{path} not found: the real-data tests read ../shared/datasets beside the checkout "
                "(or the folder MATPROBE_SHARED_DATASETS names)")


@pytest.fixture(scope="session")
def mp36k_tar() -> Path:
    return shared_dataset(MP36K_TAR)


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
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "workflow_scripts", "config", "profiles", "envs", "report"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        elif source.exists():
            shutil.copy(source, dest / name)
    return dest


TINY_CONFIG = """
datasets:
  tiny:
    source: table
    path: tiny.parquet
    id_column: id
    structure_column: structure
    targets: {formation_energy_per_atom: formation_energy_per_atom}
splits: [{omit: Fe}]
split_options: {min_ood: 3, val_fraction: 0.15, id_test_fraction: 0.2}
targets: [formation_energy_per_atom]
models: [cgcnn, schnet]
seeds: [0]
model_options: {cgcnn: {hidden: 16, layers: 2}, schnet: {hidden: 16, filters: 16, interactions: 2}}
training: {epochs: 3, batch_size: 8, patience: 3, threads: 1}
landscape:
  grid_1d: {points: 5}
  grid_2d: {points: 5}
  max_crystals: 12
  chunks: 2
  compile: never
  hessian: {lanczos_steps: 4, trace_samples: 2, slq_runs: 1, seeds: 2}
attribution: {max_crystals: 8, ig_steps: 4}
knobs: {max_steps: 400}
topology: {radius: 4.0}
"""


def tiny_table(path):
    """48 real crystals of the embedded demo, 12 with Fe, written as a table of pymatgen dicts."""
    import json

    import pandas as pd
    from pymatgen.core.periodic_table import Element

    from matprobe.inputs.sources import EMBEDDED_FILE
    from matprobe.inputs.structures import Crystal

    demo = pd.read_parquet(EMBEDDED_FILE)

    iron = demo["numbers"].map(lambda numbers: Element("Fe").Z in set(numbers))
    small = demo["numbers"].map(len) <= 12
    chosen = pd.concat([demo[iron & small].head(12), demo[~iron & small].head(36)])
    rows = [{"id": r.id, "formation_energy_per_atom": r.formation_energy_per_atom,
             "structure": json.dumps(Crystal.from_row(r._asdict()).to_pymatgen().as_dict())} for r in chosen.itertuples()]
    pd.DataFrame(rows).to_parquet(path)


@dataclass
class TinyRun:
    """The whole workflow, run once on the tiny dataset, and its HTML report (results/report.html)."""
    workdir: Path
    package: Path  # the copy of the package the run imports, which a test may edit to see what re-runs
    env: dict

    def snakemake(self, *args, timeout=1200):
        return subprocess.run(["snakemake", *args, "--configfile", "tiny.yaml"], cwd=self.workdir, capture_output=True,
                              text=True, timeout=timeout, env=self.env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """Run once per test session and shared (a few minutes on two cores): the end-to-end test checks its outputs, the
    browser test opens its report."""
    import matprobe

    root = tmp_path_factory.mktemp("tiny_run")
    workdir = copy_workflow(root / "wf")
    tiny_table(workdir / "tiny.parquet")
    (workdir / "tiny.yaml").write_text(TINY_CONFIG)
    package = root / "package"
    shutil.copytree(Path(matprobe.__file__).parent, package / "matprobe", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))}
    run = TinyRun(workdir, package, env)
    done = run.snakemake("--cores", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    report = run.snakemake("--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    return run


def random_lattice_points(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, 3))


@pytest.fixture(scope="session")
def real_crystals(mp36k_tar):
    """The first 150 crystals of mp_cgcnn_36k (real Materials Project structures), parsed from the archive."""
    import tarfile

    from matprobe.inputs.structures import check_crystal, parse_cif

    found = []
    with tarfile.open(mp36k_tar) as tar:
        for member in tar:
            if member.name.endswith(".cif"):
                found.append((member.name, check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5)))
                if len(found) == 150:
                    break
    return found


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """300 crystals of the embedded demo (real Materials Project data): materials table, graphs, omit-O split."""
    from matprobe.inputs.data import normalise_dataset
    from matprobe.prepare.graphs import build_graphs
    from matprobe.prepare.splits import write_split

    root = tmp_path_factory.mktemp("small")
    normalise_dataset("demo", {"source": "embedded", "limit": 300}, [], root / "materials.parquet",
                      root / "rejected.parquet", root / "summary.json", threads=2)
    build_graphs(root / "materials.parquet", root / "graphs.pt", root / "grej.parquet", root / "gsum.json", threads=2, progress=False)
    options = {"seed": 0, "val_fraction": 0.15, "id_test_fraction": 0.15, "min_ood": 5, "controls": True}
    write_split(root / "materials.parquet", "omit-O", [{"omit": "O"}], options, root / "omit-O.json")
    return root


@pytest.fixture(scope="session")
def tiny_model(small):
    """A deliberately tiny CGCNN trained for 3 epochs on `small`: small enough for an exact Hessian."""
    from matprobe.models.training import train_model

    training = {"epochs": 3, "batch_size": 16, "lr": 2e-3, "weight_decay": 1e-5, "patience": 10, "clip_norm": 5.0,
                "device": "cpu", "deterministic": True, "knn": 3}
    train_model(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", small / "tiny", "formation_energy_per_atom",
                "cgcnn", {"hidden": 4, "layers": 1, "head_hidden": 4}, training, seed=0, threads=1, progress=False)
    return small / "tiny" / "model.pt"
