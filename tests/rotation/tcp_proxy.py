"""A loopback TCP proxy a test can cut off and restore, to make Vault unreachable on cue.

``TcpProxy(upstream_port)`` listens on a free loopback port and forwards each
connection to the upstream with two pump threads. ``cut()`` resets every open
connection and, until ``restore()``, resets new ones as soon as they are
accepted: the client sees "connection reset", as when a firewall or a dead
load balancer drops Vault. The listening socket stays open, so the port
cannot be taken by someone else meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (SO_LINGER 0) instead of a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<upstream_port> until cut."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """The proxy's URL, for hvac or ``--address``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                if self._closed:
                    _reset(client)
                    return
                if self._cut:
                    self.refused += 1
                    _reset(client)
                    continue
                self.accepted += 1
            try:
                upstream = self._connect_upstream()
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        """Open the connection a new client is forwarded to (subclasses may pick the server)."""
        return socket.create_connection(self.upstream, timeout=5)

    def _before_forward(self, chunk: bytes, to_server: bool) -> None:
        """Subclasses may delay or observe each chunk here (``to_server``: client -> Vault)."""

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            to_server = dst.getpeername()[1] == self.upstream[1]
        except OSError:
            to_server = False
        try:
            while chunk := src.recv(65536):
                self._before_forward(chunk, to_server)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        """Reset every open connection and every new one until :meth:`restore`."""
        with self._lock:
            self._cut = True
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)

    def restore(self) -> None:
        """Forward again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        """Stop listening and drop everything."""
        with self._lock:
            self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
