"""A TCP proxy on loopback that a test can take down and bring back, to make an object store
unreachable the way a restarting node or a network cut does: while it is closed nothing listens
on its port (connections are refused) and every connection through it was cut. It can also
answer every request with S3's 503 SlowDown, as an overloaded service does."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.objects.moto_server import free_port


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``close`` and ``open`` switch it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._slowing_down = False
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        """Listen again on the same port (retrying a moment while the old socket is freed)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        give_up = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.05)
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every connection through the proxy."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._cut()

    def slow_down(self, on: bool = True) -> None:
        """Answer each request with 503 SlowDown (cutting the connections open now), or,
        with ``on`` false, forward again."""
        self._slowing_down = on
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            if self._slowing_down:
                threading.Thread(target=answer_slow_down, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # closed meanwhile
                    client.close()
                    upstream.close()
                    return
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            source.close()
            with self._lock:
                self._connections -= {source, sink}


SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(SLOW_DOWN_BODY), SLOW_DOWN_BODY)
)


def answer_slow_down(client: socket.socket) -> None:
    """Read one request's head, answer 503 SlowDown, close."""
    with client, contextlib.suppress(OSError):
        client.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and (data := client.recv(65536)):
            head += data
        client.sendall(SLOW_DOWN)
        client.shutdown(socket.SHUT_RDWR)


@contextmanager
def running_proxy(endpoint: str) -> Iterator[Proxy]:
    """A proxy in front of the HTTP server at ``endpoint`` (``http://host:port``)."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    proxy = Proxy(host, int(port))
    try:
        yield proxy
    finally:
        proxy.close()
