"""Cheap checks of a finished file, run as a job of their own between the file and the jobs that read it.

Snakemake deletes a job's outputs just before it runs the job. A changed or damaged input (a download replaced by
hand, a truncated graph cache or model file) makes every job downstream of it due again, and the first of those to
run would delete what it made before and only then find the input unreadable. A verification job sits between the
file and its consumers: it runs first, fails in one line naming the file, and no consumer is started, so nothing
made before is removed. It writes a small stamp (`<file>.verified`) that the consumers take as an input."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from matprobe import MatprobeError
from matprobe.inputs.data import STRUCTURE_COLUMNS
from matprobe.io import write_json

KINDS = ("downloads", "materials", "graphs", "split", "model")


def _check_torch_archive(path: Path, what: str, rebuild: str) -> None:
    """A torch.save file is a zip archive whose records carry CRC-32s: a truncated or altered file fails here,
    without unpickling anything (a graph cache of a large dataset is read at disk speed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise MatprobeError(f"{path}: not a readable {what} ({type(exc).__name__}: {str(exc)[:80]}); {rebuild}") from None
    if bad is not None:
        raise MatprobeError(f"{path}: damaged {what} (record {bad} fails its CRC); {rebuild}")


def check_file(kind: str, path: str | Path, spec: dict | None = None) -> dict:
    """Check one finished file of `kind` (KINDS); raise MatprobeError in one line naming it and what to do."""
    path = Path(path)
    if not path.exists():
        raise MatprobeError(f"{path}: missing; run the job that makes it")
    if kind == "materials":
        import pyarrow.parquet as pq

        try:
            columns = set(pq.ParquetFile(path).schema_arrow.names)  # the footer: a truncated file has none
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
            raise MatprobeError(f"{path}: not a readable materials table ({type(exc).__name__}); delete it and run "
                                "`snakemake data` to rebuild it (the graphs, splits and models made from it are kept "
                                "until then)") from None
        missing = sorted({"id", *STRUCTURE_COLUMNS} - columns)
        if missing:
            raise MatprobeError(f"{path}: not a matprobe materials table (missing {missing}); delete it and run `snakemake data`")
    elif kind == "graphs":
        _check_torch_archive(path, "graph cache", "delete it and run `snakemake graphs` to rebuild it; the models trained "
                                                  "on it are kept until then")
    elif kind == "split":
        from matprobe.prepare.splits import load_split

        load_split(path)
    elif kind == "model":
        # the archive's CRCs, not a load: torch and the model code are not imported for each of many models (every
        # load checks the weights against the checksum the model's record carries, too)
        _check_torch_archive(path, "matprobe model", "delete it and run its training job again (snakemake plans it)")
    elif kind == "downloads":
        from matprobe.inputs.download import verify
        from matprobe.inputs.sources import remote_files

        pinned = {remote.filename: remote.sha256 for remote in remote_files(spec or {})}
        return {"sha256": verify(path, pinned.get(path.name))}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return {"bytes": os.path.getsize(path)}


def verify_files(kind: str, paths: list[str | Path], stamp: str | Path, spec: dict | None = None) -> None:
    """Check each file and write the stamp the consumers wait for (only once every file has passed)."""
    checked = {str(path): check_file(kind, path, spec) for path in paths}
    write_json({"kind": kind, "checked": checked}, stamp)
