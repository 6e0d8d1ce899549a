"""The gate every HTTP request passes: request id, auth, limits, access log, metrics, last-resort 500.

A plain ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task per
request and hides disconnects). What it refuses it answers itself, in the
app's error shape ``{"error", "error_type"}``:

- 401 without ``Authorization: Bearer <key>`` when a key is set (``/health`` is open);
- 400 for a Host not in ``allowed_hosts`` (when set), or a body sent with a GET;
- 429 with ``Retry-After`` over ``max_concurrent_requests`` in flight (probes are exempt; a body that
  stalls stops counting until it moves again);
- 415 for a POST whose body is not ``application/json`` (a cross-site form cannot send JSON);
- 413 for a body over ``max_body_bytes`` (read up to the limit, never further);
- 408 for a body that stalls ``body_timeout_s`` or takes over 30 s;
- 504 (with the request id) for a request not answered in ``request_timeout_s``;
- and a client that leaves stops its work (``limits.run_watched``).

A body is read only on the endpoints that take one, and only after the key
check: a body sent elsewhere is never read, and its connection is closed.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid

from .limits import BODY_PATHS, BODY_TOTAL_S, declares_body, host_allowed, is_json, read_body, run_watched, takes_body
from .metrics import ServiceMetrics
from .settings import ServeSettings

access_log = logging.getLogger("lora_router.access")
logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
ADMIN_PREFIX = "/admin/"
_CLOSE = [(b"connection", b"close")]  # what was not read of a request must not be read as the next one
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def error_body(message: str, error_type: str, **extra) -> bytes:
    return json.dumps({"error": message, "error_type": error_type, **extra}, ensure_ascii=False).encode("utf-8")


class Gatekeeper:
    """Wrap an ASGI app with the service's checks, logs and metrics."""

    body_paths = BODY_PATHS  # the POST paths whose JSON body is read; every other request must come without one

    def __init__(self, app, *, settings: ServeSettings, metrics: ServiceMetrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.in_flight = 0
        self._key = settings.key().encode("utf-8") if settings.key() else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given_id = headers.get("x-request-id", "")
        request_id = given_id if _REQUEST_ID.match(given_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        status = {"code": 500, "started": False}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        counted = path not in PROBE_PATHS
        state = {"counted": False}

        def count(on: bool) -> None:  # a stalled body stops counting against the budget until it moves again
            if counted and state["counted"] != on:
                state["counted"] = on
                self.in_flight += 1 if on else -1
                self.metrics.in_flight.set(self.in_flight)

        try:
            if self.settings.allowed_hosts and not host_allowed(headers, self.settings.allowed_hosts):
                self.metrics.refused.labels("host").inc()
                await _respond(send_with_id, 400, error_body(
                    f"this service does not answer for host {headers.get('host', '')!r} (--allowed-host)",
                    "bad_request"), _CLOSE)
                return
            refusal = self._refuse(scope, headers, path, counted)
            if refusal is not None:
                code, message, extra = refusal
                await _respond(send_with_id, code, message, extra + (_CLOSE if declares_body(headers) else []))
                return
            if not takes_body(scope, self.body_paths):
                if declares_body(headers):  # never read: answered (or refused) with the connection closed after
                    if scope.get("method") not in ("POST", "PUT", "PATCH"):
                        await _respond(send_with_id, 400, error_body(
                            f"{scope.get('method')} {path} takes no body", "bad_request"), _CLOSE)
                        return
                    send_with_id = _closing(send_with_id)
                count(True)
                await self.app(scope, _no_body(receive) if declares_body(headers) else receive, send_with_id)
                return
            if not is_json(headers):
                self.metrics.refused.labels("content_type").inc()
                await _respond(send_with_id, 415, error_body(
                    f"send the body as JSON with Content-Type: application/json (got "
                    f"{headers.get('content-type') or 'none'!r})", "unsupported_media_type"), _CLOSE)
                return
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.settings.max_body_bytes:
                await _respond(send_with_id, 413, _too_large(self.settings), _CLOSE)
                return
            count(True)
            body, outcome = await read_body(receive, limit=self.settings.max_body_bytes,
                                            idle_s=self.settings.body_timeout_s, on_stall=lambda: count(False),
                                            on_progress=lambda: count(True))
            if outcome == "timeout":
                await _respond(send_with_id, 408, error_body(
                    f"the request body stalled for {self.settings.body_timeout_s:g} s (--body-timeout) or took "
                    f"more than {BODY_TOTAL_S} s", "timeout"), _CLOSE)
                return
            if outcome == "too_large":
                await _respond(send_with_id, 413, _too_large(self.settings), _CLOSE)
                return
            if outcome == "gone":
                status["code"] = 499  # the client left before sending its whole body
                return
            count(True)
            # A promotion waits for every worker or replica to load the new export: no answer deadline.
            timeout_s = 0 if path.startswith(ADMIN_PREFIX) else self.settings.request_timeout_s
            stopped = await run_watched(self.app, scope, receive, send_with_id, body, timeout_s=timeout_s)
            if stopped is not None:
                self.metrics.abandoned.labels(stopped).inc()
                if stopped == "disconnect":
                    status["code"] = 499
                elif not status["started"]:
                    await _respond(send_with_id, 504, error_body(
                        f"no answer within {self.settings.request_timeout_s:g} s (--request-timeout); the work "
                        f"was stopped", "timeout", request_id=request_id))
        except Exception:  # noqa: BLE001 - the service stays up; the traceback goes to the log
            if not status["started"]:  # else the app's own 500 handler answered and logged it
                logger.exception("internal error in %s %s (request id %s)", scope.get("method"), _printable(path),
                                 request_id)
                await _respond(send_with_id, 500, error_body(
                    "internal error; the server logged it with this request id", "internal", request_id=request_id))
        finally:
            count(False)
            self._record(scope, path, status["code"], time.perf_counter() - t0, request_id)

    def _refuse(self, scope, headers: dict, path: str, counted: bool):
        if self._key is not None and path not in OPEN_PATHS and scope.get("method") != "OPTIONS":
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), self._key):
                return 401, error_body("missing or wrong API key; send Authorization: Bearer <key>",
                                       "unauthorized"), [(b"www-authenticate", b"Bearer")]
        if counted and self.in_flight >= self.settings.max_concurrent_requests:
            return 429, error_body(
                f"the server is answering {self.in_flight} requests, its limit; retry after "
                f"{self.settings.retry_after_s} s", "overloaded"), [
                (b"retry-after", str(self.settings.retry_after_s).encode())]
        return None

    def _record(self, scope, path: str, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path_format", None) or getattr(route, "path", None) or "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        state = scope.get("state", {})
        chain_routes = state.get("chain_routes")
        access_log.info(
            "%s %s %s %d %.1fms%s", request_id, scope.get("method"), _printable(path), status, seconds * 1000,
            f" route={','.join(chain_routes)}" if chain_routes else "",
            extra={"request_id": request_id, "method": scope.get("method"), "path": path, "endpoint": endpoint,
                   "status": status, "latency_ms": round(seconds * 1000, 3), "routes": chain_routes},
        )


def _no_body(receive):
    """A receive that says the body is empty: a body sent where none is taken is never read."""

    async def empty():
        return {"type": "http.request", "body": b"", "more_body": False}

    return empty


def _closing(send):
    async def send_closing(message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_CLOSE]
        await send(message)

    return send_closing


def _too_large(settings: ServeSettings) -> bytes:
    return error_body(f"request body is larger than {settings.max_body_bytes} bytes (--max-body-bytes)",
                      "payload_too_large")


async def _respond(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _printable(path: str) -> str:
    """The path with control characters escaped: a request for ``/x%0A...`` must not write a line of its own
    into a text log (JSON logs escape it themselves)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
