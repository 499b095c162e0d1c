"""Atomic file writes: every output is written to a temporary file beside it, then renamed into place,
so that a killed job never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    with _unwritable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs should be readable like any other
    try:
        yield tmp_path
        with _unwritable(path):
            os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(OSError):  # a folder made unwritable meanwhile: the error above says so
            tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _unwritable(path: Path) -> Iterator[None]:
    """A folder without write permission (or a full disk) is one line naming the file, not a traceback."""
    from matprobe import MatprobeError

    try:
        yield
    except (PermissionError, FileExistsError, NotADirectoryError, OSError) as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR):
            raise
        raise MatprobeError(f"{path}: cannot write it ({exc.strerror}); make {path.parent} writable (or free space) and "
                            "run again; what was written before is kept") from None


def make_readable(path: os.PathLike | str) -> None:
    """Give a file the permissions the umask allows (tools that write through mkstemp leave 0600)."""
    os.chmod(path, 0o666 & ~_UMASK)


def write_json(obj: Any, path: os.PathLike | str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
            fh.write("\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in summaries; write them as plain numbers and lists
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_parquet(frame: pd.DataFrame, path: os.PathLike | str) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_torch(obj: Any, path: os.PathLike | str) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_torch_dict(path: os.PathLike | str, what: str, format_version: int, how_to_make: str) -> dict:
    """A dict of tensors that a stage wrote with write_torch, loaded weights_only (no code runs on load) and checked
    for its format; a missing, unreadable or foreign file is one line naming it (`what`: "graph", "line-graph")."""
    import torch

    from matprobe import MatprobeError

    path = Path(path)
    if not path.exists():
        raise MatprobeError(f"{path}: {what} file not found ({how_to_make})")
    try:
        stored = torch.load(path, weights_only=True)
    except Exception as exc:
        raise MatprobeError(f"{path}: not a readable {what} file ({type(exc).__name__})") from None
    if not isinstance(stored, dict) or stored.get("format") != format_version:
        raise MatprobeError(f"{path}: not a matprobe {what} file of format {format_version}")
    return stored


def setup_logging(log_path: os.PathLike | str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to a rule's log file (and stderr), one format for all stages."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True)
    return logging.getLogger("matprobe")


def run_logged(log_path, func, *args, **kwargs):
    """Run a stage function from a workflow script: log to the rule's log file, and turn a MatprobeError
    into one line on stderr and exit status 1 instead of a traceback."""
    import sys

    from matprobe import MatprobeError

    logger = setup_logging(log_path)
    try:
        return func(*args, **kwargs)
    except MatprobeError as error:
        logger.error("%s", error)
        print(f"matprobe: error: {error}", file=sys.stderr)
        sys.exit(1)
