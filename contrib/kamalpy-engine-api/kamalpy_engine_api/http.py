"""A small HTTP/1.1 client over any byte stream (here the stdin/stdout of ``docker system dial-stdio``).

One request at a time, the connection kept alive between them. Bodies with ``Content-Length`` or
``Transfer-Encoding: chunked``, or until the stream ends. Nothing else of HTTP is needed to talk to dockerd.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from kamalpy_engine_api.translate import Reply

MAX_HEADER = 64 * 1024


class ByteStream(Protocol):
    def sendall(self, data: bytes) -> None: ...

    def recv(self, size: int) -> bytes: ...


class ProtocolError(Exception):
    """The other end does not speak HTTP/1.1 as expected, or went away mid-reply."""


class HttpClient:
    def __init__(self, stream: ByteStream, host: str = "docker") -> None:
        self.stream = stream
        self.host = host
        self._buffer = bytearray()
        self.closed = False  # the reply ended the connection (no length, or ``Connection: close``)

    @staticmethod
    def encode(method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None,
               headers: Mapping[str, str] | None = None, host: str = "docker") -> bytes:
        """The request's bytes: exactly what goes over the stream (tests compare them)."""
        target = path + (f"?{urlencode(dict(query))}" if query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: kamalpy-engine-api"]
        payload = b""
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            lines.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(payload)}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    def request(self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        if self.closed:
            raise ProtocolError("the connection was closed by the previous reply")
        self.stream.sendall(self.encode(method, path, query, body, headers, self.host))
        return self.read_reply(method)

    # ----- reading -----
    def _fill(self) -> None:
        chunk = self.stream.recv(65536)
        if not chunk:
            raise EOFError("the stream ended")
        self._buffer += chunk

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 2]
                return line
            if len(self._buffer) > MAX_HEADER:
                raise ProtocolError("header line too long")
            self._fill()

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_reply(self, method: str = "GET") -> Reply:
        while True:
            status_line = self._line().decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"not an HTTP reply: {status_line[:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            while True:
                line = self._line()
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200 and status != 101:
                continue  # an interim reply (100 Continue): the real one follows
            break
        if headers.get("connection", "").lower() == "close":
            self.closed = True
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Reply(status, b"", headers)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Reply(status, self._chunked(), headers)
        if "content-length" in headers:
            return Reply(status, self._exactly(int(headers["content-length"])), headers)
        self.closed = True  # the body runs to the end of the stream
        body = bytearray(self._buffer)
        self._buffer.clear()
        while True:
            chunk = self.stream.recv(65536)
            if not chunk:
                return Reply(status, bytes(body), headers)
            body += chunk

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, then the blank line
                    pass
                return bytes(body)
            body += self._exactly(size)
            if self._exactly(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
