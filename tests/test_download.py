"""fetch_checkpoint against a loopback HTTP server (127.0.0.1, a thread, torn down after the module)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dimcollapse.models.download import (
    DownloadError,
    fetch_checkpoint,
    gdrive_id,
    local_source_state,
    name_the_source,
    partial_path,
    sidecar_path,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 300_000
FAST = {"retries": 3, "backoff": 0.01, "timeout": 5.0, "progress": False}


class Server:
    """Serves PAYLOAD under several behaviours and records each request's path and Range header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.failures_left: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path, rng = self.path, self.headers.get("Range")
                server.requests.append((path, rng))
                if path == "/missing.pyth":
                    self.send_error(404, "Not Found")
                elif path == "/login.pyth":
                    self._send(200, b"<html>sign in</html>", {"Content-Type": "text/html; charset=utf-8"})
                elif path == "/busy.pyth" and server.failures_left.get(path, 0) > 0:
                    server.failures_left[path] -= 1
                    self.send_error(503, "Service Unavailable")
                elif path == "/drop.pyth" and rng is None:
                    # announce the whole file, send part of it, then drop the connection
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(PAYLOAD)))
                    self.end_headers()
                    self.wfile.write(PAYLOAD[:CUT])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif rng is not None and path != "/norange.pyth":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(PAYLOAD):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(PAYLOAD)}"})
                    else:
                        headers = {"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"}
                        self._send(206, PAYLOAD[start:], headers)
                else:
                    self._send(200, PAYLOAD, {})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                headers = {"Content-Type": "application/octet-stream", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def _no_leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_download_verifies_and_records(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "checkpoints" / "SLOW_8x8_R50.pyth"
    record = fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA.upper(), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert record["sha256"] == SHA and record["verified"] is True and record["size"] == len(PAYLOAD)
    assert record["method"] == "http" and record["path"] == str(dest.resolve())
    assert json.loads(sidecar_path(dest).read_text()) == record
    assert _no_leftovers(dest) == ["SLOW_8x8_R50.pyth", "SLOW_8x8_R50.pyth.json"]


def test_unpinned_download_records_the_hash_to_pin(server: Server, tmp_path: Path) -> None:
    record = fetch_checkpoint(f"{server.url}/ok.pyth", tmp_path / "x.pyth", progress=True, backoff=0.01)
    assert record["sha256"] == SHA and record["verified"] is False and record["expected_sha256"] is None


def test_404_names_the_url_and_the_manual_fix(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "MoCo.pyth"
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint(f"{server.url}/missing.pyth", dest, **FAST)
    message = str(err.value)
    assert message.startswith(f"{server.url}/missing.pyth: HTTP 404")
    assert f"save it as {dest.resolve()}" in message
    assert len(server.requests) == 1  # not retried
    assert not dest.exists()


def test_dropped_connection_is_resumed_with_a_range_request(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "BYOL.pyth"
    fetch_checkpoint(f"{server.url}/drop.pyth", dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/drop.pyth", None), ("/drop.pyth", f"bytes={CUT}-")]
    assert not partial_path(dest).exists()


def test_a_full_disk_is_named_once_not_retried_and_the_partial_file_kept(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import errno

    from dimcollapse.disk_full import DiskFull
    from dimcollapse.models import download

    class Full:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, data: bytes) -> int:
            self.fh.write(data[:1000])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

    monkeypatch.setattr(download, "open", lambda f, mode="r": Full(builtins.open(f, mode)), raising=False)
    dest = tmp_path / "MoCo.pyth"
    with pytest.raises(DiskFull) as err:
        fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA, **FAST)
    message = str(err.value)
    assert message.startswith(f"{partial_path(dest)}: disk full (No space left on device) while writing it: it needs "
                              f"about 1.0 MB ({len(PAYLOAD)} bytes)") and "\n" not in message
    assert f"the partial file {partial_path(dest)} is kept and the next run resumes it" in message
    assert len(server.requests) == 1  # not mistaken for a dropped connection and retried
    assert partial_path(dest).stat().st_size == 1000 and not dest.exists()


def test_partial_file_from_an_earlier_run_is_resumed(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "SwAV.pyth"
    partial_path(dest).write_bytes(PAYLOAD[:1000])
    fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD and server.requests == [("/ok.pyth", "bytes=1000-")]


def test_complete_partial_file_is_moved_into_place(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "SimCLR.pyth"
    partial_path(dest).write_bytes(PAYLOAD)
    fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD and server.requests == [("/ok.pyth", f"bytes={len(PAYLOAD)}-")]


def test_server_ignoring_range_restarts_the_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "x.pyth"
    partial_path(dest).write_bytes(b"stale bytes")
    fetch_checkpoint(f"{server.url}/norange.pyth", dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing_in_place(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "MoCo.pyth"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch: got {SHA}, expected {wrong}; the file was deleted"):
        fetch_checkpoint(f"{server.url}/ok.pyth", dest, wrong, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_transient_errors_are_retried_then_reported(server: Server, tmp_path: Path) -> None:
    server.failures_left["/busy.pyth"] = 2
    fetch_checkpoint(f"{server.url}/busy.pyth", tmp_path / "a.pyth", SHA, **FAST)
    assert len(server.requests) == 3
    server.failures_left["/busy.pyth"] = 10
    with pytest.raises(DownloadError, match=r"/busy.pyth: download failed after 4 attempts \(HTTP 503"):
        fetch_checkpoint(f"{server.url}/busy.pyth", tmp_path / "b.pyth", SHA, **FAST)
    assert not (tmp_path / "b.pyth").exists()


def test_html_page_is_not_a_checkpoint(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="sent an HTML page, not a checkpoint"):
        fetch_checkpoint(f"{server.url}/login.pyth", tmp_path / "x.pyth", **FAST)
    assert not (tmp_path / "x.pyth").exists()


def test_unreachable_server_fails_with_the_manual_fix(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "x.pyth"
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1:{port}/x\.pyth: download failed after 2 attempts .* save it as"):
        fetch_checkpoint(f"http://127.0.0.1:{port}/x.pyth", dest, retries=1, backoff=0.0, timeout=2.0, progress=False)


def _closed_port() -> int:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_within_seconds_without_claiming_a_partial_file(tmp_path: Path) -> None:
    port = _closed_port()
    dest = tmp_path / "x.pyth"
    started = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint(f"http://127.0.0.1:{port}/x.pyth", dest, progress=False)  # the defaults
    elapsed = time.monotonic() - started
    assert "download failed after 4 attempts" in str(err.value) and elapsed < 10, elapsed
    assert ".part" not in str(err.value) and f"save it as {dest.resolve()}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_retries_stop_at_the_retry_window(server: Server, tmp_path: Path) -> None:
    server.failures_left["/busy.pyth"] = 100
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"download failed after [2-4] attempts \(HTTP 503"):
        fetch_checkpoint(f"{server.url}/busy.pyth", tmp_path / "a.pyth", retries=50, backoff=0.2, retry_window=1.0,
                         progress=False)
    assert 2 <= len(server.requests) <= 4 and time.monotonic() - started < 3


def test_a_kept_partial_file_is_named_with_its_size(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "BYOL.pyth"
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint(f"{server.url}/drop.pyth", dest, SHA, **{**FAST, "retries": 0})
    assert f"the partial file {partial_path(dest)} ({CUT} bytes) is kept" in str(err.value)
    assert partial_path(dest).stat().st_size == CUT


def test_a_local_file_fixed_in_place_is_copied_again(tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "MoCo.pyth"
    source.parent.mkdir()
    source.write_bytes(b"a broken first attempt")
    dest = tmp_path / "resources" / "checkpoints" / "moco" / "MoCo.pyth"
    before = local_source_state(str(source))
    fetch_checkpoint(str(source), dest, **FAST)
    source.write_bytes(PAYLOAD)  # the user fixes the file at the same path
    os.utime(source, ns=(before["mtime_ns"] + 10**9,) * 2)
    after = local_source_state(source.as_uri())
    assert after != before and after["size"] == len(PAYLOAD)  # the download rule's param changes
    record = fetch_checkpoint(str(source), dest, SHA, **FAST)  # the stale copy is not reused
    assert record["method"] == "copy" and dest.read_bytes() == PAYLOAD
    assert local_source_state("https://example.org/a.pyth") is None and local_source_state(None) is None
    assert local_source_state("gdrive:abc") is None


def test_a_missing_local_file_fails_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadError, match="no such file"):
        fetch_checkpoint(str(tmp_path / "absent.pyth"), tmp_path / "out" / "absent.pyth", progress=False)
    assert time.monotonic() - started < 1


def test_problems_of_a_copy_name_the_users_file(tmp_path: Path) -> None:
    source = tmp_path / "mine" / "SLOW_8x8_R50.pyth"
    source.parent.mkdir()
    source.write_bytes(b"<html>not a checkpoint</html>")
    dest = tmp_path / "resources" / "SLOW_8x8_R50.pyth"
    fetch_checkpoint(str(source), dest, **FAST)
    message = name_the_source(f"{dest}: is an HTML/XML page, not a PyTorch checkpoint", str(dest))
    assert message.startswith(f"{source} (copied to {dest}): is an HTML/XML page")
    assert message.endswith(f"Fix or replace {source}; the next run copies it again")
    sidecar_path(dest).write_text(json.dumps({"source": "https://example.org/x.pyth", "method": "http"}))
    assert name_the_source("bad file", str(dest)) == "bad file"  # a download names the URL's copy as before


@pytest.mark.parametrize("form", ["path", "file_url"])
def test_local_sources_are_copied(form: str, tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "k400_224_r34_dpc-rnn_runningStats.pth.tar"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "resources" / "checkpoints" / "dpc.pth.tar"
    record = fetch_checkpoint(source.as_uri() if form == "file_url" else str(source), dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD and not dest.is_symlink() and record["method"] == "copy"
    source.write_bytes(b"changed later")
    assert dest.read_bytes() == PAYLOAD  # a copy, not a link
    with pytest.raises(DownloadError, match="no such file"):
        fetch_checkpoint(str(tmp_path / "absent.pth.tar"), tmp_path / "y", **FAST)


def test_local_copy_with_wrong_hash_is_not_kept(tmp_path: Path) -> None:
    source = tmp_path / "a.pyth"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "a.pyth"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch_checkpoint(str(source), dest, "f" * 64, **FAST)
    assert list(dest.parent.iterdir()) == []


def test_google_drive_is_a_manual_download(tmp_path: Path) -> None:
    assert gdrive_id("gdrive:1-WpsKzPNmSWuzoF2_qVfvfLOE1fwWD4x") == "1-WpsKzPNmSWuzoF2_qVfvfLOE1fwWD4x"
    assert gdrive_id("https://drive.google.com/file/d/1jbMg2EAX8armIQA6_0YwfATh_h7rQz4u/view?usp=sharing") == (
        "1jbMg2EAX8armIQA6_0YwfATh_h7rQz4u")
    assert gdrive_id("https://drive.google.com/uc?export=download&id=abc-1") == "abc-1"
    dest = tmp_path / "k400_224_r34_dpc-rnn_runningStats.pth.tar"
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint("gdrive:1-WpsKzPNmSWuzoF2_qVfvfLOE1fwWD4x", dest, **FAST)
    assert "https://drive.google.com/file/d/1-WpsKzPNmSWuzoF2_qVfvfLOE1fwWD4x/view" in str(err.value)
    assert f"save it as {dest.resolve()} (file name 'k400_224_r34_dpc-rnn_runningStats.pth.tar')" in str(err.value)
    dest.write_bytes(PAYLOAD)  # the user put it there by hand
    record = fetch_checkpoint("gdrive:1-WpsKzPNmSWuzoF2_qVfvfLOE1fwWD4x", dest, SHA, **FAST)
    assert record["method"] == "existing" and record["verified"] is True


def test_existing_file_is_reused_or_replaced(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "MoCo.pyth"
    dest.write_bytes(PAYLOAD)
    assert fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA, **FAST)["method"] == "existing"
    assert server.requests == []
    dest.write_bytes(b"an older, different file")
    record = fetch_checkpoint(f"{server.url}/ok.pyth", dest, SHA, **FAST)
    assert record["method"] == "http" and dest.read_bytes() == PAYLOAD
    assert (tmp_path / "MoCo.pyth.sha256-mismatch").read_bytes() == b"an older, different file"


@pytest.mark.parametrize("sha", ["abc", "g" * 64])
def test_malformed_pinned_hash_is_rejected(sha: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        fetch_checkpoint(str(tmp_path / "a"), tmp_path / "b", sha, **FAST)


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unsupported source scheme 'ftp'"):
        fetch_checkpoint("ftp://example.org/a.pyth", tmp_path / "a.pyth", **FAST)
