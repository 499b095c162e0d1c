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

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.data import load_materials, target_columns
from matprobe.features import element_properties
from matprobe.io import write_json, write_parquet
from matprobe.sets import SETS

log = logging.getLogger("matprobe.splits")

CONTROL_SUFFIX = "-control"


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def split_key(options: dict) -> str:
    """Folder name for one set of split settings: splits drawn with another seed or other fractions are other
    files, so that two studies of one dataset share their splits only when they are the same."""
    return f"seed{int(options['seed'])}-val{float(options['val_fraction']):g}-test{float(options['id_test_fraction']):g}"


def split_name(definition: dict) -> str:
    if "omit" in definition:
        return "omit-" + "-".join(_as_list(definition["omit"]))
    if "omit_group" in definition:
        return f"omit-group{definition['omit_group']}"
    if "omit_period" in definition:
        return f"omit-period{definition['omit_period']}"
    if definition.get("random"):
        return "random"
    raise MatprobeError(f"config: splits: cannot name split {definition}")


def split_names(definitions: list[dict], controls: bool = True) -> list[str]:
    names = []
    for definition in definitions:
        name = split_name(definition)
        names.append(name)
        if controls and name != "random":
            names.append(name + CONTROL_SUFFIX)
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise MatprobeError(f"config: splits: {sorted(duplicates)} defined twice")
    return names


def split_base(name: str) -> tuple[str, bool]:
    """(the split a name derives from, whether it is that split's control): ("omit-Fe", True) for omit-Fe-control."""
    is_control = name.endswith(CONTROL_SUFFIX)
    return name.removesuffix(CONTROL_SUFFIX), is_control


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
    omitted = omitted_elements(definition)
    ids = materials["id"].to_numpy()
    elements = materials["elements"]
    has_omitted = np.array([bool(set(e) & set(omitted)) for e in elements], dtype=bool)
    seed = int(options["seed"])
    val_fraction, test_fraction = options["val_fraction"], options["id_test_fraction"]

    if omitted:
        present = {s: int(sum(s in set(e) for e in elements)) for s in omitted}
        if sum(present.values()) == 0:
            label = omitted[0] if len(omitted) == 1 else name
            raise MatprobeError(f"split {name}: element {label} is absent from the dataset (0 of {len(ids)} materials contain it)")
        n_ood = int(has_omitted.sum())
        if n_ood < options["min_ood"]:
            raise MatprobeError(
                f"split {name}: only {n_ood} materials contain {'/'.join(s for s in omitted if present[s])} "
                f"(split_options.min_ood is {options['min_ood']})"
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
            # a different stream than the omission split's, so the two share no accidental structure
            control_rng = np.random.default_rng([seed, 1])
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
        "sets": sets,
        "counts": {key: len(value) for key, value in sets.items()},
    }
    check_split(split, materials)
    return split


def check_split(split: dict, materials: pd.DataFrame) -> None:
    """The invariants every split must keep; each failure is one line naming the split."""
    name, sets, omitted = split["name"], split["sets"], set(split["omitted_elements"])
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
    needed = ("train", "val", "id_test") + (("ood_test",) if split["kind"] != "random" else ())
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
    import json

    materials = load_materials(materials_path)
    targets = target_columns(materials)
    indexed = materials.set_index("id")
    rows = []
    for path in split_paths:
        split = json.loads(Path(path).read_text())
        for set_name, members in split["sets"].items():
            subset = indexed.loc[members]
            row = {"split": split["name"], "kind": split["kind"], "set": set_name, "n": len(members)}
            omitted = split["omitted_elements"]
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
