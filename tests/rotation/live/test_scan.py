"""``rotation.live.scan.read_live``: aiohttp metadata reads, on real and scripted servers.

The workers read through one aiohttp session per Vault, with one keep-alive
connection per worker. Against real OpenBao dev servers (plain HTTP, and TLS on an extra
listener with a certificate made here) every answer must equal hvac's read,
a connection the server resets between two reads is reopened, and a denied
token maps to exit 1 without the token in the message. What OpenBao never
sends (chunked bodies, ``Connection: close``, HTTP/1.0 bodies up to the
close, interim 1xx answers, answers that trickle in, never come, or are not
HTTP at all) comes from
:class:`ScriptedServer`, a loopback socket server answering each request
with what the test says: every one ends in data or a documented exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hvac
import pytest
from rich.console import Console

from kernel.spec.model import StaticSecret
from rotation.errors import BadInput, CheckFailed, RotationError, VaultUnavailable
from rotation.kv import LiveMetadata, read_metadata
from rotation.live import scan, transport
from rotation.live.declared import Declared
from rotation.live.scan import read_live
from rotation.progress import progress_bar
from rotation.vault import VaultTarget
from tests.conftest import REPO_ROOT
from tests.rotation.tcp_proxy import TcpProxy
from tests.servers import free_port, start_openbao

TOKEN = "s.CANARY-live-reader-token-6d1f"  # a test token; must never be printed

# --------------------------------------------------------------------------- helpers


def secret(path: str, mount: str = "secret") -> StaticSecret:
    """A static secret (only mount and path matter here), built without the spec's checks.

    Paths the spec refuses (spaces, non-ASCII) are built too: the reader must
    quote whatever it is given.
    """
    return StaticSecret.model_construct(mount=mount, path=path, keys=("K",), version=1,
                                        declared_source="provided")


def declared(address: str, paths: list[str]) -> list[Declared]:
    """``Declared`` entries for ``paths`` on one Vault (token from ``VAULT_TOKEN``)."""
    vault = VaultTarget(address)
    return [Declared("prod", vault, secret(p), 1, "Pulumi.prod.yaml", None, "Pulumi.prod.yaml")
            for p in paths]


def metadata_doc(version: int = 1) -> dict[str, Any]:
    """A KV v2 metadata answer shaped like OpenBao's (nanosecond timestamps)."""
    versions = {str(n): {"created_time": f"2026-01-0{n}T03:04:05.123456789Z",
                         "deletion_time": "", "destroyed": False}
                for n in range(1, version + 1)}
    return {"request_id": "r", "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": {"cas_required": False, "created_time": "2026-01-01T03:04:05.123456789Z",
                     "current_version": version, "custom_metadata": {"owner": "payments"},
                     "updated_time": f"2026-01-0{version}T03:04:05.123456789Z",
                     "versions": versions},
            "wrap_info": None, "warnings": None, "auth": None}


def expected(path: str, version: int = 1) -> LiveMetadata:
    """What :func:`read_live` must return for :func:`metadata_doc`."""
    utc = dt.UTC
    return LiveMetadata(
        mount="secret", path=path, current_version=version,
        updated_time=dt.datetime(2026, 1, version, 3, 4, 5, 123456, tzinfo=utc),
        created_time=dt.datetime(2026, 1, 1, 3, 4, 5, 123456, tzinfo=utc),
        version_times={n: dt.datetime(2026, 1, n, 3, 4, 5, 123456, tzinfo=utc)
                       for n in range(1, version + 1)},
        custom_metadata={"owner": "payments"})


def response(status: int, body: bytes, *headers: str, reason: str = "X",
             version: str = "1.1") -> bytes:
    """An HTTP response with a Content-Length (unless a header says otherwise)."""
    lines = [f"HTTP/{version} {status} {reason}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK = response(200, json.dumps(metadata_doc()).encode(), reason="OK")

# A handler gets the request number (1-based, over every connection), the connection's own
# request number, the raw request and the socket; it sends what it likes and returns whether
# the server keeps the connection open.
Handler = Callable[[int, int, bytes, socket.socket], bool]


class ScriptedServer:
    """A loopback HTTP/1.1 server answering each request through a test's handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.accepted = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def address(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        own = 0
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                request, _, buffer = buffer.partition(b"\r\n\r\n")
                own += 1
                with self._lock:
                    self.requests.append(request)
                    number = len(self.requests)
                if not self.handler(number, own, request, conn):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], ScriptedServer]]:
    """Start scripted servers on demand (``VAULT_TOKEN`` is :data:`TOKEN`); stop them after."""
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy", "VAULT_CLIENT_CERT"):
        monkeypatch.delenv(name, raising=False)
    servers: list[ScriptedServer] = []

    def start(handler: Handler) -> ScriptedServer:
        server = ScriptedServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def answer(data: bytes, keep: bool = True) -> Handler:
    """A handler sending ``data`` to every request."""
    def handler(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        conn.sendall(data)
        return keep
    return handler


def failure(call: Callable[[], object]) -> RotationError:
    """Run ``call``; return the rotation error it raised, checking it never shows the token."""
    with pytest.raises(RotationError) as info:
        call()
    assert TOKEN not in str(info.value) and TOKEN not in (info.value.hint or "")
    return info.value


# --------------------------------------------------------------------------- scripted servers


def test_the_request_is_a_plain_get_with_the_vault_headers(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(OK))
    got = read_live(declared(f"{server.address}/vault/", ["teams/a b/café"]))
    assert got == {("prod", "secret/teams/a b/café"): expected("teams/a b/café")}
    head, *lines = server.requests[0].decode().split("\r\n")
    assert head == "GET /vault/v1/secret/metadata/teams/a%20b/caf%C3%A9 HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines)
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["X-Vault-Token"] == TOKEN
    assert headers["X-Vault-Request"] == "true"


def test_keep_alive_one_connection_per_worker(scripted: Callable[[Handler], ScriptedServer],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_WORKERS", 3)
    server = scripted(answer(OK))
    paths = [f"svc/{i}" for i in range(200)]
    got = read_live(declared(server.address, paths))
    assert got == {("prod", f"secret/{p}"): expected(p) for p in paths}
    assert len(server.requests) == 200
    assert server.accepted <= 3


def test_chunked_bodies_split_anywhere(scripted: Callable[[Handler], ScriptedServer]) -> None:
    body = json.dumps(metadata_doc(3)).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                       for part in (body[:7], body[7:100], body[100:])) + b"0\r\n\r\n"
    data = response(200, chunked, "Transfer-Encoding: chunked")

    def trickle(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        for i in range(0, len(data), 61):  # cuts through chunk sizes and CRLFs
            conn.sendall(data[i:i + 61])
            time.sleep(0.002)
        return True

    server = scripted(trickle)
    got = read_live(declared(server.address, ["a", "b"]))
    assert got == {("prod", "secret/a"): expected("a", 3), ("prod", "secret/b"): expected("b", 3)}


@pytest.mark.parametrize("header", ["Connection: close", None])
def test_a_server_closing_after_its_answer_gets_a_new_connection(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch,
        header: str | None) -> None:
    """Announced (``Connection: close``) or not (a kept-alive connection closed while idle)."""
    monkeypatch.setattr(scan, "MAX_WORKERS", 1)
    body = json.dumps(metadata_doc()).encode()
    server = scripted(answer(response(200, body, *([header] if header else [])), keep=False))
    paths = ["a", "b", "c"]
    got = read_live(declared(server.address, paths))
    assert got == {("prod", f"secret/{p}"): expected(p) for p in paths}
    assert server.accepted == 3
    assert len(server.requests) == 3


def test_a_reused_connection_closed_without_an_answer_is_exit_3(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_WORKERS", 1)

    def first_only(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        if number == 1:
            conn.sendall(OK)
            return True
        return False  # every later request: the connection closes without an answer

    server = scripted(first_only)
    error = failure(lambda: read_live(declared(server.address, ["a", "b", "c"])))
    assert isinstance(error, VaultUnavailable) and error.exit_code == 3
    assert "cannot reach Vault" in str(error) and "secret/b" in str(error)
    assert len(server.requests) <= 3  # b failed (at most one reconnect): c never asked


def test_a_connection_closed_without_an_answer_is_retried_once_then_exit_3(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(lambda number, own, request, conn: False)
    error = failure(lambda: read_live(declared(server.address, ["a"])))
    assert isinstance(error, VaultUnavailable)
    assert server.accepted == 2


def test_a_truncated_body_is_exit_3(scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(OK[:-20], keep=False))
    error = failure(lambda: read_live(declared(server.address, ["a"])))
    assert isinstance(error, VaultUnavailable) and "cannot reach Vault" in str(error)


def test_an_http10_body_up_to_the_close(scripted: Callable[[Handler], ScriptedServer]) -> None:
    body = json.dumps(metadata_doc(2)).encode()
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
    server = scripted(answer(head + body, keep=False))
    got = read_live(declared(server.address, ["a", "b"]))
    assert got == {("prod", "secret/a"): expected("a", 2), ("prod", "secret/b"): expected("b", 2)}


def test_an_interim_100_continue_is_skipped(scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    assert read_live(declared(server.address, ["a"])) == {("prod", "secret/a"): expected("a")}


def test_a_slow_answer_within_the_timeout_is_read(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "DEFAULT_TIMEOUT_SECONDS", 1)

    def slow(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        for i in range(0, len(OK), 50):
            time.sleep(0.03)  # well under the timeout each, well over it in total
            conn.sendall(OK[i:i + 50])
        return True

    server = scripted(slow)
    assert read_live(declared(server.address, ["a"])) == {("prod", "secret/a"): expected("a")}


def test_no_answer_within_the_timeout_is_exit_3(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "DEFAULT_TIMEOUT_SECONDS", 0.5)
    release = threading.Event()

    def silent(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        release.wait(10)
        return False

    server = scripted(silent)
    start = time.monotonic()
    try:
        error = failure(lambda: read_live(declared(server.address, ["a"])))
    finally:
        release.set()
    assert time.monotonic() - start < 5
    assert isinstance(error, VaultUnavailable) and "cannot reach Vault" in str(error)


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.2p1\r\n",
    b"HTTP/1.1 2xx OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}",
], ids=["not-http", "bad-status", "bad-length"])
def test_an_answer_that_is_not_http_is_exit_3(scripted: Callable[[Handler], ScriptedServer],
                                              data: bytes) -> None:
    server = scripted(answer(data))
    error = failure(lambda: read_live(declared(server.address, ["a"])))
    assert isinstance(error, VaultUnavailable) and error.exit_code == 3


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"data": null}', b"[1]"])
def test_a_200_that_is_not_kv_metadata_is_exit_3(scripted: Callable[[Handler], ScriptedServer],
                                                 body: bytes) -> None:
    server = scripted(answer(response(200, body)))
    error = failure(lambda: read_live(declared(server.address, ["a"])))
    assert isinstance(error, VaultUnavailable) and "not KV v2 metadata" in str(error)


@pytest.mark.parametrize(("status", "errors", "kind", "says"), [
    (403, ["1 error occurred:\n\t* permission denied\n\n"], CheckFailed, "permission denied"),
    (401, [], CheckFailed, "token rejected"),
    (503, ["Vault is sealed"], VaultUnavailable, "is sealed"),
    (500, ["internal error"], VaultUnavailable, "internal error"),
    (400, ["bad request"], CheckFailed, "bad request"),
    (429, ["request path \"secret/metadata/a\": rate limit quota exceeded"], VaultUnavailable,
     "rate-limiting"),
])
def test_error_statuses_map_like_hvac(scripted: Callable[[Handler], ScriptedServer],
                                      status: int, errors: list[str], kind: type[RotationError],
                                      says: str) -> None:
    server = scripted(answer(response(status, json.dumps({"errors": errors}).encode())))
    error = failure(lambda: read_live(declared(server.address, ["a"])))
    assert type(error) is kind, error
    assert says in str(error)


def test_a_404_is_a_missing_secret(scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(response(404, b'{"errors":[]}')))
    assert read_live(declared(server.address, ["a"])) == {("prod", "secret/a"): None}


def test_the_first_failure_stops_the_run(scripted: Callable[[Handler], ScriptedServer],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    denied = response(403, b'{"errors":["permission denied"]}')
    server = scripted(lambda n, own, req, conn: conn.sendall(denied if n == 40 else OK) is None)
    known_at: list[int] = []  # requests the server had when the reader learned of the failure
    fail = scan._Scan.fail

    def counted_fail(self: scan._Scan, exc: BaseException) -> None:
        known_at.append(len(server.requests))
        fail(self, exc)

    monkeypatch.setattr(scan._Scan, "fail", counted_fail)
    error = failure(lambda: read_live(declared(server.address, [f"s/{i}" for i in range(3000)])))
    assert isinstance(error, CheckFailed) and error.exit_code == 1
    # Each worker finishes at most the request it is in when the failure is known: counted
    # from then (how many requests other workers make while the 403 travels is timing).
    total = len(server.requests)  # a count: a failed assertion never prints the requests
    assert known_at and known_at[0] >= 40  # the 403 answered request 40 (1-based)
    assert total - known_at[0] <= scan.MAX_WORKERS, (total, known_at[0])
    assert total < 3000


@pytest.mark.parametrize("token", ["abc\r\nX-Evil: 1", "tok\u2603en"])
def test_a_token_that_cannot_be_a_header_is_bad_input(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch,
        token: str) -> None:
    server = scripted(answer(OK))
    monkeypatch.setenv("VAULT_TOKEN", token)
    with pytest.raises(BadInput) as info:
        read_live(declared(server.address, ["a"]))
    assert token not in str(info.value) and "VAULT_TOKEN" in str(info.value)
    assert server.requests == []


def test_the_progress_bar_shows_on_a_terminal_and_goes_away(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(OK))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress_bar("drift: reading KV metadata", console=console) as advance:
        got = read_live(declared(server.address, [f"s/{i}" for i in range(300)]),
                        advance=advance)
    assert len(got) == 300
    assert "drift: reading KV metadata" in out.getvalue()
    assert "300/300" in out.getvalue()
    quiet = io.StringIO()
    with progress_bar("drift", console=Console(file=quiet)) as advance:
        read_live(declared(server.address, ["a"]), advance=advance)
    assert quiet.getvalue() == ""


def test_the_reader_reports_progress_through_its_callback_only(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(answer(OK))
    calls: list[tuple[int, int]] = []
    got = read_live(declared(server.address, [f"s/{i}" for i in range(300)]),
                    advance=lambda n, total: calls.append((n, total)))
    assert len(got) == 300
    assert sum(n for n, _ in calls) == 300 and {total for _, total in calls} == {300}


def test_nothing_declared_reads_nothing() -> None:
    assert read_live([]) == {}


def test_the_callers_thread_keeps_its_event_loop_state(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    """Pulumi's runtime asks for the current loop: a read must not leave the thread with none.

    ``asyncio.run`` on the caller's thread would (it sets the current loop to
    None when it ends), and every later Pulumi mock test in the process failed.
    A fresh interpreter, so this process's loop state is not the test's subject.
    """
    server = scripted(answer(OK))
    code = textwrap.dedent(f"""
        import asyncio, warnings
        from rotation.live.scan import paths_exist, read_live
        from rotation.vault import VaultTarget
        from tests.rotation.live.test_scan import declared
        assert len(read_live(declared({server.address!r}, ["a"]))) == 1
        assert paths_exist(VaultTarget({server.address!r}), ["sys/x"]) == {{"sys/x": True}}
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop()  # raises once the current loop was set to None
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_paths_exist_answers_each_path_and_hands_back_each_error(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    """drift's credential rows: 200 exists, 404 does not, a denied read is its mapped error."""
    answers = {b"present": response(200, b'{"data": {}}'), b"absent": response(404, b"{}"),
               b"denied": response(403, b'{"errors": ["permission denied"]}')}

    def by_path(number: int, own: int, request: bytes, conn: socket.socket) -> bool:
        target = request.split(b" ", 2)[1]
        conn.sendall(next(a for name, a in answers.items() if target.endswith(name)))
        return True

    server = scripted(by_path)
    paths = [f"identity/oidc/key/{name}" for name in ("present", "absent", "denied")]
    found = scan.paths_exist(VaultTarget(server.address), paths)
    assert found["identity/oidc/key/present"] is True
    assert found["identity/oidc/key/absent"] is False
    denied = found["identity/oidc/key/denied"]
    assert isinstance(denied, CheckFailed) and "permission denied" in str(denied)
    assert TOKEN not in str(denied)
    assert sorted(r.split(b" ", 2)[1] for r in server.requests) == [
        f"/v1/{p}".encode() for p in sorted(paths)]
    assert scan.paths_exist(VaultTarget(server.address), []) == {}


def test_paths_exist_counts_any_success_as_there(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    """hvac's adapter raised only from 400 on: a 204 is a path that exists, as it was."""
    server = scripted(answer(response(204, b"")))
    assert scan.paths_exist(VaultTarget(server.address), ["sys/x"]) == {"sys/x": True}


@pytest.mark.parametrize(("variables", "named"), [
    ({"VAULT_CACERT": "not-a-certificate.pem"}, "VAULT_CACERT="),
    ({"VAULT_CLIENT_CERT": "not-a-certificate.pem"}, "VAULT_CLIENT_CERT="),
])
def test_tls_files_that_hold_no_certificate_are_bad_input(
        scripted: Callable[[Handler], ScriptedServer], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, variables: dict[str, str], named: str) -> None:
    """Exit 2 naming the variable and its path, before any request; never the file's content."""
    server = scripted(answer(OK))
    for name, file in variables.items():
        (tmp_path / file).write_text("CANARY-not-pem-content\n")
        monkeypatch.setenv(name, str(tmp_path / file))
    for call in (lambda: read_live(declared(server.address, ["a"])),
                 lambda: scan.paths_exist(VaultTarget(server.address), ["sys/x"])):
        with pytest.raises(BadInput) as info:
            found = call()
            raise AssertionError(f"read without its TLS settings: {found}")
        assert info.value.exit_code == 2
        assert named in str(info.value) and str(tmp_path) in str(info.value)
        assert "CANARY" not in str(info.value) and "CANARY" not in (info.value.hint or "")
    assert server.requests == []


def test_paths_exist_on_a_vault_that_does_not_answer_is_exit_3(
        scripted: Callable[[Handler], ScriptedServer]) -> None:
    server = scripted(lambda number, own, request, conn: False)
    found = scan.paths_exist(VaultTarget(server.address), ["sys/mounts/database"])
    error = found["sys/mounts/database"]
    assert isinstance(error, VaultUnavailable) and error.exit_code == 3
    assert "cannot reach Vault" in str(error) and "sys/mounts/database" in str(error)


# --------------------------------------------------------------------------- real OpenBao


def seed(client: hvac.Client, count: int) -> dict[str, int]:
    """Write ``count`` secrets (various versions, metadata, deletions); return path -> versions."""
    versions: dict[str, int] = {}
    for i in range(count):
        path = f"reader/{i:03d}"
        versions[path] = 1 + i % 3
        for v in range(versions[path]):
            client.secrets.kv.v2.create_or_update_secret(path=path, secret={"V": f"x{v}"},
                                                         mount_point="secret")
        if i % 7 == 0:
            client.secrets.kv.v2.update_metadata(path=path, mount_point="secret",
                                                 custom_metadata={"owner": f"team-{i}"})
        if i % 11 == 0:
            client.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point="secret")
    return versions


@pytest.mark.integration
def test_a_real_server_gives_what_hvac_reads(openbao: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    monkeypatch.delenv("VAULT_CLIENT_CERT", raising=False)
    client = openbao.client()
    versions = seed(client, 60)
    paths = [*versions, "reader/missing-1", "reader/missing-2"]
    want = {("prod", f"secret/{p}"): read_metadata(client, "secret", p) for p in paths}
    assert want[("prod", "secret/reader/missing-1")] is None
    assert want[("prod", "secret/reader/007")] is not None
    assert want[("prod", "secret/reader/007")].custom_metadata == {"owner": "team-7"}
    with TcpProxy(openbao.port) as proxy:
        monkeypatch.setattr(scan, "MAX_WORKERS", 4)
        assert read_live(declared(proxy.address, paths)) == want
        assert proxy.accepted == 4  # one keep-alive connection per worker


@pytest.mark.integration
def test_connections_the_server_side_dropped_are_reopened(
        openbao: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = openbao.client()
    seed(client, 2)
    token = openbao.root_token

    async def two_reads(address: str) -> tuple[LiveMetadata | None, LiveMetadata | None]:
        first, second = declared(address, ["reader/000", "reader/001"])
        async with transport.vault_session(address, 1) as session:
            before = await transport.read_one(session, first, token)
            proxy.cut()  # resets the kept-alive connection (a restarted load balancer, say)
            proxy.restore()
            return before, await transport.read_one(session, second, token)

    with TcpProxy(openbao.port) as proxy, ThreadPoolExecutor(1) as apart:
        # asyncio.run in a thread of its own, as read_live does: on the main thread it would
        # leave that thread without an event loop for the Pulumi mock tests after it.
        before, got = apart.submit(asyncio.run, two_reads(proxy.address)).result()
        assert before is not None
        assert got is not None and got.current_version == 2
        assert proxy.accepted == 2


@pytest.mark.integration
def test_a_denied_token_is_exit_1_and_never_shown(openbao: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client = openbao.client()
    seed(client, 1)
    client.sys.create_or_update_acl_policy(
        name="data-only", policy='path "secret/data/*" { capabilities = ["read"] }')
    token = client.auth.token.create(policies=["data-only"], ttl="10m")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_TOKEN", token)
    with pytest.raises(CheckFailed) as info:
        read_live(declared(openbao.address, ["reader/000"]))
    assert info.value.exit_code == 1 and "permission denied" in str(info.value)
    assert token not in str(info.value)
    client.sys.seal()
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    with pytest.raises(VaultUnavailable) as sealed:
        read_live(declared(openbao.address, ["reader/000"]))
    assert "sealed" in str(sealed.value) and openbao.root_token not in str(sealed.value)


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a ``127.0.0.1`` server certificate; return (ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "live-reader test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.mark.integration
def test_https_on_a_real_server_with_the_configured_ca(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    tls_port = free_port()
    listener = (f'listener "tcp" {{\n  address = "127.0.0.1:{tls_port}"\n'
                f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n}}\n')
    server = start_openbao(tmp_path / "openbao", extra_config=listener)
    try:
        versions = seed(server.client(), 30)
        address = f"https://127.0.0.1:{tls_port}"
        monkeypatch.setenv("VAULT_TOKEN", server.root_token)
        for name in ("VAULT_CLIENT_CERT", "VAULT_CAPATH", "REQUESTS_CA_BUNDLE",
                     "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAULT_CACERT", str(ca))
        monkeypatch.setattr(scan, "MAX_WORKERS", 3)
        got = read_live(declared(address, list(versions)))
        assert {k[1]: v.current_version for k, v in got.items() if v is not None} == {
            f"secret/{p}": n for p, n in versions.items()}
        # Without our CA the certificate is refused: exit 3, as hvac's SSLError would be.
        monkeypatch.delenv("VAULT_CACERT")
        with pytest.raises(VaultUnavailable) as info:
            read_live(declared(address, ["reader/000"]))
        assert "SSLError" in str(info.value) and server.root_token not in str(info.value)
        # A CA file that cannot be read is bad input, before any request.
        monkeypatch.setenv("VAULT_CACERT", str(tmp_path / "missing.pem"))
        with pytest.raises(BadInput):
            read_live(declared(address, ["reader/000"]))
    finally:
        server.stop()
