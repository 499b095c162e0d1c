"""Element-omission splits: train without element X, test in distribution (ID) and on every material
that contains X (OOD). Beside each omission split, a size-matched random control, so that an ID/OOD
gap cannot be a data-size effect; and plain random splits.

Split kinds and their sets:
- omission (`omit-Fe`, `omit-Fe-O`, `omit-group16`, `omit-period4`): train, val and id_test are drawn from
  the materials without the omitted chemistry; ood_test is every material that has it.
- control (`omit-Fe-control`): train has exactly the omission split's train size, drawn from all
  materials; val likewise; ood_test holds the held-out materials that contain the omitted chemistry
  (which the control *did* see in training) and id_test the held-out ones without it, each capped at the
  omission split's sizes. The control's OOD error is the baseline an omission's OOD error is judged by.
- random (`random`): train, val and id_test from all materials; no ood_test.
Everything is a function of the seed and the materials table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.inputs.data import load_materials, target_columns
from matprobe.inputs.features import element_properties
from matprobe.io import write_json, write_parquet
from matprobe.prepare.sets import SETS

log = logging.getLogger("matprobe.prepare.splits")

CONTROL_SUFFIX = "-control"


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def split_name(definition: dict) -> str:
    if isinstance(definition.get("published"), str):  # made concrete for one dataset by dataset_splits
        return f"file-{definition['published']}"
    if "ids_file" in definition:
        return "file-" + str(definition.get("name") or Path(definition["ids_file"]).name.split(".")[0])
    if "omit" in definition:
        return "omit-" + "-".join(_as_list(definition["omit"]))
    if "omit_group" in definition:
        return f"omit-group{definition['omit_group']}"
    if "omit_period" in definition:
        return f"omit-period{definition['omit_period']}"
    if definition.get("random"):
        return "random"
    raise MatprobeError(f"config: splits: cannot name split {definition}")


def has_control(definition: dict) -> bool:
    """Omissions get a size-matched control; random splits and splits read from a file do not."""
    return not (definition.get("random") or "ids_file" in definition or "published" in definition)


def dataset_splits(config: dict, dataset: str) -> list[dict]:
    """A dataset's split definitions: the config's, with {published: true} made the dataset's own published split
    (file-{dataset}, read from its one file per set) or left out where the dataset is not given as one file per set."""
    spec = config["datasets"][dataset]
    definitions = []
    for definition in config["splits"]:
        if definition.get("published") is True:
            if spec.get("sets"):
                definitions.append({"published": dataset, "dataset": spec})
        else:
            definitions.append(definition)
    return definitions


def split_names(definitions: list[dict], controls: bool = True) -> list[str]:
    names = []
    for definition in definitions:
        name = split_name(definition)
        names.append(name)
        if controls and has_control(definition):
            names.append(name + CONTROL_SUFFIX)
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise MatprobeError(f"config: splits: {sorted(duplicates)} defined twice")
    return names


def split_kind(name: str) -> str:
    """omission, control, random or file (read from an ids file), from a split's name."""
    base, is_control = split_base(name)
    if is_control:
        return "control"
    return "random" if base == "random" else ("file" if base.startswith("file-") else "omission")


def split_base(name: str) -> tuple[str, bool]:
    """(the split a name derives from, whether it is that split's control): ("omit-Fe", True) for omit-Fe-control."""
    is_control = name.endswith(CONTROL_SUFFIX)
    return name.removesuffix(CONTROL_SUFFIX), is_control


# ---- sweeps over the periodic table --------------------------------------------------------------------------------


def is_sweep(definition: dict) -> bool:
    return "omit_each" in definition


def expand_sweeps(definitions: list[dict], elements: pd.Series, min_ood: int) -> list[dict]:
    """The concrete splits of a dataset: each `{omit_each: element | group | period}` becomes one omission per
    element (group, period) that at least `min_ood` (the sweep's own, else split_options.min_ood) materials contain
    and that leaves at least `min_left` (default 500) materials to train, validate and test on, restricted by `only`
    and `exclude`; other definitions stay as they are. `elements`: each material's element symbols (the materials
    table's column). A name that two definitions give (a sweep and an explicit split of the same element) is kept once."""
    props = element_properties()
    present = [set(e) for e in elements]
    concrete, names = [], set()
    for definition in definitions:
        if not is_sweep(definition):
            candidates = [definition]
        else:
            kind, threshold = definition["omit_each"], definition.get("min_ood", min_ood)
            left = definition.get("min_left", 500)
            if kind == "element":
                units = [(symbol, {symbol}) for symbol in sorted(set().union(*present), key=lambda x: props.index[props["symbol"] == x][0])]
            else:
                units = [(int(value), set(props.loc[props[kind] == value, "symbol"])) for value in sorted(props[kind].unique())]
            only, exclude = definition.get("only"), set(definition.get("exclude", []))
            candidates = []
            for unit, members in units:
                if (only is not None and unit not in only) or unit in exclude:
                    continue
                count = sum(bool(members & material) for material in present)
                if count >= threshold and len(present) - count >= left:
                    # the sweep's own min_ood goes with each split, so that the split job applies the same threshold
                    candidates.append({"omit": unit, "min_ood": threshold} if kind == "element" else {f"omit_{kind}": unit, "min_ood": threshold})
        for candidate in candidates:
            name = split_name(candidate)
            if name not in names:
                names.add(name)
                concrete.append(candidate)
    return concrete


@dataclass(frozen=True)
class Split:
    """A split file as every stage reads it. `omitted_elements` is data written by the split job from the definition,
    never parsed back from the name; `held_out` is what the split holds out (empty for random and file splits)."""

    name: str
    kind: str  # omission, control, random, file
    definition: dict
    omitted_elements: list[str]
    sets: dict[str, list[str]]  # set name -> ids
    counts: dict = field(default_factory=dict)
    seed: int | None = None

    @property
    def held_out(self) -> list[str]:
        return self.omitted_elements if self.kind != "random" else []


def load_split(path) -> Split:
    """A split file written by the split job; a truncated or foreign one is one line naming it."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict) or not isinstance(stored.get("sets"), dict):
            raise ValueError("no `sets`")
        return Split(stored["name"], stored["kind"], stored.get("definition") or {}, list(stored.get("omitted_elements") or []),
                     stored["sets"], stored.get("counts") or {}, stored.get("seed"))
    except (OSError, ValueError, KeyError) as exc:
        raise MatprobeError(f"{path}: not a readable split file ({type(exc).__name__}: {str(exc).splitlines()[0][:80]}); "
                            "delete it and run `snakemake splits` to make it again") from None


# ---- splits read from a file ---------------------------------------------------------------------------------------


# Other names of a set in published splits: CDVAE's and Matbench's `test` is this workflow's id_test.
SET_ALIASES = {"test": "id_test"}


def _load_ids_file(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The id lists of an ids file by set, aliases renamed, and the problems of its set names (one line each)."""
    if not path.exists():
        raise MatprobeError(f"{path}: split ids file not found")
    try:
        if path.suffix.lower() == ".json":
            sets = {str(k): [str(i) for i in v] for k, v in json.loads(path.read_text()).items()}
        else:
            table = pd.read_csv(path, dtype=str)
            missing = {"id", "set"} - set(table.columns)
            if missing:
                raise MatprobeError(f"{path}: needs columns id and set (has {list(table.columns)})")
            sets = {name: group["id"].str.strip().tolist() for name, group in table.groupby("set", sort=False)}
    except MatprobeError:
        raise
    except (ValueError, AttributeError, TypeError) as exc:
        raise MatprobeError(f"{path}: not a split ids file ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})") from None
    problems = []
    for alias, name in SET_ALIASES.items():
        if alias in sets and name in sets:
            problems.append(f"{path}: sets {alias} and {name} are both given, but {alias} is another name of {name}; keep one")
        elif alias in sets:
            sets[name] = sets.pop(alias)
    unknown_sets = sorted(set(sets) - set(SETS) - set(SET_ALIASES))
    if unknown_sets:
        problems.append(f"{path}: unknown set(s) {unknown_sets}; the sets are {list(SETS)} "
                        f"({', '.join(f'{a} is read as {n}' for a, n in SET_ALIASES.items())})")
    for needed in ("train", "val", "id_test"):
        if not sets.get(needed):
            problems.append(f"{path}: set {needed} is missing or empty")
    return sets, problems


def _raise_problems(problems: list[str]) -> None:
    if problems:
        raise MatprobeError("\n".join(problems[:20]) + (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""))


def check_ids_file(path) -> None:
    """At planning time, before the data stage: the file exists and names its sets as read_ids_file reads them (its
    ids are checked against the materials table when the split is made)."""
    _raise_problems(_load_ids_file(Path(path))[1])


def read_ids_file(path, known_ids: set[str]) -> dict[str, list[str]]:
    """train/val/id_test(/ood_test) id lists from a JSON file ({"train": [...], ...}) or a CSV with columns id and
    set (`test` is read as id_test); every problem is reported, one line each: unknown ids, ids in two sets, missing
    or unknown sets."""
    path = Path(path)
    sets, problems = _load_ids_file(path)
    seen: dict[str, str] = {}
    for set_name, ids in sets.items():
        stray = [i for i in ids if i not in known_ids]
        if stray:
            problems.append(f"{path}: {len(stray)} {set_name} id(s) are not in the materials table (e.g. {stray[0]})")
        for crystal_id in ids:
            if crystal_id in seen and seen[crystal_id] != set_name:
                problems.append(f"{path}: id {crystal_id} is in both {seen[crystal_id]} and {set_name}")
            seen[crystal_id] = set_name
    _raise_problems(problems)
    return {name: sorted(set(ids)) for name, ids in sets.items() if name in SETS}


def published_split(definition: dict, known_ids: set[str]) -> dict[str, list[str]]:
    """The sets of a dataset given one file per set, as its files hold them; a crystal the data stage rejected is left
    out (and counted in the log), an id in two files is an error naming both sets."""
    from matprobe.inputs.sources import published_sets

    dataset = definition["published"]
    sets = published_sets(definition["dataset"])
    problems, seen = [], {}
    for set_name, ids in sets.items():
        for crystal_id in ids:
            if crystal_id in seen and seen[crystal_id] != set_name:
                problems.append(f"datasets.{dataset}.sets: id {crystal_id} is in both {seen[crystal_id]} and {set_name}")
            seen[crystal_id] = set_name
    _raise_problems(problems)
    kept = {name: sorted(set(ids) & known_ids) for name, ids in sets.items()}
    for name, ids in sets.items():
        if len(kept[name]) < len(set(ids)):
            log.info("split file-%s: %d of %d %s crystals are not in the materials table (rejected by the data stage)",
                     dataset, len(set(ids)) - len(kept[name]), len(set(ids)), name)
    return kept


def cgcnn_split(ids: list[str], seed: int = 123, val_ratio: float = 0.1, test_ratio: float = 0.1) -> dict[str, list[str]]:
    """The split CGCNN's own code (Xie & Grossman, txie-93/cgcnn) makes of an id_prop.csv: its rows shuffled by
    Python's `random` seeded with `seed` (its default 123), then the first 1 - val - test of them for training, the
    last `test_ratio` for testing and the `val_ratio` before those for validation (each size rounded down). Written
    as an ids file (`{"train": ..., "val": ..., "id_test": ...}`), it lets this workflow train on exactly that split."""
    import random

    shuffled = list(ids)
    random.seed(seed)
    random.shuffle(shuffled)
    total = len(shuffled)
    train, val, test = int((1 - val_ratio - test_ratio) * total), int(val_ratio * total), int(test_ratio * total)
    return {"train": shuffled[:train], "val": shuffled[total - val - test : total - test], "id_test": shuffled[total - test :]}


def definition_for(name: str, definitions: list[dict]) -> tuple[dict, bool]:
    """(definition, is_control) for a split name produced by `split_names`."""
    base, is_control = split_base(name)
    for definition in definitions:
        if split_name(definition) == base:
            return definition, is_control
    raise MatprobeError(f"split {name!r} is not defined in config `splits`")


def omitted_elements(definition: dict) -> list[str]:
    """The element symbols a definition leaves out of training (empty for random)."""
    props = element_properties()
    if "omit" in definition:
        symbols = _as_list(definition["omit"])
        unknown = [s for s in symbols if s not in set(props["symbol"])]
        if unknown:
            raise MatprobeError(f"config: splits: {unknown} is not an element symbol")
        return symbols
    if "omit_group" in definition:
        return props.loc[props["group"] == definition["omit_group"], "symbol"].tolist()
    if "omit_period" in definition:
        return props.loc[props["period"] == definition["omit_period"], "symbol"].tolist()
    return []


def _sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    return int(round(n * val_fraction)), int(round(n * test_fraction))


def make_split(materials: pd.DataFrame, name: str, definitions: list[dict], options: dict) -> dict:
    """The sets of one split as lists of ids, with its definition; checked before it is returned."""
    definition, is_control = definition_for(name, definitions)
    if "ids_file" in definition or "published" in definition:
        known = set(materials["id"])
        sets = read_ids_file(definition["ids_file"], known) if "ids_file" in definition else published_split(definition, known)
        split = {"name": name, "kind": "file", "definition": definition, "omitted_elements": [], "seed": None, "sets": sets,
                 "counts": {key: len(value) for key, value in sets.items()}}
        check_split(split, materials)
        return split
    omitted = omitted_elements(definition)
    ids = materials["id"].to_numpy()
    elements = materials["elements"]
    has_omitted = np.array([bool(set(e) & set(omitted)) for e in elements], dtype=bool)
    seed, draw = int(options["seed"]), int(options.get("draw", 0))
    val_fraction, test_fraction = options["val_fraction"], options["id_test_fraction"]

    if omitted:
        present = {s: int(sum(s in set(e) for e in elements)) for s in omitted}
        if sum(present.values()) == 0:
            label = omitted[0] if len(omitted) == 1 else name
            raise MatprobeError(f"split {name}: element {label} is absent from the dataset (0 of {len(ids)} materials contain it)")
        absent = [s for s in omitted if not present[s]]
        if "omit" in definition and absent:  # a named element that no material holds would name the split falsely
            raise MatprobeError(f"split {name}: element {absent[0]} is absent from the dataset (0 of {len(ids)} materials "
                                f"contain it); leave it out of `omit`")
        n_ood = int(has_omitted.sum())
        min_ood = definition.get("min_ood", options["min_ood"])
        if n_ood < min_ood:
            raise MatprobeError(
                f"split {name}: only {n_ood} materials contain {'/'.join(s for s in omitted if present[s])} "
                f"(min_ood is {min_ood})"
            )

    rng = np.random.default_rng(seed)
    if not omitted:  # random
        order = rng.permutation(len(ids))
        n_val, n_test = _sizes(len(ids), val_fraction, test_fraction)
        sets = {"val": ids[order[:n_val]], "id_test": ids[order[n_val : n_val + n_test]], "train": ids[order[n_val + n_test :]]}
    else:
        in_dist = np.flatnonzero(~has_omitted)
        order = in_dist[rng.permutation(in_dist.size)]
        n_val, n_test = _sizes(in_dist.size, val_fraction, test_fraction)
        omission = {
            "val": ids[order[:n_val]],
            "id_test": ids[order[n_val : n_val + n_test]],
            "train": ids[order[n_val + n_test :]],
            "ood_test": ids[has_omitted],
        }
        if not is_control:
            sets = omission
        else:
            # a different stream than the omission split's, so the two share no accidental structure; draw 0 is the
            # stream every control had before controls could be redrawn, so that its files stay the same
            control_rng = np.random.default_rng([seed, 1] if draw == 0 else [seed, 1, draw])
            order = control_rng.permutation(len(ids))
            n_train = len(omission["train"])
            train, val, rest = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
            held_with, held_without = rest[has_omitted[rest]], rest[~has_omitted[rest]]
            sets = {
                "train": ids[train],
                "val": ids[val],
                "id_test": ids[held_without[: len(omission["id_test"])]],
                "ood_test": ids[held_with[: len(omission["ood_test"])]],
            }
    sets = {key: sorted(map(str, sets[key])) for key in SETS if key in sets}
    split = {
        "name": name,
        "kind": "control" if is_control else ("omission" if omitted else "random"),
        "definition": definition,
        "omitted_elements": omitted,
        "seed": seed,
        **({"draw": draw} if is_control and omitted and draw else {}),
        "sets": sets,
        "counts": {key: len(value) for key, value in sets.items()},
    }
    check_split(split, materials)
    return split


def check_split(split: dict, materials: pd.DataFrame) -> None:
    """The invariants every split must keep; each failure is one line naming the split (and a control's draw)."""
    name, sets, omitted = split["name"], split["sets"], set(split["omitted_elements"])
    if split.get("draw"):
        name = f"{name} (draw {split['draw']})"
    seen: dict[str, str] = {}
    for set_name, members in sets.items():
        for member in members:
            if member in seen:
                raise MatprobeError(f"split {name}: id {member} is in both {seen[member]} and {set_name}")
            seen[member] = set_name
    known = set(materials["id"])
    stray = [m for m in seen if m not in known]
    if stray:
        raise MatprobeError(f"split {name}: {len(stray)} ids are not in the materials table (e.g. {stray[0]})")
    # every set the later stages evaluate must hold crystals: found here, not after a model has trained
    needed = ("train", "val", "id_test") + (("ood_test",) if split["kind"] in ("omission", "control") else ())
    for set_name in needed:
        if not sets.get(set_name):
            raise MatprobeError(f"split {name}: its {set_name} set is empty ({len(known)} materials; "
                                f"{', '.join(f'{k} {len(v)}' for k, v in sets.items())}); use more materials or larger fractions")
    if not omitted:
        return
    elements = dict(zip(materials["id"], materials["elements"]))
    guarded = ("train", "val", "id_test") if split["kind"] == "omission" else ("id_test",)
    for set_name in guarded:
        for member in sets.get(set_name, []):
            found = omitted & set(elements[member])
            if found:
                raise MatprobeError(f"split {name}: {set_name} holds {member}, which contains omitted {sorted(found)[0]}")
    for member in sets.get("ood_test", []):
        if not omitted & set(elements[member]):
            raise MatprobeError(f"split {name}: ood_test holds {member}, which contains none of {sorted(omitted)}")


def write_split(materials_path: str | Path, name: str, definitions: list[dict], options: dict, out_path: str | Path) -> dict:
    materials = load_materials(materials_path, columns=["id", "elements"])
    split = make_split(materials, name, definitions, options)
    write_json(split, out_path)
    log.info("split %s: %s", name, split["counts"])
    return split


def split_stats(materials_path: str | Path, split_paths: list[str | Path], out_path: str | Path) -> pd.DataFrame:
    """Per split and set: count, how many contain each omitted element, mean and std of each target."""

    materials = load_materials(materials_path)
    targets = target_columns(materials)
    indexed = materials.set_index("id")
    rows = []
    for path in split_paths:
        split = load_split(path)
        for set_name, members in split.sets.items():
            subset = indexed.loc[members]
            row = {"split": split.name, "kind": split.kind, "set": set_name, "n": len(members)}
            omitted = split.omitted_elements
            row["omitted"] = "-".join(omitted) if len(omitted) <= 3 else f"{len(omitted)} elements"
            row["n_with_omitted"] = int(sum(bool(set(e) & set(omitted)) for e in subset["elements"])) if omitted else 0
            if len(omitted) <= 3:  # named elements get a column each; whole groups and periods only the total
                for element in omitted:
                    row[f"n_with_{element}"] = int(sum(element in e for e in subset["elements"]))
            for target in targets:
                row[f"{target}_mean"] = float(subset[target].mean())
                row[f"{target}_std"] = float(subset[target].std())
                row[f"{target}_n"] = int(subset[target].notna().sum())
            rows.append(row)
    frame = pd.DataFrame(rows)
    write_parquet(frame, out_path)
    return frame
