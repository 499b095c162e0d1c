"""Downloads that survive flaky networks and air-gapped nodes, and checksums that are trusted only when earned.

The transfer is pooch's (`pooch.retrieve`: streamed to a temporary file, checked against a known sha256, renamed
into place); around it, this module adds what pooch leaves to its caller: a mirror folder searched before the
network (air-gapped nodes), retries with exponential back-off that stop at a refusal (HTTP 4xx), and one-line
errors that name the file and where to put it.

Every downloaded file is checked against a checksum wherever it came from (network, mirror, or placed in the
download folder by hand): the one pinned for the source's release (or given as `sha256` in the config), else the
one recorded beside the file (`{file}.sha256`). A checksum is recorded only after the data stage has read the file
completely (`record_checksum`), so a truncated first download is never recorded and never used to refuse the
good file."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

from matprobe import MatprobeError
from matprobe.io import atomic_path, make_readable

log = logging.getLogger("matprobe.inputs.download")

CHUNK = 1 << 20


def sha256_of(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(dest: os.PathLike | str) -> Path:
    """Where the checksum of a file read completely is recorded: beside it, `{file}.sha256`."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256")


def expected_checksum(dest: os.PathLike | str, pinned: str | None) -> tuple[str | None, str]:
    """(checksum, what it is) a file must have: pinned, else recorded, else (None, "")."""
    if pinned:
        return pinned, "pinned"
    record = record_path(dest)
    if record.exists():
        return record.read_text().strip() or None, f"recorded in {record}"
    return None, ""


def verify(path: os.PathLike | str, pinned: str | None) -> str:
    """The file's sha256, after checking it against its pinned or recorded checksum (one line naming what to do)."""
    path = Path(path)
    actual = sha256_of(path)
    expected, what = expected_checksum(path, pinned)
    if expected is not None and actual != expected:
        if what == "pinned":
            raise MatprobeError(f"{path}: sha256 {actual[:16]}... does not match the pinned {expected[:16]}... "
                                "(the source's release, or `sha256` in the config); delete the file to download it again")
        record = record_path(path)
        raise MatprobeError(f"{path}: sha256 {actual[:16]}... differs from the one {what} when the file was first read "
                            f"completely; if this file is the one to trust, delete {record}")
    return actual


def record_checksum(path: os.PathLike | str, pinned: str | None, checksum: str) -> None:
    """Record the checksum of a file that has just been read completely, unless one is pinned or already recorded."""
    record = record_path(path)
    if pinned or record.exists():
        return
    with atomic_path(record) as tmp:
        tmp.write_text(checksum + "\n")
    log.info("%s: sha256 %s recorded in %s", path, checksum, record)


def fetch(url: str, dest: os.PathLike | str, sha256: str | None = None, mirror_dir: os.PathLike | str | None = None,
          retries: int = 3, backoff: float = 1.0, timeout: float = 60.0) -> Path:
    """Make `dest` hold the file named by `url`, checked against its pinned or recorded checksum, and return it.

    Order: an existing `dest` that passes the check; a file of the same name in `mirror_dir`; the network.
    Raises MatprobeError (one line naming the file) when no checked copy can be had."""
    import pooch
    import requests

    dest = Path(dest)
    expected, what = expected_checksum(dest, sha256)
    if dest.exists():
        try:
            verify(dest, sha256)
            return dest
        except MatprobeError as problem:
            log.warning("%s; fetching it again", problem)

    if mirror_dir:
        mirrored = Path(mirror_dir) / dest.name
        if mirrored.exists():
            actual = sha256_of(mirrored)
            if expected is not None and actual != expected:
                raise MatprobeError(f"{mirrored}: sha256 {actual[:16]}... does not match the {what} {expected[:16]}...")
            with atomic_path(dest) as tmp:
                shutil.copyfile(mirrored, tmp)
            log.info("%s: taken from mirror %s", dest, mirrored)
            return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(progressbar=False, timeout=timeout, headers={"User-Agent": "matprobe"})
    last_problem = "no attempt made"
    for attempt in range(1, retries + 1):
        try:
            # pooch streams to a temporary file beside dest, checks the hash and only then renames it into place
            pooch.retrieve(url, known_hash=f"sha256:{expected}" if expected else None, fname=dest.name, path=dest.parent,
                           downloader=downloader)
            make_readable(dest)  # pooch writes through a 0600 temporary file
            log.info("%s: downloaded from %s", dest, url)
            return dest
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            last_problem = f"HTTP {code} {exc.response.reason if exc.response is not None else ''}".strip()
            if 400 <= code < 500 and code not in (408, 429):
                break  # the server said no: asking again will not help
        except ValueError as exc:  # pooch's hash mismatch
            last_problem = f"sha256 does not match the {what} one" if "hash" in str(exc).lower() else str(exc).splitlines()[0]
        except (requests.RequestException, OSError) as exc:
            last_problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
        log.warning("%s: attempt %d of %d failed: %s", url, attempt, retries, last_problem)
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    where = f"{Path(mirror_dir) / dest.name} (data.mirror_dir) or {dest}" if mirror_dir else f"{dest} (or set data.mirror_dir)"
    raise MatprobeError(f"{dest.name}: could not download {url} ({last_problem}); place the file at {where}")

