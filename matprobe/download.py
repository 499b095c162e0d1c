"""Downloads that survive flaky networks and air-gapped nodes.

A file is looked for in `mirror_dir` first, then fetched: streamed to a temporary file, retried with
exponential back-off, checked against its pinned sha256 (or the checksum recorded beside it on first
download), and only then renamed into place. Archives are unpacked with a guard against members whose
paths escape the target folder."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from matprobe import MatprobeError
from matprobe.io import atomic_path

log = logging.getLogger("matprobe.download")

CHUNK = 1 << 20


def sha256_of(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_checksum_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


class _TransferError(Exception):
    """A failed attempt that is worth retrying (network error, truncated body, checksum mismatch)."""


def _stream(url: str, tmp: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "matprobe"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
        expected = response.headers.get("Content-Length")
        written = 0
        while True:
            try:
                block = response.read(CHUNK)
            except Exception as exc:  # http.client.IncompleteRead and socket errors mid-body
                raise _TransferError(f"transfer broke off after {written} bytes ({type(exc).__name__})") from None
            if not block:
                break
            out.write(block)
            written += len(block)
        if expected is not None and written != int(expected):
            raise _TransferError(f"truncated transfer: {written} of {expected} bytes")


def fetch(
    url: str,
    dest: os.PathLike | str,
    sha256: str | None = None,
    mirror_dir: os.PathLike | str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Make `dest` hold the verified file named by `url` and return its path.

    Order: an existing verified `dest`; a file of the same name in `mirror_dir`; the network.
    Raises MatprobeError (one line naming the file) when no verified copy can be had.
    """
    dest = Path(dest)
    recorded = _recorded_checksum_path(dest)
    if sha256 is None and recorded.exists():
        sha256 = recorded.read_text().strip() or None

    if dest.exists():
        actual = sha256_of(dest)
        if sha256 is None or actual == sha256:
            _record(recorded, actual)
            return dest
        log.warning("%s: checksum %s does not match %s; fetching again", dest, actual[:12], sha256[:12])

    if mirror_dir:
        mirrored = Path(mirror_dir) / dest.name
        if mirrored.exists():
            actual = sha256_of(mirrored)
            if sha256 is not None and actual != sha256:
                raise MatprobeError(f"{mirrored}: checksum {actual} does not match the pinned {sha256}")
            with atomic_path(dest) as tmp:
                shutil.copyfile(mirrored, tmp)
            _record(recorded, actual)
            log.info("%s: taken from mirror %s", dest, mirrored)
            return dest

    last_problem = "no attempt made"
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(dest) as tmp:
                _stream(url, tmp, timeout)
                actual = sha256_of(tmp)
                if sha256 is not None and actual != sha256:
                    raise _TransferError(f"checksum {actual} does not match the pinned {sha256}")
            _record(recorded, actual)
            log.info("%s: downloaded from %s (sha256 %s)", dest, url, actual)
            return dest
        except urllib.error.HTTPError as exc:
            last_problem = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # the server said no: asking again will not help
        except (urllib.error.URLError, OSError, _TransferError) as exc:
            last_problem = str(getattr(exc, "reason", exc))
        log.warning("%s: attempt %d of %d failed: %s", url, attempt, retries, last_problem)
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    where = f"{Path(mirror_dir) / dest.name} (data.mirror_dir) or {dest}" if mirror_dir else f"{dest} (or set data.mirror_dir)"
    raise MatprobeError(f"{dest.name}: could not download {url} ({last_problem}); place the file at {where}")


def _record(path: Path, checksum: str) -> None:
    if not path.exists() or path.read_text().strip() != checksum:
        with atomic_path(path) as tmp:
            tmp.write_text(checksum + "\n")


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def safe_extract(archive: os.PathLike | str, target: os.PathLike | str) -> Path:
    """Unpack a zip or tar archive into `target`, refusing any member that would land outside it."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not _inside(root, name) or Path(name).is_absolute():
                    raise MatprobeError(f"{archive}: member {name!r} would be written outside {target}")
            zf.extractall(target)
        return target
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if not _inside(root, member.name) or member.issym() or member.islnk():
                    raise MatprobeError(f"{archive}: member {member.name!r} is a link or escapes {target}")
            tf.extractall(target, filter="data")
        return target
    raise MatprobeError(f"{archive}: not a zip or tar archive")
