"""Dataset sources. Each turns a `datasets:` entry of the config into raw records
(id, structure payload, target values) that `matprobe.inputs.data` parses, checks and normalises.

A source also declares the remote files it needs (`remote_files`), so that the workflow can download
them in a rule of their own, before normalisation, and so that a mirror can be pre-staged."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import math
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


from matprobe import MatprobeError

log = logging.getLogger("matprobe.inputs.sources")

EMBEDDED_FILE = Path(__file__).resolve().parent.parent / "resources" / "flla_2015.parquet"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str | None = None  # None: the checksum of the first download is recorded and enforced after


@dataclass
class RawRecord:
    id: str
    kind: str  # how `payload` is parsed: cif, poscar, dict, any, arrays, crystal
    payload: Any
    targets: dict[str, Any] = field(default_factory=dict)


def _no_files(spec: dict) -> list[RemoteFile]:
    return []


def record_id(value) -> str:
    """An id as text, exactly as the source wrote it ("0010" stays "0010"; spaces around it dropped); a missing id
    (None, NaN) is the empty id, which the data stage counts as a rejection."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


# ---- embedded: the flla_2015 set shipped inside the package --------------------------------------


def read_embedded(spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    import pandas as pd

    frame = pd.read_parquet(EMBEDDED_FILE)
    _require_columns(EMBEDDED_FILE, frame.columns, targets)
    for row in frame.itertuples(index=False):
        payload = {"lattice": row.lattice, "frac_coords": row.frac_coords, "numbers": row.numbers}
        yield RawRecord(str(row.id), "crystal", payload, {t: getattr(row, c) for t, c in targets.items()})


# ---- cgcnn_dir: {id}.cif files and a header-less id_prop.csv, in a folder or a tar archive -------


class _CgcnnTree:
    """Uniform access to the files of a CGCNN dataset, whether unpacked or inside a .tar(.gz).

    In an archive, the dataset is the folder of its one `id_prop.csv`; structures are read from that folder only, so
    that a label is never paired with a CIF of the same name from elsewhere in the archive. An archive with two
    `id_prop.csv`, or with a member whose path leaves the archive (`../x`, `/x`), is refused; a truncated or
    corrupt one is one line naming it."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise MatprobeError(f"{path}: dataset path does not exist")
        self._tar = None
        self.prefix = ""
        if path.is_file():
            with self._reading():
                self._tar = tarfile.open(path)
                members = [m for m in self._tar.getmembers() if m.isfile()]
            escaping = [m.name for m in members if m.name.startswith("/") or ".." in Path(m.name).parts]
            if escaping:
                raise MatprobeError(f"{path}: member {escaping[0]!r} points outside the archive; refusing to read it")
            self._members = {m.name.removeprefix("./"): m for m in members}
            id_props = sorted(n for n in self._members if Path(n).name == "id_prop.csv")
            if not id_props:
                raise MatprobeError(f"{path}: archive holds no id_prop.csv")
            if len(id_props) > 1:
                raise MatprobeError(f"{path}: archive holds {len(id_props)} id_prop.csv ({', '.join(id_props[:3])}); "
                                    "keep one dataset per archive, or unpack it and give the folder as `path`")
            self.prefix = str(Path(id_props[0]).parent)

    @contextlib.contextmanager
    def _reading(self):
        """Turn the errors of a truncated or corrupt archive into one line naming it."""
        try:
            yield
        except (EOFError, OSError, tarfile.TarError, zlib.error) as exc:
            raise MatprobeError(f"{self.path}: truncated or corrupt archive ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else 'ends early'}); "
                                "replace it (a download: delete it to fetch it again)") from None

    def _name(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix not in ("", ".") else name

    def read_text(self, name: str) -> str | None:
        if self._tar is None:
            file = self.path / name
            # utf-8-sig: a byte-order mark would otherwise become part of the first id
            return file.read_text(encoding="utf-8-sig") if file.exists() else None
        member = self._members.get(self._name(name))
        if member is None:
            return None
        with self._reading():
            return self._tar.extractfile(member).read().decode("utf-8-sig")

    def iter_cifs(self, wanted: set[str]) -> Iterator[tuple[str, str]]:
        """(stem, CIF text) for the wanted stems, in archive order for tars (one sequential pass)."""
        if self._tar is None:
            for stem in wanted:
                file = self.path / f"{stem}.cif"
                if file.exists():
                    yield stem, file.read_text()
            return
        names = {self._name(f"{stem}.cif"): stem for stem in wanted}
        with self._reading():
            for member in self._tar:
                stem = names.get(member.name.removeprefix("./"))
                if stem is not None and member.isfile():
                    yield stem, self._tar.extractfile(member).read().decode()


def cgcnn_files(spec: dict) -> list[RemoteFile]:
    """A CGCNN archive named by `url` is downloaded like any other source (checksum recorded or pinned)."""
    if not spec.get("url"):
        return []
    return [RemoteFile(spec["url"], Path(spec["url"].split("?")[0]).name or "cgcnn.tar.gz", spec.get("sha256"))]


def read_cgcnn_dir(spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    path = Path(files[0]) if files else Path(spec["path"])
    tree = _CgcnnTree(path)
    id_prop_text = tree.read_text("id_prop.csv")
    if id_prop_text is None:
        raise MatprobeError(f"{path}: no id_prop.csv found")
    columns = spec.get("columns") or []
    _require_columns(f"{path}/id_prop.csv (columns: {columns})", columns, targets)
    index = {name: position + 1 for position, name in enumerate(columns)}

    id_map = {}
    if spec.get("id_map"):
        map_path = Path(spec["id_map"])
        text = map_path.read_text() if map_path.is_absolute() and map_path.exists() else tree.read_text(spec["id_map"])
        if text is None:
            raise MatprobeError(f"{path}: id map file {spec['id_map']} not found")
        id_map = {row[0].strip(): row[1].strip() for row in csv.reader(io.StringIO(text)) if len(row) >= 2}

    lines = []  # (stem, target values) in file order; a repeated stem stays, to be counted as a duplicate
    for line_number, row in enumerate(csv.reader(io.StringIO(id_prop_text)), start=1):
        if not row:
            continue
        if len(row) <= max(index.values(), default=0):
            raise MatprobeError(f"{path}/id_prop.csv: line {line_number} has {len(row)} columns, config names {len(columns)} after the id")
        lines.append((row[0].strip(), {t: row[index[c]] for t, c in targets.items()}))
    if spec.get("limit"):
        lines = lines[: spec["limit"]]
    cif_texts = dict(tree.iter_cifs({stem for stem, _ in lines}))
    for stem, values in lines:
        text = cif_texts.get(stem)
        crystal_id = id_map.get(stem, stem)
        if text is None:
            yield RawRecord(crystal_id, "missing", f"{stem}.cif not found in {path}", values)
        else:
            yield RawRecord(crystal_id, "cif", text, values)


# ---- downloaded JSON sources: JARVIS-DFT 3D, Matbench, MP 2018 -----------------------------------

JARVIS_RELEASES = {
    "2021": RemoteFile("https://ndownloader.figshare.com/files/29204826", "jdft_3d-8-18-2021.json.zip"),
    "2022": RemoteFile("https://ndownloader.figshare.com/files/38521619", "jdft_3d-12-12-2022.json.zip"),
}

MATBENCH_TASKS = {
    "matbench_mp_e_form": RemoteFile(
        "https://ml.materialsproject.org/projects/matbench_mp_e_form.json.gz",
        "matbench_mp_e_form.json.gz",
        "dedcb1d4ba2e3e50dbdd45ba5bc647a00e9c2bcf8f8bf556dc8e92caa39eb21f",
    ),
    "matbench_mp_gap": RemoteFile(
        "https://ml.materialsproject.org/projects/matbench_mp_gap.json.gz",
        "matbench_mp_gap.json.gz",
        "58b65746bd88329986ed66031a2ac1369c7c522f7bc9f9081528e07097c2c057",
    ),
}

MP_2018 = RemoteFile(
    "https://ndownloader.figshare.com/files/13309250",
    "mp_all_20181018.json.gz",
    "1f3de2dc7c68959647240921b841293fce918ea1708e6f3760ba35a9cdfe0500",
)


def _override(remote: RemoteFile, spec: dict) -> RemoteFile:
    return RemoteFile(spec.get("url", remote.url), remote.filename, spec.get("sha256", remote.sha256))


def jarvis_files(spec: dict) -> list[RemoteFile]:
    return [_override(JARVIS_RELEASES[str(spec.get("version", "2021"))], spec)]


def matbench_files(spec: dict) -> list[RemoteFile]:
    return [_override(MATBENCH_TASKS[spec["task"]], spec)]


def mp_2018_files(spec: dict) -> list[RemoteFile]:
    return [_override(MP_2018, spec)]


def _load_json_file(path: Path) -> Any:
    """JSON from a .json, .json.gz or a zip holding one .json (JARVIS ships `*.json.zip`)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".json")]
                if not names:
                    raise MatprobeError(f"{path}: zip archive holds no .json file")
                with zf.open(names[0]) as fh:
                    return json.load(fh)
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            return json.load(fh)
    except (OSError, ValueError, EOFError) as exc:
        raise MatprobeError(f"{path}: cannot read JSON ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def read_jarvis(spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    entries = _load_json_file(files[0])
    if not isinstance(entries, list) or not entries:
        raise MatprobeError(f"{files[0]}: expected a JSON list of JARVIS entries")
    _require_columns(files[0], set().union(*(e.keys() for e in entries[:100])), targets)
    for entry in entries[: spec.get("limit")]:
        atoms = entry.get("atoms") or {}
        payload = (atoms.get("lattice_mat"), atoms.get("coords"), atoms.get("elements"), bool(atoms.get("cartesian", False)))
        yield RawRecord(record_id(entry.get("jid")), "arrays", payload, {t: entry.get(c) for t, c in targets.items()})


def _frame_records(data: Any, path: Path) -> tuple[list[str], list[dict]]:
    """Ids and row dicts from the JSON layouts pandas and matminer write (split, records, columns)."""
    if isinstance(data, dict) and "data" in data and "columns" in data:
        columns = data["columns"]
        rows = [dict(zip(columns, values)) for values in data["data"]]
        ids = [str(i) for i in data.get("index", range(len(rows)))]
        return ids, rows
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return [str(i) for i in range(len(data))], data
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        columns = list(data)
        ids = list(next(iter(data.values())).keys())
        return [str(i) for i in ids], [{c: data[c].get(i) for c in columns} for i in ids]
    raise MatprobeError(f"{path}: unrecognised JSON table layout")


def _read_json_table(spec: dict, path: Path, targets: dict[str, str], id_column: str | None,
                     name_ids: Callable[[int], list[str]] | None = None) -> Iterator[RawRecord]:
    """Records of a JSON table; ids from `id_column`, else from `name_ids(rows)`, else the table's index."""
    ids, rows = _frame_records(_load_json_file(path), path)
    if name_ids is not None:
        ids = name_ids(len(rows))
    columns = set(rows[0]) if rows else set()
    _require_columns(path, columns, targets)
    structure_column = spec.get("structure_column", "structure")
    if structure_column not in columns:
        raise MatprobeError(f"{path}: no structure column {structure_column!r} (columns: {sorted(columns)})")
    limit = spec.get("limit")
    for index_id, row in list(zip(ids, rows))[:limit]:
        crystal_id = record_id(row[id_column]) if id_column and id_column in row else index_id
        yield RawRecord(crystal_id, "dict", row[structure_column], {t: row.get(c) for t, c in targets.items()})


def matbench_ids(task: str, count: int) -> list[str]:
    """Matbench's own ids for the rows of a task's table, in file order: `mb-mp-e-form-000001` for the first row of
    matbench_mp_e_form (the prefix is the task's name, the number is 1-based and zero-padded to the digits of the
    row count), as the matbench package names them, so that its published folds match these records."""
    prefix = task.replace("matbench", "mb").replace("_", "-")
    digits = math.floor(math.log10(count)) + 1 if count else 1
    return [f"{prefix}-{i + 1:0{digits}d}" for i in range(count)]


def read_matbench(spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    return _read_json_table(spec, files[0], targets, id_column=None, name_ids=lambda count: matbench_ids(spec["task"], count))


def read_mp_2018(spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    return _read_json_table(spec, files[0], targets, id_column=spec.get("id_column", "mpid"))


def matbench_default_targets(spec: dict) -> dict[str, str]:
    if spec.get("task") == "matbench_mp_gap":
        return {"band_gap": "gap pbe"}
    return {"formation_energy_per_atom": "e_form"}


# ---- table: a local Parquet, CSV or JSON file -----------------------------------------------------


def _read_frame(path: Path):
    """A Parquet, CSV (header row; '#' comment lines) or JSON table; a missing or unreadable file is one line."""
    import pandas as pd

    if not path.exists():
        raise MatprobeError(f"{path}: table file does not exist")
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".parquet" in suffixes:
            frame = pd.read_parquet(path)
        elif ".csv" in suffixes:
            # every column as text, exactly as written: ids like 0010 or 1e1 are not numbers (pandas would make them 10
            # and 10.0); target values are read as numbers later, each on its own (matprobe.inputs.data.target_value)
            frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif ".json" in suffixes:
            ids, rows = _frame_records(_load_json_file(path), path)
            frame = pd.DataFrame(rows, index=ids)
        else:
            raise MatprobeError(f"{path}: unknown table format (use .parquet, .csv or .json, optionally .gz)")
    except MatprobeError:
        raise
    except Exception as exc:
        raise MatprobeError(f"{path}: cannot read table ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    return frame


def _table_rows(path: Path, frame, columns: tuple[str, ...], spec: dict, targets: dict[str, str]) -> list[dict]:
    """The rows of a source's table, once it is known to have `columns` and the target columns; `limit` applied."""
    for column in columns:
        if column not in frame.columns:
            raise MatprobeError(f"{path}: no column {column!r} (columns: {list(frame.columns)})")
    _require_columns(path, frame.columns, targets)
    return (frame.head(spec["limit"]) if spec.get("limit") else frame).to_dict("records")


def set_files(spec: dict) -> dict[str, str]:
    """A dataset given as one file per set (`sets`, as published benchmarks ship): each set's file by the name the
    split reads it under (`test` is id_test), in the order train, val, id_test, ood_test; empty for any other dataset."""
    from matprobe.prepare.splits import SET_ALIASES
    from matprobe.prepare.sets import SETS

    named = {SET_ALIASES.get(name, name): file for name, file in (spec.get("sets") or {}).items()}
    return {name: named[name] for name in SETS if name in named}


def published_sets(spec: dict) -> dict[str, list[str]]:
    """The ids of each set of a dataset given one file per set, read as its source reads its records (so that they are
    the materials table's ids); `limit` applies to each file, as when the data stage reads them."""
    reader, targets = SOURCES[spec["source"]].reader, resolve_targets(spec)
    return {name: [record.id for record in reader(spec, [], targets, set_file=file)] for name, file in set_files(spec).items()}


def _each_set(reader, spec: dict, files: list[Path], targets: dict[str, str]) -> Iterator[RawRecord]:
    for file in set_files(spec).values():
        yield from reader(spec, files, targets, set_file=file)


def read_table(spec: dict, files: list[Path], targets: dict[str, str], set_file: str | None = None) -> Iterator[RawRecord]:
    """The rows of the table at `path`, or of one table per set (`sets`), one after the other."""
    if set_file is None and spec.get("sets"):
        yield from _each_set(read_table, spec, files, targets)
        return
    path = Path(set_file or spec["path"])
    id_column, structure_column = spec.get("id_column", "id"), spec.get("structure_column", "structure")
    for row in _table_rows(path, _read_frame(path), (id_column, structure_column), spec, targets):
        yield RawRecord(record_id(row[id_column]), "any", row[structure_column], {t: row[c] for t, c in targets.items()})


# ---- cif_folder: a folder of CIF files and a labels table with a header ------------------------------------


def read_cif_folder(spec: dict, files: list[Path], targets: dict[str, str], set_file: str | None = None) -> Iterator[RawRecord]:
    """One record per row of the labels table (CSV with a header, Parquet or JSON, any column names), or of one labels
    table per set (`sets`), one after the other; `id_column` names the CIF file of the row, with or without `.cif`
    (default: the table's first column). A row whose file is missing is counted as unparsable, never fatal."""
    if set_file is None and spec.get("sets"):
        yield from _each_set(read_cif_folder, spec, files, targets)
        return
    folder, labels = Path(spec["path"]), Path(set_file or spec["labels"])
    if not folder.is_dir():
        raise MatprobeError(f"{folder}: CIF folder does not exist")
    frame = _read_frame(labels)
    id_column = spec.get("id_column", frame.columns[0])
    for row in _table_rows(labels, frame, (id_column,), spec, targets):
        name = record_id(row[id_column])
        stem = name.removesuffix(".cif")
        file = folder / f"{stem}.cif"
        values = {t: row[c] for t, c in targets.items()}
        if file.is_file():
            yield RawRecord(stem, "cif", file.read_text(errors="replace"), values)
        else:
            yield RawRecord(stem, "missing", f"{file.name} not found in {folder}", values)


# ---- materials_project: the live API through mp-api --------------------------------------------------

MP_API_FIELDS = {"formation_energy_per_atom": "formation_energy_per_atom", "band_gap": "band_gap"}


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def read_materials_project(spec: dict, files: list[Path], targets: dict[str, str], client_factory=None) -> Iterator[RawRecord]:
    """Query the Materials Project summary endpoint in chunks. The key comes from MP_API_KEY and is
    never logged; any error text that might echo it is redacted."""
    api_key = os.environ.get("MP_API_KEY")
    if not api_key:
        raise MatprobeError("materials_project: set the MP_API_KEY environment variable (the key is never written anywhere)")
    if client_factory is None:
        try:
            from mp_api.client import MPRester
        except ImportError:
            raise MatprobeError("materials_project: install the optional extra: pip install 'matprobe[mp]'") from None
        client_factory = MPRester
    fields = ["material_id", "structure", *targets.values()]
    query = {"fields": fields, "chunk_size": spec.get("chunk_size", 1000)}
    if spec.get("elements"):
        query["elements"] = spec["elements"]
    if spec.get("limit"):
        query["num_chunks"] = max(1, -(-spec["limit"] // query["chunk_size"]))
    try:
        with client_factory(api_key) as client:
            documents = client.materials.summary.search(**query)
    except Exception as exc:
        raise MatprobeError(_redact(f"materials_project: query failed ({type(exc).__name__}: {exc})", api_key).splitlines()[0]) from None
    for document in documents[: spec.get("limit")]:
        get = document.get if isinstance(document, dict) else lambda k, d=None: getattr(document, k, d)
        structure = get("structure")
        payload = structure.as_dict() if hasattr(structure, "as_dict") else structure
        yield RawRecord(record_id(get("material_id")), "dict", payload, {t: get(c) for t, c in targets.items()})


# ---- registry ------------------------------------------------------------------------------------------


def _require_columns(where, available, targets: dict[str, str]) -> None:
    missing = [c for c in targets.values() if c not in set(available)]
    if not targets:
        raise MatprobeError(f"{where}: no target column given (set `targets:` for this dataset)")
    if missing:
        raise MatprobeError(f"{where}: target column(s) {missing} not found")


def _no_local_inputs(spec: dict) -> list[str]:
    return []


def _fixed(targets: dict[str, str]) -> Callable[[dict], dict[str, str]]:
    return lambda spec: dict(targets)


# Keys every source takes (described in config/schema.yaml).
COMMON_KEYS = ("source", "targets", "limit")
DOWNLOAD_KEYS = ("url", "sha256")


@dataclass(frozen=True)
class Source:
    """Everything the workflow knows about one kind of `datasets:` entry; nothing else branches on a source's name.

    `keys`: the config keys it reads besides COMMON_KEYS; `required`: groups of keys of which one must be given;
    `exclusive`: groups of keys of which at most one may be given; `choices`: the allowed values of a key; `default_targets`: target name in the table -> column in the source,
    used when the entry gives no `targets`; `remote_files`: what the download rule fetches; `local_inputs`: local
    files it reads (Snakemake inputs, so that a changed file re-runs the data stage); `reader`: the records."""

    reader: Callable[..., Iterator[RawRecord]]
    keys: tuple[str, ...] = ()
    required: tuple[tuple[str, ...], ...] = ()
    exclusive: tuple[tuple[str, ...], ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_targets: Callable[[dict], dict[str, str]] = _fixed({})
    remote_files: Callable[[dict], list[RemoteFile]] = _no_files
    local_inputs: Callable[[dict], list[str]] = _no_local_inputs


SOURCES: dict[str, Source] = {
    "embedded": Source(
        read_embedded,
        default_targets=_fixed({"formation_energy_per_atom": "formation_energy_per_atom", "e_above_hull": "e_above_hull"}),
        local_inputs=lambda spec: [str(EMBEDDED_FILE)],
    ),
    "cgcnn_dir": Source(
        read_cgcnn_dir,
        keys=("path", *DOWNLOAD_KEYS, "columns", "id_map"),
        required=(("path", "url"), ("columns",)),
        default_targets=lambda spec: {name: name for name in spec.get("columns") or []},
        remote_files=cgcnn_files,
        local_inputs=lambda spec: [] if spec.get("url") else [spec["path"]],
    ),
    "jarvis_dft_3d": Source(
        read_jarvis,
        keys=("version", *DOWNLOAD_KEYS),
        choices={"version": tuple(JARVIS_RELEASES)},
        default_targets=_fixed({"formation_energy_per_atom": "formation_energy_peratom", "band_gap": "optb88vdw_bandgap",
                                "band_gap_mbj": "mbj_bandgap"}),
        remote_files=jarvis_files,
    ),
    "matbench": Source(
        read_matbench,
        keys=("task", *DOWNLOAD_KEYS),
        required=(("task",),),
        choices={"task": tuple(MATBENCH_TASKS)},
        default_targets=matbench_default_targets,
        remote_files=matbench_files,
    ),
    "mp_2018": Source(
        read_mp_2018,
        keys=(*DOWNLOAD_KEYS, "id_column", "structure_column"),
        default_targets=_fixed({"formation_energy_per_atom": "e_form", "band_gap": "gap pbe"}),
        remote_files=mp_2018_files,
    ),
    "materials_project": Source(read_materials_project, keys=("elements", "chunk_size"), default_targets=_fixed(MP_API_FIELDS)),
    "cif_folder": Source(
        read_cif_folder,
        keys=("path", "labels", "sets", "id_column"),
        required=(("path",), ("labels", "sets")),
        exclusive=(("labels", "sets"),),
        local_inputs=lambda spec: [spec["path"], *([spec["labels"]] if "labels" in spec else set_files(spec).values())],
    ),
    "table": Source(
        read_table,
        keys=("path", "sets", "id_column", "structure_column"),
        required=(("path", "sets"),),
        exclusive=(("path", "sets"),),
        local_inputs=lambda spec: [spec["path"]] if "path" in spec else list(set_files(spec).values()),
    ),
}


def check_dataset(name: str, spec: dict) -> None:
    """The keys of one `datasets:` entry against its source's: one line naming the dataset and the key."""
    where = f"config: datasets.{name}"
    source = SOURCES.get(spec.get("source"))
    if source is None:
        raise MatprobeError(f"{where}.source: {spec.get('source')!r} is not one of {sorted(SOURCES)}")
    allowed = set(COMMON_KEYS) | set(source.keys)
    foreign = [key for key in spec if key not in allowed]
    if foreign:
        takes = ", ".join(k for k in (*COMMON_KEYS[1:], *source.keys))
        raise MatprobeError(f"{where}: source {spec['source']} does not take key `{foreign[0]}` (it takes: {takes})")
    for group in source.required:
        if not any(key in spec for key in group):
            raise MatprobeError(f"{where}: source {spec['source']} needs `{'` or `'.join(group)}`")
    for group in source.exclusive:
        given = [key for key in group if key in spec]
        if len(given) > 1:
            raise MatprobeError(f"{where}: give `{given[0]}` or `{given[1]}`, not both")
    if "sets" in spec:
        _check_sets(where, spec["sets"])
    for key, allowed_values in source.choices.items():
        if key in spec and str(spec[key]) not in allowed_values:
            raise MatprobeError(f"{where}.{key}: {spec[key]!r} is not one of {list(allowed_values)}")


def _check_sets(where: str, sets: dict) -> None:
    """One file per set: train, val and the test set (test or id_test), ood_test optional; nothing else."""
    from matprobe.prepare.splits import SET_ALIASES
    from matprobe.prepare.sets import SETS

    names = {SET_ALIASES.get(name, name) for name in sets}
    unknown = [name for name in sets if SET_ALIASES.get(name, name) not in SETS]
    if unknown:
        raise MatprobeError(f"{where}.sets: unknown set {unknown[0]!r}; the sets are {list(SETS)} (test is read as id_test)")
    if len(names) < len(sets):
        raise MatprobeError(f"{where}.sets: test and id_test name one set; give one of them")
    missing = [name for name in ("train", "val", "id_test") if name not in names]
    if missing:
        raise MatprobeError(f"{where}.sets: no file for set {missing[0]}" + (" (or test)" if missing[0] == "id_test" else ""))


def resolve_targets(spec: dict) -> dict[str, str]:
    """Target name in the table -> column in the source, from the config or the source's defaults."""
    return dict(spec["targets"]) if spec.get("targets") else SOURCES[spec["source"]].default_targets(spec)


def remote_files(spec: dict) -> list[RemoteFile]:
    return SOURCES[spec["source"]].remote_files(spec)


def local_inputs(spec: dict) -> list[str]:
    """Local files a dataset reads, so that Snakemake re-normalises when they change."""
    return SOURCES[spec["source"]].local_inputs(spec)


def iter_records(spec: dict, files: list[Path], name: str = "dataset") -> Iterator[RawRecord]:
    check_dataset(name, spec)
    return SOURCES[spec["source"]].reader(spec, files, resolve_targets(spec))
