"""Downloads against a local HTTP server on 127.0.0.1: good file, checksum mismatch, truncated transfer,
404, mirror hit, and checksums recorded only after a complete read."""

import hashlib
import http.server
import threading

import pytest

from matprobe import MatprobeError
from matprobe.inputs.download import fetch, record_checksum, verify

PAYLOAD = b"matprobe test payload\n" * 5000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith("/good"):
            self._send(PAYLOAD)
        elif self.path.startswith("/truncated"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif self.path.startswith("/flaky"):
            # fails twice, then serves the file: retries with back-off must get it
            if _Handler.hits[self.path] <= 2:
                self.send_error(503)
            else:
                self._send(PAYLOAD)
        else:
            self.send_error(404)

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_good_file_is_verified(server, tmp_path):
    dest = fetch(f"{server}/good/file.bin", tmp_path / "file.bin", sha256=PAYLOAD_SHA, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # a pinned file needs no record; no temporary left


def test_a_checksum_is_recorded_only_after_a_complete_read_and_then_enforced(server, tmp_path):
    dest = fetch(f"{server}/good/unpinned", tmp_path / "unpinned.bin", backoff=0)
    assert not (tmp_path / "unpinned.bin.sha256").exists()  # downloaded, not yet read: nothing trusted yet
    record_checksum(dest, None, verify(dest, None))  # what the data stage does once it has read the whole file
    assert (tmp_path / "unpinned.bin.sha256").read_text().strip() == PAYLOAD_SHA
    dest.write_bytes(b"tampered")
    with pytest.raises(MatprobeError, match=r"unpinned.bin: sha256 .* differs from the one recorded in .*unpinned.bin.sha256 .*delete"):
        verify(dest, None)
    fetch(f"{server}/good/unpinned", dest, backoff=0)  # fetched again and checked against the record
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_fails_after_retries_and_leaves_nothing(server, tmp_path):
    _Handler.hits.clear()
    with pytest.raises(MatprobeError) as error:
        fetch(f"{server}/good/mismatch", tmp_path / "m.bin", sha256="0" * 64, retries=2, backoff=0)
    assert "does not match" in str(error.value) and "m.bin" in str(error.value)
    assert _Handler.hits["/good/mismatch"] == 2
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_retried_then_fails(server, tmp_path):
    with pytest.raises(MatprobeError) as error:
        fetch(f"{server}/truncated", tmp_path / "t.bin", retries=2, backoff=0)
    assert "t.bin" in str(error.value)
    assert not (tmp_path / "t.bin").exists()


def test_404_is_not_retried_and_says_where_to_put_the_file(server, tmp_path):
    _Handler.hits.clear()
    with pytest.raises(MatprobeError) as error:
        fetch(f"{server}/missing.zip", tmp_path / "missing.zip", retries=3, backoff=0, mirror_dir=tmp_path / "mirror")
    message = str(error.value)
    assert "HTTP 404" in message and str(tmp_path / "mirror" / "missing.zip") in message
    assert _Handler.hits["/missing.zip"] == 1


def test_transient_errors_are_retried(server, tmp_path):
    _Handler.hits.clear()
    fetch(f"{server}/flaky", tmp_path / "f.bin", sha256=PAYLOAD_SHA, retries=3, backoff=0.01)
    assert _Handler.hits["/flaky"] == 3


def test_mirror_is_used_before_the_network(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.json.gz").write_bytes(PAYLOAD)
    # the URL points at a closed port: only the mirror can satisfy this
    dest = fetch("http://127.0.0.1:9/data.json.gz", tmp_path / "dl" / "data.json.gz", sha256=PAYLOAD_SHA, mirror_dir=mirror)
    assert dest.read_bytes() == PAYLOAD
    (mirror / "bad.bin").write_bytes(b"wrong")
    with pytest.raises(MatprobeError, match="bad.bin: sha256 .* does not match the pinned"):
        fetch("http://127.0.0.1:9/bad.bin", tmp_path / "dl" / "bad.bin", sha256=PAYLOAD_SHA, mirror_dir=mirror)


def test_no_network_and_no_mirror_names_the_file_and_place(tmp_path):
    with pytest.raises(MatprobeError) as error:
        fetch("http://127.0.0.1:9/jdft.zip", tmp_path / "jdft.zip", retries=1, backoff=0)
    assert str(tmp_path / "jdft.zip") in str(error.value) and "mirror_dir" in str(error.value)

