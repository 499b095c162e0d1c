"""Train an ALIGNN on the demo's omit-O split with the alignn package's own trainer, outside the workflow.

    python docs/examples/alignn_demo/train_with_alignn.py [--train 400] [--val 100] [--test 50] [--epochs 3]

1. The split: the omit-O split file the workflow makes for config.yaml (beside this script). If it is not there
   yet, the workflow's own data and split jobs make it (`snakemake <split file> --configfile config.yaml`), so the
   crystals held out here are exactly those the probe run holds out. `--split FILE` reads another split file.
2. A dataset folder in alignn's format (run/dataset/id_prop.json: an id, a jarvis `Atoms` dict and the formation
   energy per atom of each crystal): seeded samples of the split's train, val and id_test crystals, in that order,
   taken from the workflow's materials table.
3. alignn's own entry point, `python -m alignn.train_alignn` (the installed `train_alignn.py`), with
   alignn_config.json (model.name alignn_atomwise_pure, scalar target, CGCNN features, pure-torch graphs of 8 Å and
   12 neighbours, angles between bonds up to 3.5 Å; n_train, n_val, n_test and keep_data_order filled in, so that
   its train, val and test sets are exactly the samples of step 2). It writes run/checkpoint/best_model.pt and
   config.json, which config.yaml names.
4. A check: `matprobe.models.alignn.from_checkpoint` loads the checkpoint, and predicts on the test crystals what
   alignn's own model (rebuilt from config.json, as its trainer's restart path does) predicts on its own graphs.

Then probe it: snakemake --cores all --configfile docs/examples/alignn_demo/config.yaml"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CONFIG = HERE / "config.yaml"
DATASET, SPLIT, TARGET = "demo", "omit-O", "formation_energy_per_atom"


def workflow_split(config_path: Path) -> Path:
    """The split file the workflow makes for this config, made by the workflow's own jobs if it is missing."""
    from matprobe.config import layout_for, load_config

    path = REPO / layout_for(load_config(config_path)).split.format(dataset=DATASET, split=SPLIT)
    if not path.exists():
        print(f"making {path.relative_to(REPO)} with the workflow's data and split jobs", flush=True)
        subprocess.run(["snakemake", str(path.relative_to(REPO)), "--configfile", str(config_path.relative_to(REPO)),
                        "--cores", "1", "--quiet"], cwd=REPO, check=True)
    return path


def sampled_sets(split, sizes: dict[str, int], seed: int) -> dict[str, list[str]]:
    """Seeded samples of the split's sets (all of a set when it is smaller than asked)."""
    rng = np.random.default_rng(seed)
    return {name: sorted(rng.choice(split.sets[name], size=min(size, len(split.sets[name])), replace=False).tolist())
            for name, size in sizes.items()}


def write_dataset(folder: Path, sets: dict[str, list[str]], materials) -> dict:
    """alignn's dataset folder (id_prop.json), train then val then test; returns the crystals and targets by id."""
    from matprobe.inputs.structures import Crystal
    from matprobe.models.alignn import jarvis_atoms

    rows = materials.set_index("id")
    crystals = {}
    records = []
    for name in ("train", "val", "id_test"):
        for crystal_id in sets[name]:
            row = rows.loc[crystal_id]
            crystal = Crystal.from_row(row)
            crystals[crystal_id] = (crystal, float(row[TARGET]))
            records.append({"id": crystal_id, "atoms": jarvis_atoms(crystal).to_dict(), TARGET: float(row[TARGET])})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "id_prop.json").write_text(json.dumps(records))
    return crystals


def train(run: Path, sets: dict[str, list[str]], epochs: int) -> Path:
    """alignn's own trainer on the dataset folder; returns the folder with best_model.pt and config.json."""
    training = json.loads((HERE / "alignn_config.json").read_text())
    training.update(n_train=len(sets["train"]), n_val=len(sets["val"]), n_test=len(sets["id_test"]), epochs=epochs,
                    keep_data_order=True)
    (run / "alignn_config.json").write_text(json.dumps(training, indent=4))
    checkpoint = run / "checkpoint"
    command = [sys.executable, "-m", "alignn.train_alignn", "--root_dir", str(run / "dataset"),
               "--config_name", str(run / "alignn_config.json"), "--target_key", TARGET, "--id_key", "id",
               "--output_dir", str(checkpoint)]
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    with open(run / "train_alignn.log", "w") as log:  # its own LMDB caches go to its working folder, `run`
        subprocess.run(command, cwd=run, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"alignn's trainer: {time.perf_counter() - started:.0f} s, log in {run / 'train_alignn.log'}", flush=True)
    return checkpoint


def check(checkpoint: Path, crystals: dict, test_ids: list[str]) -> None:
    """from_checkpoint against alignn's own model on the test crystals."""
    import torch
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    from matprobe.models.alignn import from_checkpoint, package_graph_pair, package_model, stored_from_package_graph

    ours = from_checkpoint({"checkpoint": str(checkpoint / "best_model.pt")})
    theirs, training = package_model(checkpoint / "best_model.pt", checkpoint / "config.json")
    settings = {"cutoff": training["cutoff"], "max_neighbors": training["max_neighbors"]}
    kind = ours.graph_kind
    tested = [crystals[i][0] for i in test_ids]
    targets = np.array([crystals[i][1] for i in test_ids])
    pairs = [package_graph_pair(crystal, training) for crystal in tested]
    on_their_bonds = [kind.from_stored(stored_from_package_graph(graph, crystal, settings), ["x"], np.zeros(1))[0]
                      for (graph, _), crystal in zip(pairs, tested)]
    with torch.no_grad():
        graph, line = batch_torch_graph_pairs(pairs)
        reference = theirs((graph, line, None))["out"].numpy()
        same_bonds = ours(kind.collate(on_their_bonds))["prediction"].numpy()
        workflow_graphs = ours(kind.collate(kind.from_crystals(tested, settings)))["prediction"].numpy()
    print(f"{len(tested)} test crystals: alignn's own model, MAE {np.abs(reference - targets).mean():.3f} eV/atom; "
          f"from_checkpoint on alignn's neighbour lists, max |difference| {np.abs(same_bonds - reference).max():.1e} "
          f"eV/atom; on the workflow's graphs (its own tie-break among equidistant 12th neighbours), max "
          f"{np.abs(workflow_graphs - reference).max():.1e}, median {np.median(np.abs(workflow_graphs - reference)):.1e}, "
          f"MAE {np.abs(workflow_graphs - targets).mean():.3f} eV/atom")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, help="a split file of the workflow (default: config.yaml's omit-O)")
    parser.add_argument("--train", type=int, default=400, help="crystals sampled from the split's train set")
    parser.add_argument("--val", type=int, default=100, help="from its val set (alignn's trainer keeps the best epoch on them)")
    parser.add_argument("--test", type=int, default=50, help="from its id_test set (alignn's test set, and the check)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples")
    parser.add_argument("--out", type=Path, default=HERE / "run")
    args = parser.parse_args()

    from matprobe.config import layout_for, load_config
    from matprobe.inputs.data import load_materials
    from matprobe.prepare.splits import load_split

    split_path = args.split or workflow_split(CONFIG)
    split = load_split(split_path)
    if split.omitted_elements != ["O"]:
        raise SystemExit(f"{split_path}: the split omits {split.omitted_elements}; config.yaml probes omit-O")
    materials = load_materials(REPO / layout_for(load_config(CONFIG)).materials.format(dataset=DATASET))
    sets = sampled_sets(split, {"train": args.train, "val": args.val, "id_test": args.test}, args.seed)
    print(f"split {split.name}: {', '.join(f'{len(sets[n])} of {len(split.sets[n])} {n}' for n in sets)} crystals", flush=True)
    crystals = write_dataset(args.out / "dataset", sets, materials)
    checkpoint = train(args.out, sets, args.epochs)
    check(checkpoint, crystals, sets["id_test"])
    print("probe it: snakemake --cores all --configfile docs/examples/alignn_demo/config.yaml")


if __name__ == "__main__":
    main()
