"""An HTTP CONNECT proxy on 127.0.0.1 that a test controls: it can cut the network and restore it.

gRPC clients use a proxy named in `grpc_proxy` (or `https_proxy`), so a site started with
`grpc_proxy=http://127.0.0.1:<port>` reaches the server only through here, while TLS still runs
end to end between the site and the server. `cut()` resets every open tunnel and resets each new
connection at once (the site sees the server as unreachable); `restore()` forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


def _reset(sock: socket.socket) -> None:
    """Close with an RST, the way a dropped link or a firewall reject ends a connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class ConnectProxy:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.tunnels = 0  # tunnels opened so far
        self.refused = 0  # connections reset while the network was cut
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            tunnel_sockets, self._open = self._open, set()
        for sock in tunnel_sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    self.refused += 1
                    _reset(client)
                    continue
                self._open.add(client)
            threading.Thread(target=self._tunnel, args=(client,), daemon=True, name="proxy-tunnel").start()

    def _tunnel(self, client: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = client.recv(4096)
                if not data or len(request) > 16384:
                    raise OSError("not a CONNECT request")
                request += data
            method, target = request.split(b" ", 2)[:2]
            host, port = target.decode().rsplit(":", 1)
            if method != b"CONNECT" or host not in ("127.0.0.1", "localhost"):
                raise OSError(f"refusing {method!r} {target!r}")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            upstream.settimeout(None)
        except (OSError, ValueError):
            self._drop(client)
            return
        with self._lock:
            if self._cut or client not in self._open:
                _reset(upstream)
                return
            self._open.add(upstream)
            self.tunnels += 1
        try:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(request.split(b"\r\n\r\n", 1)[1])
        except OSError:
            self._drop(client)
            self._drop(upstream)
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True, name="proxy-pipe").start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        self._drop(source)
        self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
