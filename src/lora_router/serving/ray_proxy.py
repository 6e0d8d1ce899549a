"""Ray Serve's HTTP proxy, made safe for a replica that dies and for slow or keyless clients.

Ray Serve's proxy installs the middlewares that
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names, read when each proxy
starts: ``lora_router.serving.ray_proxy:proxy_middlewares``. This module
imports nothing of the service, so a proxy process stays light.

The proxy buffers a body to be able to send it again, so it is where a body
is first read: it checks the key first (from ``LORA_ROUTER_API_KEY`` or the
file ``LORA_ROUTER_API_KEY_FILE`` names, in the proxy's environment; never
from an argument), and it gives up on a body that stalls.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "lora_router.serving.ray_proxy:proxy_middlewares"
KEY_ENV, KEY_FILE_ENV = "LORA_ROUTER_API_KEY", "LORA_ROUTER_API_KEY_FILE"
# One replay: a replica that died is replaced in Ray's routing by then; a request that itself kills
# its replica must not take a second one down with it (it used to be replayed up to 3 times).
REPLAY_TRIES = 2
REPLAY_MAX_BODY = (1 << 20) + 1  # the app refuses bodies over 1 MiB anyway
BODY_IDLE_S = 10.0  # the wait for the next piece of a body, as the app's --body-timeout
BODY_TOTAL_S = 30.0
OPEN_PATHS = ("/health", "/-/")


def proxy_key() -> bytes | None:
    """The key requests must bear, from the proxy's environment (the variable, or the file it names)."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key and os.environ.get(KEY_FILE_ENV):
        lines = Path(os.environ[KEY_FILE_ENV]).read_text("utf-8").splitlines()
        key = lines[0].strip() if lines else ""
    return key.encode("utf-8") if key else None


class ReplayLostRequests:
    """Ray Serve proxy middleware: a request whose replica died before answering is sent again.

    When a replica's process dies with requests in flight, Ray's proxy sends
    no response and the client gets a bare 500, indistinguishable from a bug.
    Every endpoint of this app only reads, so the proxy can safely send the
    request again: Ray's router has dropped the dead replica by then and picks
    a live one. It is sent again once (``tries=2``): a proxy cannot tell a
    replica that died of something else from one this very request killed,
    and the second kind must not take more replicas down. After ``tries`` the
    answer is a 503 with ``Retry-After``, a status a client can act on. A
    response the app started is never replayed, nor a request whose client
    went away. With ``key``, a request without it is refused before its body
    is read; a body piece that takes over ``idle_s`` is a 408.
    """

    def __init__(self, app, tries: int = REPLAY_TRIES, max_body: int = REPLAY_MAX_BODY, key: bytes | None = None,
                 idle_s: float = BODY_IDLE_S, total_s: float = BODY_TOTAL_S):
        self.app = app
        self.tries = tries
        self.max_body = max_body
        self.key = key
        self.idle_s, self.total_s = idle_s, total_s
        self.replayed = 0

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/-/"):
            await self.app(scope, receive, send)
            return
        if self.key is not None and not path.startswith(OPEN_PATHS) and scope.get("method") != "OPTIONS":
            headers = dict(scope.get("headers", []))
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), self.key):
                await _answer(send, 401, "missing or wrong API key; send Authorization: Bearer <key>", "unauthorized",
                              [(b"www-authenticate", b"Bearer"), (b"connection", b"close")])
                return
        try:
            body, complete, gone = await asyncio.wait_for(_read_body(receive, self.max_body, self.idle_s),
                                                          self.total_s)
        except asyncio.TimeoutError:  # noqa: UP041 - distinct from TimeoutError on Python 3.10
            await _answer(send, 408, f"the request body stalled for {self.idle_s:g} s or took over "
                                     f"{self.total_s:g} s", "timeout", [(b"connection", b"close")])
            return
        if gone:
            return
        if not complete:  # too large to hold: no replay, the app answers it (413)
            await self.app(scope, _replay(body, receive, more=True, state={}), send)
            return
        for attempt in range(self.tries):
            state = {"started": False, "gone": False}

            async def tracked(message, state=state):
                if message["type"] == "http.response.start":
                    state["started"] = True
                await send(message)

            await self.app(scope, _replay(body, receive, more=False, state=state), tracked)
            if state["started"] or state["gone"]:
                return
            if attempt + 1 == self.tries:
                break
            self.replayed += 1
            logger.warning("%s %s: the replica answering it stopped before answering; sending it again (%d/%d)",
                           scope.get("method"), scope.get("path"), attempt + 1, self.tries)
            await asyncio.sleep(0.05 * (attempt + 1))
        await _answer(send, 503, f"no replica answered after {self.tries} tries; retry later", "unavailable",
                      [(b"retry-after", b"1")])


async def _answer(send, status: int, error: str, error_type: str, headers: list) -> None:
    message = json.dumps({"error": error, "error_type": error_type}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(message)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": message})


async def _read_body(receive, limit: int, idle_s: float = BODY_IDLE_S) -> tuple[bytes, bool, bool]:
    """(body read, whether it is complete, whether the client went away); ``TimeoutError`` on a stalled piece."""
    body = b""
    while True:
        message = await asyncio.wait_for(receive(), idle_s)
        if message["type"] == "http.disconnect":
            return body, False, True
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body, True, False
        if len(body) > limit:
            return body, False, False


def _replay(body: bytes, receive, *, more: bool, state: dict):
    """An ASGI ``receive`` that gives ``body`` first, then defers to the client's (more body, or disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        message = await receive()
        if message["type"] == "http.disconnect":
            state["gone"] = True
        return message

    return replay


def proxy_middlewares() -> list:
    """What Ray Serve's HTTP proxy runs before routing (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    from starlette.middleware import Middleware

    return [Middleware(ReplayLostRequests, key=proxy_key())]
