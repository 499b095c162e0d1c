"""Compare two results/ folders file by file: the check that a refactor changed no output.

    python bench/compare_results.py OLD/results NEW/results

Files equal byte for byte are counted; the others are compared by content: JSON without wall times (keys with
"seconds") and run metadata, Parquet tables as DataFrames (exactly, then to 1e-6 relative), torch files tensor by
tensor (a torch file's bytes carry the name of the temporary file it was written to, so they differ on every run).
Figures (PDF, PNG), HTML and CSV are skipped: they carry dates or follow from the tables. Prints every file that
differs in content, with what differs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

IGNORED_KEYS = {"seconds", "metadata", "history", "input_sha256"}  # wall times, versions and the machine's paths
SKIPPED = {".pdf", ".png", ".html", ".csv", ".log", ".tsv"}


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in IGNORED_KEYS and "seconds" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _torch_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        keys = [k for k in a if k not in IGNORED_KEYS]
        return isinstance(b, dict) and set(keys) == {k for k in b if k not in IGNORED_KEYS} and all(_torch_equal(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_torch_equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b))


def compare(old: Path, new: Path) -> dict:
    counts = {"identical": 0, "equal in content": 0, "equal to 1e-6": 0, "skipped": 0}
    differ, missing = [], []
    for path in sorted(p for p in old.rglob("*") if p.is_file()):
        relative = path.relative_to(old)
        other = new / relative
        if not other.exists():
            missing.append(str(relative))
        elif path.read_bytes() == other.read_bytes():
            counts["identical"] += 1
        elif path.suffix in SKIPPED:
            counts["skipped"] += 1
        elif path.suffix == ".json":
            a, b = _without_times(json.loads(path.read_text())), _without_times(json.loads(other.read_text()))
            if a == b:
                counts["equal in content"] += 1
            else:
                flat_a, flat_b = pd.json_normalize(a, sep="."), pd.json_normalize(b, sep=".")
                keys = [c for c in flat_a.columns if c not in flat_b.columns or str(flat_a[c].iloc[0]) != str(flat_b[c].iloc[0])]
                differ.append((str(relative), ", ".join(keys[:5])))
        elif path.suffix == ".parquet":
            a, b = pd.read_parquet(path), pd.read_parquet(other)
            a = a.drop(columns=[c for c in a.columns if "seconds" in c])
            b = b.drop(columns=[c for c in b.columns if "seconds" in c])
            try:
                pd.testing.assert_frame_equal(a, b)
                counts["equal in content"] += 1
                continue
            except AssertionError:
                pass
            try:
                pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-7)
                counts["equal to 1e-6"] += 1
            except AssertionError as error:
                differ.append((str(relative), " ".join(str(error).split())[:160]))
        elif path.suffix == ".pt":
            equal = _torch_equal(torch.load(path, weights_only=True), torch.load(other, weights_only=True))
            counts["equal in content"] += equal
            if not equal:
                differ.append((str(relative), "tensors differ"))
        else:
            differ.append((str(relative), "bytes differ"))
    return {"counts": counts, "differ": differ, "missing": missing,
            "new only": sorted(str(p.relative_to(new)) for p in new.rglob("*") if p.is_file() and not (old / p.relative_to(new)).exists())}


if __name__ == "__main__":
    result = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print(result["counts"])
    print(f"{len(result['missing'])} files only in the old folder, {len(result['new only'])} only in the new")
    for name, what in result["differ"]:
        print(f"differs: {name}: {what}")
