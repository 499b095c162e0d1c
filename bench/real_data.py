"""Real crystals for the benchmarks: the first n CIFs of mp_cgcnn_36k, parsed, checked and turned into graphs."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TAR = REPO.parent / "shared" / "datasets" / "mp_cgcnn_36k.tar.gz"


def load_real_stored(tar_path: Path = DEFAULT_TAR, n: int = 2000, target_column: int = 1) -> tuple[dict, list[str], np.ndarray]:
    """The stored graphs of the first n crystals (as the graph stage writes them), their ids and targets (id_prop
    column `target_column`: 1 is the formation energy)."""
    from matprobe.prepare.graphs import build_graph, collate_graphs
    from matprobe.inputs.structures import check_crystal, parse_cif

    ids, graphs = [], []
    with tarfile.open(tar_path) as tar:
        id_prop = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("id_prop.csv"))).read().decode()
        targets = {line.split(",")[0]: float(line.split(",")[target_column]) for line in id_prop.splitlines() if line}
        for member in tar:
            if member.name.endswith(".cif"):
                crystal = check_crystal(parse_cif(tar.extractfile(member).read().decode()), 0.5)
                ids.append(Path(member.name).stem)
                graphs.append(build_graph(crystal, 8.0, 12))
                if len(ids) == n:
                    break
    return collate_graphs(ids, graphs, {"cutoff": 8.0, "max_neighbors": 12}), ids, np.array([targets[i] for i in ids])


def load_real_graph_data(tar_path: Path = DEFAULT_TAR, n: int = 2000, target_column: int = 1):
    """PyG Data objects with standardised formation energies (id_prop column 1) as `y`."""
    from matprobe.prepare.sets import graph_data

    stored, ids, y = load_real_stored(tar_path, n, target_column)
    return graph_data(stored, ids, (y - y.mean()) / y.std())
