"""The gate every HTTP request passes: request id, auth, limits, access log, metrics, last-resort 500.

A plain ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task per
request and hides disconnects). What it refuses it answers itself, in the
app's error shape ``{"error", "error_type"}``:

- 401 without ``Authorization: Bearer <key>`` when a key is set (``/health`` is open);
- 429 with ``Retry-After`` over ``max_concurrent_requests`` in flight (probes are exempt);
- 413 for a body over ``max_body_bytes`` (read up to the limit, never further);
- 408 for a body that does not arrive within ``BODY_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid

from .metrics import ServiceMetrics
from .settings import ServeSettings

access_log = logging.getLogger("lora_router.access")
logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
BODY_TIMEOUT_S = 30  # a client that never finishes its body must not hold a slot forever
_GONE = b"<client disconnected>"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def error_body(message: str, error_type: str, **extra) -> bytes:
    return json.dumps({"error": message, "error_type": error_type, **extra}, ensure_ascii=False).encode("utf-8")


class Gatekeeper:
    """Wrap an ASGI app with the service's checks, logs and metrics."""

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
        try:
            refusal = self._refuse(scope, headers, path, counted)
            if refusal is not None:
                await _respond(send_with_id, *refusal)
                return
            if counted:
                self.in_flight += 1
                self.metrics.in_flight.set(self.in_flight)
            try:
                try:
                    body, too_large = await asyncio.wait_for(self._read_body(scope, receive, headers),
                                                             BODY_TIMEOUT_S)
                except asyncio.TimeoutError:  # noqa: UP041 - distinct from TimeoutError on Python 3.10
                    await _respond(send_with_id, 408, error_body(
                        f"the request body did not arrive within {BODY_TIMEOUT_S} s", "timeout"))
                    return
                if too_large:
                    await _respond(send_with_id, 413, error_body(
                        f"request body is larger than {self.settings.max_body_bytes} bytes", "payload_too_large"))
                    return
                if body is _GONE:
                    status["code"] = 499  # the client left before sending its whole body
                    return
                if body is not None and "json" not in headers.get("content-type", ""):
                    # Every body this API takes is JSON: read it as JSON whatever the client said (curl -d: form).
                    scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
                    scope["headers"].append((b"content-type", b"application/json"))
                await self.app(scope, _replay(body, receive), send_with_id)
            finally:
                if counted:
                    self.in_flight -= 1
                    self.metrics.in_flight.set(self.in_flight)
        except Exception:  # noqa: BLE001 - the service stays up; the traceback goes to the log
            if not status["started"]:  # else the app's own 500 handler answered and logged it
                logger.exception("internal error in %s %s (request id %s)", scope.get("method"), _printable(path),
                                 request_id)
                await _respond(send_with_id, 500, error_body(
                    "internal error; the server logged it with this request id", "internal", request_id=request_id))
        finally:
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

    async def _read_body(self, scope, receive, headers: dict) -> tuple[bytes | None, bool]:
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return None, False
        limit = self.settings.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return None, True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _GONE, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

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


def _replay(body: bytes | None, receive):
    if body is None:
        return receive
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _printable(path: str) -> str:
    """The path with control characters escaped: a request for ``/x%0A...`` must not write a line of its own
    into a text log (JSON logs escape it themselves)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
