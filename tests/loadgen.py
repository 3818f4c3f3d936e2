"""A bounded HTTP load for zero-downtime tests: count every failed request while something switches.

Threads send ``GET`` requests to one URL: some open a new connection per request (``Connection: close``),
some keep one keep-alive connection (reopened only after an error or when the server closes it). The load
stops at ``max_requests`` requests in total, after ``max_seconds``, or when :meth:`Load.stop` is called.
A failure is any non-2xx answer or any exception (refused, reset, truncated body, timeout), counted by
kind, e.g. ``"keepalive: RemoteDisconnected"`` or ``"new: HTTP 502"``. The body of each good answer is
counted as the version seen (the sandbox app's ``/version`` answers its tag).

Typical use::

    from loadgen import Load

    with Load("http://10.213.0.11/version", host="app.test", max_requests=20_000) as load:
        load.wait_for(200)                      # the load is flowing
        deploy_v2()                             # whatever switches
        load.wait_for(load.requests + 2000)     # keep going a while after the switch
    result = load.result                        # set when the block ends (it stops the load)
    assert result.failed == 0, result.summary()
    assert result.last_versions() == {"v2"}

Or in one call, bounded: ``run_load(url, requests=2000)`` returns a :class:`LoadResult`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

NEW = "new"  # a new connection per request
KEEPALIVE = "keepalive"  # one connection kept open


@dataclass
class LoadResult:
    """What a load saw, all threads together."""

    requests: int = 0
    failures: Counter = field(default_factory=Counter)  # "<kind>: <what>" -> count
    versions: Counter = field(default_factory=Counter)  # body of good answers -> count
    by_kind: Counter = field(default_factory=Counter)  # "new" / "keepalive" -> requests
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per request, sorted
    tail: list[str] = field(default_factory=list)  # the versions of the last good answers, oldest first
    retried: int = 0  # requests sent again on a new connection after a reused one was closed (retry_stale)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def last_versions(self, count: int = 20) -> set[str]:
        """The versions among the last ``count`` good answers (after a switch: only the new one)."""
        return set(self.tail[-count:])

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * p))]

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f}s ({dict(self.by_kind)}), {self.failed} failed "
                f"{dict(self.failures)}, versions {dict(self.versions)}, latency ms p50 "
                f"{self.percentile(0.5) * 1000:.0f} p99 {self.percentile(0.99) * 1000:.0f} "
                f"max {self.percentile(1.0) * 1000:.0f}" + (f", {self.retried} retried" if self.retried else ""))


class Load:
    """A load on ``url`` in background threads; see the module's docstring.

    ``host``: the ``Host`` header to send (routing by host). ``new_connection_threads`` /
    ``keepalive_threads``: how many threads of each kind. ``max_requests``: the total bound (all threads);
    ``max_seconds``: the time bound; ``timeout``: seconds per request.
    """

    TAIL = 200

    def __init__(self, url: str, *, host: str | None = None, new_connection_threads: int = 2,
                 keepalive_threads: int = 1, max_requests: int = 100_000, max_seconds: float = 300,
                 timeout: float = 10, tls: ssl.SSLContext | None = None, retry_stale: bool = False) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or (parsed.scheme == "https") != bool(tls):
            raise ValueError(f"an http:// URL, or an https:// one with a TLS context, is needed, not {url!r}")
        self.address, self.port = parsed.hostname, parsed.port or (443 if tls else 80)
        self.tls = tls
        # As browsers and curl do: a GET on a reused keep-alive connection that the server closed before
        # answering (e.g. when a proxy reloads its config) is sent once more on a new connection.
        self.retry_stale = retry_stale
        self.path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self.headers = {"Host": host} if host else {}
        self.kinds = [NEW] * new_connection_threads + [KEEPALIVE] * keepalive_threads
        self.max_requests, self.max_seconds, self.timeout = max_requests, max_seconds, timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._partial = LoadResult()
        self.result: LoadResult | None = None

    # ----- control -----

    def start(self) -> Load:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, args=(kind,), daemon=True, name=f"load-{kind}-{i}")
                         for i, kind in enumerate(self.kinds)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        """Stop the threads (each finishes its request in flight) and return the result."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.result is None:
            with self._lock:
                result = self._partial
                result.seconds = time.monotonic() - self._started
                result.latencies.sort()
            self.result = result
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> int:
        """Requests made so far (all threads)."""
        with self._lock:
            return self._partial.requests

    @property
    def failed(self) -> int:
        with self._lock:
            return self._partial.failed

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait_for(self, requests: int, timeout: float = 120) -> bool:
        """Block until ``requests`` requests were made in total (False: the load ended or time ran out first)."""
        deadline = time.monotonic() + timeout
        while self.requests < requests:
            if not self.running or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for the load to reach its own bounds, then return the result."""
        for thread in self._threads:
            thread.join(timeout)
        return self.stop()

    # ----- the threads -----

    def _take(self) -> bool:
        """Reserve one request within the bounds."""
        with self._lock:
            if (self._stop.is_set() or self._partial.requests >= self.max_requests
                    or time.monotonic() - self._started > self.max_seconds):
                return False
            self._partial.requests += 1
            return True

    def _work(self, kind: str) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = dict(self.headers)
        if kind == NEW:
            headers["Connection"] = "close"
        while self._take():
            started = time.perf_counter()
            failure = version = None
            retried = False
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    conn = self._connect(headers)
                try:
                    conn.request("GET", self.path, headers=headers)
                    response = conn.getresponse()
                    body = response.read().decode(errors="replace").strip()
                    failure = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                    version = body if failure is None else None
                    if kind == NEW or response.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as error:
                    failure = type(error).__name__
                    conn.close()
                    conn = None
                    if (self.retry_stale and reused and attempt == 1
                            and isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError,
                                                   BrokenPipeError))):
                        retried = True
                        continue
                break
            elapsed = time.perf_counter() - started
            with self._lock:
                result = self._partial
                result.by_kind[kind] += 1
                result.retried += retried
                result.latencies.append(elapsed)
                if failure is not None:
                    result.failures[f"{kind}: {failure}"] += 1
                else:
                    result.versions[version] += 1
                    result.tail.append(version)
                    if len(result.tail) > 2 * self.TAIL:
                        del result.tail[:-self.TAIL]
        if conn is not None:
            conn.close()

    def _connect(self, headers: dict[str, str]) -> http.client.HTTPConnection:
        if self.tls:
            return HTTPSConnection(self.address, self.port, headers.get("Host"), self.tls, self.timeout)
        return http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)


class HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address with another name for SNI and the certificate check (the ``Host`` routed by)."""

    def __init__(self, address: str, port: int, server_name: str | None, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_name = server_name or address

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)


def run_load(url: str, requests: int, **options: object) -> LoadResult:
    """A load of exactly ``requests`` requests (unless ``max_seconds`` ends it first), waited for."""
    return Load(url, max_requests=requests, **options).start().wait()  # type: ignore[arg-type]
