"""Limits that keep one client from holding the service: bodies, hosts, abandoned and late work, the queue.

The gate (``middleware.Gatekeeper``) uses these pieces; each is small and
host-neutral (plain ASGI), so uvicorn and Ray run the same rules:

- ``read_body``: a body is read up to a size, with an idle limit per piece
  and a limit for the whole; a body that stalls stops counting against the
  concurrency budget until its next piece comes (``on_stall``/``on_progress``),
  so clients trickling bodies cannot starve everyone else.
- ``run_watched``: the app runs as a task while the client's connection is
  watched; a client that leaves, or a request past its deadline, cancels the
  task, which cancels its chain steps (the batcher skips cancelled steps).
- ``ThroughputMeter`` and ``OverloadedError``: the queue is bounded by the
  questions in it; a request over the bound gets 429 with ``Retry-After`` from
  the expected wait (questions ahead / questions per second lately).
- ``host_allowed``: the optional Host allow-list (``--allowed-host``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable

from ..errors import LoraRouterError

# Endpoints that take a body; every other request must come without one.
BODY_PATHS = re.compile(r"^/v1/(ask|feedback|tasks/[^/]+/predict)$")
BODY_TOTAL_S = 30  # however steadily it trickles, a body has this long to arrive
STALL_S = 1.0  # a body with no new piece for this long stops counting against the concurrency budget
RETRY_AFTER_MAX_S = 60


class OverloadedError(LoraRouterError):
    """More questions queued than the service takes; ``retry_after`` is the expected wait, in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


class ThroughputMeter:
    """Questions computed per second lately (an exponentially weighted average over batches)."""

    def __init__(self, half_life_s: float = 5.0):
        self.half_life_s = half_life_s
        self._rate: float | None = None
        self._last = time.monotonic()

    def record(self, rows: int, seconds: float) -> None:
        if seconds <= 0:
            return
        now = time.monotonic()
        weight = 0.5 ** ((now - self._last) / self.half_life_s)
        rate = rows / seconds
        self._rate = rate if self._rate is None else weight * self._rate + (1 - weight) * rate
        self._last = now

    def retry_after(self, queued: int, fallback: int) -> int:
        """Whole seconds until ``queued`` questions are answered at the recent rate (``fallback`` before any)."""
        if not self._rate:
            return fallback
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(queued / self._rate)))


def takes_body(scope, paths: re.Pattern = BODY_PATHS) -> bool:
    return scope.get("method") == "POST" and paths.match(scope.get("path", "")) is not None


def declares_body(headers: dict) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length not in ("", "0"))


def is_json(headers: dict) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def host_allowed(headers: dict, allowed: list[str]) -> bool:
    """Whether the Host header names one of ``allowed`` (``*.example.com``: any subdomain of it)."""
    host = headers.get("host", "").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # the port is not the host
    for pattern in allowed:
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


async def read_body(receive, *, limit: int, idle_s: float, total_s: float = BODY_TOTAL_S,
                    on_stall: Callable[[], None] = lambda: None,
                    on_progress: Callable[[], None] = lambda: None) -> tuple[bytes | None, str]:
    """The body and ``"ok"``, or None and why not: ``too_large``, ``gone`` (client left), ``timeout``.

    ``on_stall`` is called when no piece has come for ``STALL_S``, ``on_progress`` when one comes after a stall.
    """
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    stalled = False
    chunks, size = [], 0
    pending: asyncio.Future | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(receive())
            now = loop.time()
            wait = min(idle_s - (now - last), total_s - (now - start))
            if not stalled:
                wait = min(wait, STALL_S - (now - last))
            done, _ = await asyncio.wait({pending}, timeout=max(wait, 0))
            now = loop.time()
            if not done:
                if now - last >= idle_s or now - start >= total_s:
                    return None, "timeout"
                if not stalled and now - last >= STALL_S:
                    stalled = True
                    on_stall()
                continue
            message, pending = pending.result(), None
            if message["type"] == "http.disconnect":
                return None, "gone"
            chunk = message.get("body", b"")
            if chunk:
                last = now
                if stalled:
                    stalled = False
                    on_progress()
            size += len(chunk)
            if size > limit:
                return None, "too_large"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), "ok"
    finally:
        if pending is not None:
            pending.cancel()


async def run_watched(app, scope, receive, send, body: bytes, *, timeout_s: float) -> str | None:
    """Run ``app`` on a read ``body`` while watching the client; None when it answered, else why it was stopped.

    ``"disconnect"``: the client left, the app's task was cancelled (and with it its chain steps);
    ``"timeout"``: ``timeout_s`` passed (0: never) and the app was cancelled; the caller answers 504.
    """
    gone = asyncio.Event()
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()  # the app asks only to learn of a disconnect: it comes from the watcher
        return {"type": "http.disconnect"}

    work = asyncio.ensure_future(app(scope, replay, send))
    watch: asyncio.Future | None = None
    deadline = asyncio.get_running_loop().time() + timeout_s if timeout_s else None
    try:
        while True:
            watch = watch or asyncio.ensure_future(receive())
            left = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait({work, watch}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()  # the app's own exception, if any, goes to the caller
                return None
            if watch in done:
                if watch.result()["type"] == "http.disconnect":
                    gone.set()
                    await _cancel(work)
                    return "disconnect"
                watch = None  # more of a pipelined request: keep watching
                continue
            await _cancel(work)
            return "timeout"
    finally:
        if watch is not None and not watch.done():
            watch.cancel()
        if not work.done():
            await _cancel(work)


async def _cancel(task: asyncio.Future) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
