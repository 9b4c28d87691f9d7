"""Prometheus metrics every Signet service exposes on ``GET /metrics``.

`service_app` installs two things for every service: `MetricsMiddleware`, which
counts requests and times them by *route template* (``/v1/certificates/{serial}``,
never the raw path: serials and hashes would make one series per request, and
the path of an unknown URL is whatever a caller typed), and the ``/metrics``
endpoint.  Components declare their own metrics with prometheus-client in one
module each (`signet.signer.metrics`); they land in the same registry.

Several worker processes (``signet signer serve --workers N``): each uvicorn
worker is a separate process with its own memory, and a scrape reaches
whichever worker accepts the connection.  With the default in-memory registry
every scrape would show one worker's counts, jumping between workers, and
`rate()` would be nonsense.  So whoever starts several workers enters
`multiprocess_environment` and passes what it yields to them: prometheus-client's
multiprocess mode then keeps every value in memory-mapped files under a fresh
directory (``PROMETHEUS_MULTIPROC_DIR``, read when prometheus-client is first
imported, hence set by the parent before the workers start), and a scrape sums
the files of all workers with `MultiProcessCollector`.  The directory must be
fresh for each start, or counters would resume from a previous run's files.
When a worker exits, `forget_this_process` drops its live gauges (counters and
histograms of a dead worker keep counting towards the totals, as they must).
Per-process collectors (memory, CPU, GC) are left out in that mode: they would
describe one worker picked at random.

A separate metrics port (`serve_metrics`, ``--metrics-port``): in a cluster the
NetworkPolicies admit only a service's peers and the operator to its API port,
so Prometheus scrapes a second listener that serves ``/metrics`` and nothing
else (no API route, no /readyz).  It runs in the process that starts uvicorn:
with one worker that process serves the API too and shares its registry; with
several it is the supervisor, which sums the workers' files like any scrape.
``/metrics`` stays on the API port as well (the embedded `signet up` has no
metrics port and is scraped there).

Nothing on ``/metrics`` is secret: labels are route templates, methods, status
codes, and small fixed vocabularies chosen by the code (levels, outcomes,
certificate kinds), never a token, PIN, document name, serial or hash.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: prometheus-client reads this once, when first imported, to pick its storage.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: From a 1-page TSA reply (well under 1 ms) to a 200 MB document (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: The route label of requests that matched no route (their path is not a label).
UNMATCHED = "unmatched"
#: The status label of a request whose client hung up before it was read (nginx's 499):
#: the server answers nobody, and a load balancer's timeout is not a server error.
CLIENT_CLOSED = 499
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: How a gauge combines its workers' values (prometheus-client's multiprocess modes).
GaugeMode = Literal["livemax", "livesum", "livemin", "livemostrecent", "max", "sum", "mostrecent"]

HTTP_REQUESTS = Counter(
    "signet_http_requests_total",
    "HTTP requests answered, by service, method, route template and status code.",
    ["service", "method", "route", "status"],
)
#: Requests the gate (signet.common.gate) refused before the route ran, by why:
#: no_token (401), wrong_scope (403), too_large (413), slow_body (408); and by the
#: HTTP protocol before it (signet.common.protocol): head_too_large (431), slow_head
#: (408), bad_head (400, a head the parser cannot read).  A rising
#: count is someone probing or a client misconfigured; the HTTP counter shows the
#: same answers by route, this one says which guard gave them.
GATE_REFUSED = Counter(
    "signet_gate_refused_total",
    "Requests the request gate refused before any work, by reason.",
    ["reason"],
)
HTTP_DURATION = Histogram(
    "signet_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its answer.",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)


def multiprocess_mode() -> bool:
    """Whether this process keeps its values in the shared directory (see the module doc)."""
    return MULTIPROC_ENV in os.environ


@contextmanager
def multiprocess_environment(service: str, workers: int) -> Iterator[dict[str, str]]:
    """Environment for the worker processes of one start of `service`.

    For the process that starts the workers (the CLI), not for the workers:
    it yields ``{PROMETHEUS_MULTIPROC_DIR: fresh directory}`` when `workers` > 1
    (nothing for one worker, whose in-memory registry is already complete) and
    removes the directory once the workers are gone.
    """
    if workers <= 1:
        yield {}
        return
    directory = tempfile.mkdtemp(prefix=f"signet-metrics-{service}-")
    try:
        yield {MULTIPROC_ENV: directory}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def gauge(
    name: str, documentation: str, labelnames: Sequence[str] = (), *, mode: GaugeMode = "livemax"
) -> Gauge:
    """A gauge that also means something with several workers.

    Counters and histograms add up across processes; a gauge must say how to
    combine them.  The default, ``livemax``, reports the largest value among
    the running workers (right for a size that every worker sees, such as a
    ledger's); ``livesum`` suits per-worker amounts (open sessions).  The
    ``live`` modes forget a worker once it exits (`forget_this_process`).
    """
    return Gauge(name, documentation, labelnames, multiprocess_mode=mode)


def scrape() -> bytes:
    """The text exposition format of every metric of this service (all workers)."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


#: Media type of `scrape`'s output.
CONTENT_TYPE = CONTENT_TYPE_LATEST


#: Seconds a connection to the metrics port may sit idle (no request, or between
#: keep-alive requests) before it is closed: each connection holds a thread.
METRICS_IDLE_TIMEOUT = 10.0


class MetricsPortError(RuntimeError):
    """The metrics port cannot be served (in use, the API's own port, no such address)."""


class _MetricsOnly(BaseHTTPRequestHandler):
    """``GET /metrics``; every other path is 404, every other method 501."""

    server_version = "signet-metrics"
    server: _MetricsServer

    def setup(self) -> None:
        super().setup()
        # A socket timeout: an idle client is dropped and its thread freed.
        self.connection.settimeout(self.server.idle_timeout)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "this port serves /metrics only")
            return
        body = scrape()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a scrape every few seconds is not worth a log line."""


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    idle_timeout: float = METRICS_IDLE_TIMEOUT


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


def _bind(host: str, port: int, idle_timeout: float) -> _MetricsServer:
    """A listener on `host` in its own address family (``::`` is IPv6, ``0.0.0.0`` IPv4,
    a name whatever it resolves to first), as uvicorn binds the API port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = _MetricsServer6 if family == socket.AF_INET6 else _MetricsServer
        server = server_class((host, port), _MetricsOnly)
    except OSError as exc:  # gaierror, address in use, not available, permission
        reason = exc.strerror or str(exc)
        raise MetricsPortError(f"cannot serve /metrics on {host} port {port}: {reason}") from exc
    server.idle_timeout = idle_timeout
    return server


@contextmanager
def serve_metrics(
    host: str,
    port: int | None,
    *,
    api_port: int | None = None,
    idle_timeout: float = METRICS_IDLE_TIMEOUT,
) -> Iterator[ThreadingHTTPServer | None]:
    """Serve `scrape` on ``http://host:port/metrics`` from a thread while the block runs.

    For the process that runs uvicorn (the CLI's ``serve``), around ``uvicorn.run``;
    `port` None: nothing is started (``/metrics`` on the API port only); 0: a free
    port (the server's ``server_address`` says which).  The listener binds before
    the block starts, so a port in use fails at once, as `MetricsPortError` (one
    line); so does `port` equal to `api_port`, which the API itself needs.  A
    connection idle for `idle_timeout` seconds is closed (each holds a thread).
    """
    if port is None:
        yield None
        return
    if api_port is not None and port == api_port:
        raise MetricsPortError(
            f"the metrics port {port} is the API port: give the metrics a port of their own"
        )
    server = _bind(host, port, idle_timeout)
    thread = threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def forget_this_process() -> None:
    """Drop this worker's live gauges from the shared directory; call when it exits."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def warn_if_incomplete(service: str) -> None:
    """Log once when this looks like one of several workers without a shared directory."""
    if not multiprocess_mode() and multiprocessing.parent_process() is not None:
        log.warning(
            "%s runs in a child process without %s: /metrics counts only the worker "
            "that answers the scrape (start workers inside multiprocess_environment)",
            service,
            MULTIPROC_ENV,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (pure ASGI, a few µs each).

    The template is known only after routing, which stores the matched route in
    the request's scope; requests that match none are labelled `UNMATCHED`.
    A request that raises counts as 500 (what the server then answers), unless
    its client went away first (`CLIENT_CLOSED`).
    Label children are cached per (method, route, status) — a bounded set, since
    methods outside the standard ones are labelled ``OTHER``.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except ClientDisconnect:
            status = CLIENT_CLOSED
            raise
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(self.service, method, route, str(status)),
                HTTP_DURATION.labels(self.service, method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
