"""Data stage: parse, check and normalise any source into results/data/{dataset}/materials.parquet.

The table is the contract every later stage reads: one row per accepted crystal with `id`, `formula`,
`reduced_formula`, `elements`, `nsites`, `volume`, one float column per target (NaN where missing), and the
structure as `lattice` (9 floats, rows are lattice vectors), `frac_coords` (3n floats) and `numbers`.
Beside it, rejected.parquet (id, reason, detail) and summary.json."""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.inputs.download import record_checksum, sha256_of, verify
from matprobe.io import write_json, write_parquet
from matprobe.parallel import parallel_map
from matprobe.inputs.sources import RawRecord, iter_records, local_inputs, remote_files, resolve_targets
from matprobe.inputs.structures import (
    DUPLICATE_ID,
    EMPTY_ID,
    UNSUPPORTED_ELEMENT,
    UNPARSABLE,
    Crystal,
    RejectedStructure,
    check_crystal,
    crystal_from_arrays,
    parse_cif,
    parse_poscar,
    parse_structure_any,
    parse_structure_dict,
)

log = logging.getLogger("matprobe.inputs.data")

STRUCTURE_COLUMNS = ["lattice", "frac_coords", "numbers"]


# How a source writes "no value" (JARVIS: "na"): read as missing, not as a bad value.
MISSING_MARKERS = {"", "na", "n/a", "nan", "none", "null"}
NOT_A_NUMBER, NOT_FINITE, OUT_OF_RANGE = "not_a_number", "not_finite", "out_of_range"
# The largest target value a model can be trained and scored on: models compute in float32, and the target's spread
# and the squared errors of the metrics square it (float32 holds up to 3.4e38, so up to its square root, 1.8e19).
LARGEST_TARGET = float(np.sqrt(np.finfo(np.float32).max))


def target_value(value) -> tuple[float, str | None]:
    """(the value as a float, None), (NaN, None) where it is missing, or (NaN, why it was refused): text that is
    not a number ("abc", a comma decimal "1,5" is not guessed at), an infinite value, or one too large for a float32
    model (|x| > LARGEST_TARGET: 1e39 would be infinite in the model, 1e30 would overflow its squared errors)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_MARKERS):
        return math.nan, None
    if isinstance(value, bool):
        return math.nan, NOT_A_NUMBER
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan, NOT_A_NUMBER
    if math.isnan(number):
        return math.nan, None
    if not math.isfinite(number):
        return math.nan, NOT_FINITE
    return (number, None) if abs(number) <= LARGEST_TARGET else (math.nan, OUT_OF_RANGE)


def _parse(record: RawRecord) -> Crystal:
    kind, payload = record.kind, record.payload
    if kind == "cif":
        return parse_cif(payload)
    if kind == "poscar":
        return parse_poscar(payload)
    if kind == "dict":
        return parse_structure_dict(payload)
    if kind == "any":
        return parse_structure_any(payload)
    if kind == "arrays":
        lattice, coords, species, cartesian = payload
        if lattice is None or coords is None or species is None:
            raise RejectedStructure(UNPARSABLE, "entry has no atoms")
        return crystal_from_arrays(lattice, coords, species, cartesian)
    if kind == "crystal":
        return Crystal.from_row(payload)
    if kind == "missing":
        raise RejectedStructure(UNPARSABLE, payload)
    raise ValueError(f"unknown record kind {kind}")


_SYMBOLS: list[str] = []


def _symbol(z: int) -> str:
    if not _SYMBOLS:
        from pymatgen.core.periodic_table import Element

        _SYMBOLS.extend([""] + [Element.from_Z(i).symbol for i in range(1, 119)])
    return _SYMBOLS[z]


def _formulas(numbers: np.ndarray) -> tuple[str, str, list[str]]:
    from pymatgen.core import Composition

    import warnings

    counts = Counter(_symbol(int(z)) for z in numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noble gases have no electronegativity; formula order falls back quietly
        composition = Composition(counts)
        return composition.formula, composition.reduced_formula, sorted(counts)


def normalise_record(record: RawRecord, min_distance: float) -> tuple[dict | None, dict | None, list[dict]]:
    """(row, None, refused values) for an accepted record, (None, rejection, []) otherwise. A target value that is
    not a number leaves the crystal in the table with that target missing, and is reported. Runs in worker processes."""
    try:
        crystal = check_crystal(_parse(record), min_distance)
    except RejectedStructure as exc:
        return None, {"id": record.id, "reason": exc.reason, "detail": exc.detail}, []
    formula, reduced, elements = _formulas(crystal.numbers)
    row = {
        "id": record.id,
        "formula": formula,
        "reduced_formula": reduced,
        "elements": elements,
        "nsites": crystal.nsites,
        "volume": crystal.volume,
    }
    refused = []
    for name, raw in record.targets.items():
        row[name], problem = target_value(raw)
        if problem:
            refused.append({"target": name, "reason": problem, "id": record.id, "value": repr(raw)[:40]})
    row.update(crystal.to_row())
    return row, None, refused


def _normalise_star(args):
    return normalise_record(*args)


def normalise_records(records: Iterable[RawRecord], min_distance: float, threads: int = 1, progress: bool = True):
    """Parse and check records in `threads` processes; first occurrence of an id wins."""
    from tqdm import tqdm

    seen: set[str] = set()
    duplicates: list[dict] = []

    def unique(records):
        for position, record in enumerate(records, start=1):
            if not record.id:  # an empty id cannot be put in a split or matched to a label: counted, never invented
                duplicates.append({"id": "", "reason": EMPTY_ID, "detail": f"entry {position} of the source has no id"})
                continue
            if record.id in seen:
                duplicates.append({"id": record.id, "reason": DUPLICATE_ID, "detail": "id seen earlier in the source"})
                continue
            seen.add(record.id)
            yield record

    work = ((record, min_distance) for record in unique(records))
    accepted, rejected, refused = [], [], []
    bar = tqdm(desc="normalise", unit="crystal", disable=not progress, mininterval=2.0)
    for row, rejection, refused_values in parallel_map(_normalise_star, work, threads, chunksize=64):
        (accepted.append(row) if row is not None else rejected.append(rejection))
        refused += refused_values
        bar.update()
    bar.close()
    return accepted, rejected + duplicates, refused


def refused_value_counts(refused: list[dict]) -> dict:
    """Per target and reason: how many values were refused, and the first as an example (id and value)."""
    counts: dict = {}
    for item in refused:
        entry = counts.setdefault(item["target"], {}).setdefault(item["reason"], {"count": 0, "example": f"{item['id']}: {item['value']}"})
        entry["count"] += 1
    return counts


def portable_keys(checksums: dict[Path, str], source: str, workdir: str | Path | None = None) -> dict[str, str]:
    """The input checksums of summary.json keyed by names that mean the same on any machine: a file under the
    workflow's working directory by its path relative to it, any other (matprobe's own embedded table, a download
    cache elsewhere) by `{source}:{file name}`, with as many parent folders as tell two such files apart."""
    workdir = Path(workdir if workdir is not None else Path.cwd()).resolve()
    package = Path(__file__).resolve().parent.parent
    keys, outside = {}, {}
    for path, checksum in checksums.items():
        # as written (a symlinked data folder keeps the name it has in the config), else with links followed
        candidates = (Path(os.path.abspath(workdir / path)), (workdir / path).resolve())
        inside = [c for c in candidates if c.is_relative_to(workdir) and not c.is_relative_to(package)]
        if inside:
            keys[inside[0].relative_to(workdir).as_posix()] = checksum
        else:  # matprobe's own files count as outside even in a checkout that is also the working directory
            outside[candidates[1]] = checksum
    depth = 1
    while len({path.parts[-depth:] for path in outside}) < len(outside):
        depth += 1
    keys.update({f"{source}:{'/'.join(path.parts[-depth:])}": checksum for path, checksum in outside.items()})
    return keys


def normalise_dataset(
    name: str,
    spec: dict,
    input_files: list[str | Path],
    out_table: str | Path,
    out_rejected: str | Path,
    out_summary: str | Path,
    min_distance: float = 0.5,
    threads: int = 1,
) -> dict:
    """Normalise one configured dataset and write its table, rejections and summary (all atomic).

    Downloaded files are checked against their pinned or recorded checksum before they are read, wherever they came
    from; a file without either gets its checksum recorded once it has been read completely."""
    started = time.perf_counter()
    targets = list(resolve_targets(spec))
    pinned = {remote.filename: remote.sha256 for remote in remote_files(spec)}
    downloads = {Path(p): pinned.get(Path(p).name) for p in input_files}
    checksums = {path: verify(path, sha256) for path, sha256 in downloads.items()}
    records = iter_records(spec, list(downloads), name)
    if spec.get("limit"):
        records = itertools.islice(records, spec["limit"])
    accepted, rejected, refused = normalise_records(records, min_distance, threads)
    n_read = len(accepted) + len(rejected)
    if not accepted:
        reasons = Counter(r["reason"] for r in rejected).most_common(3)
        raise MatprobeError(f"dataset {name}: nothing accepted out of {n_read} entries (most common reasons: {reasons})")

    table = pd.DataFrame(accepted)
    columns = ["id", "formula", "reduced_formula", "elements", "nsites", "volume", *targets, *STRUCTURE_COLUMNS]
    table = table[columns].astype({t: "float64" for t in targets})
    rejected_frame = pd.DataFrame(rejected, columns=["id", "reason", "detail"])

    element_counts = Counter(itertools.chain.from_iterable(table["elements"]))
    summary = {
        "dataset": name,
        "source": spec["source"],
        # provenance, and a way to tell a re-copied file (newer, so Snakemake plans a re-run) from a changed one
        "input_sha256": portable_keys({**checksums, **{Path(path): sha256_of(path) for path in local_inputs(spec)
                                                       if Path(path).is_file()}}, spec["source"]),
        "read": n_read,
        "accepted": len(table),
        "rejected": len(rejected_frame),
        "rejected_by_reason": dict(Counter(rejected_frame["reason"]).most_common()),
        "targets": {t: int(table[t].notna().sum()) for t in targets},
        # values that were there but are not numbers: the crystal stays, without that target
        "target_values_refused": refused_value_counts(refused),
        "elements": dict(sorted(element_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "seconds": round(time.perf_counter() - started, 2),
    }
    for path, checksum in checksums.items():  # read completely: a first download's checksum may now be trusted
        record_checksum(path, downloads[path], checksum)
    write_parquet(table, out_table)
    write_parquet(rejected_frame, out_rejected)
    write_json(summary, out_summary)
    log.info("dataset %s: %d read, %d accepted, rejected %s", name, n_read, len(table), summary["rejected_by_reason"])
    for reason, advice in ((EMPTY_ID, "give every entry an id"), (UNSUPPORTED_ELEMENT, "such crystals cannot be featurised")):
        skipped = rejected_frame[rejected_frame["reason"] == reason]
        if len(skipped):
            example = skipped.iloc[0]
            log.warning("dataset %s: %d crystals skipped as %s (e.g. %s%s); %s", name, len(skipped), reason.replace("_", " "),
                        f"{example['id']}: " if example["id"] else "", example["detail"], advice)
    for target, reasons in summary["target_values_refused"].items():
        for reason, entry in reasons.items():
            log.warning("dataset %s: %d %s values refused as %s (e.g. %s); those crystals have no %s", name, entry["count"],
                        target, reason.replace("_", " "), entry["example"], target)
    return summary


def load_materials(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a normalised materials.parquet; a missing or foreign file is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise MatprobeError(f"{path}: materials table not found (run `snakemake data` first)")
    try:
        table = pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises many kinds for a truncated or foreign file
        raise MatprobeError(f"{path}: not a readable materials table ({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); "
                            "delete it and run `snakemake data` to rebuild it") from None
    missing = {"id", *STRUCTURE_COLUMNS} - set(table.columns) if columns is None else set()
    if missing:
        raise MatprobeError(f"{path}: not a matprobe materials table (missing {sorted(missing)})")
    return table


def target_columns(table: pd.DataFrame) -> list[str]:
    fixed = {"id", "formula", "reduced_formula", "elements", "nsites", "volume", *STRUCTURE_COLUMNS}
    return [c for c in table.columns if c not in fixed]
