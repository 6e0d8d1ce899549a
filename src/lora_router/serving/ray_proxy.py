"""Ray Serve's HTTP proxy, made safe for a replica that dies: requests it held are sent again.

Ray Serve's proxy installs the middlewares that
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names, read when each proxy
starts: ``lora_router.serving.ray_proxy:proxy_middlewares``. This module
imports nothing of the service, so a proxy process stays light.
"""

from __future__ import annotations

import asyncio
import json
import logging

logger = logging.getLogger(__name__)

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "lora_router.serving.ray_proxy:proxy_middlewares"
REPLAY_TRIES = 3
REPLAY_MAX_BODY = (1 << 20) + 1  # the app refuses bodies over 1 MiB anyway


class ReplayLostRequests:
    """Ray Serve proxy middleware: a request whose replica died before answering is sent again.

    When a replica's process dies with requests in flight, Ray's proxy sends
    no response and the client gets a bare 500, indistinguishable from a bug.
    Every endpoint of this app only reads, so the proxy can safely send the
    request again: Ray's router has dropped the dead replica by then and picks
    a live one. After ``tries`` the answer is a 503 with ``Retry-After``, a
    status a client can act on. A response the app started is never replayed,
    nor a request whose client went away.
    """

    def __init__(self, app, tries: int = REPLAY_TRIES, max_body: int = REPLAY_MAX_BODY):
        self.app = app
        self.tries = tries
        self.max_body = max_body
        self.replayed = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/-/"):
            await self.app(scope, receive, send)
            return
        body, complete, gone = await _read_body(receive, self.max_body)
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
            self.replayed += 1
            logger.warning("%s %s: the replica answering it stopped before answering; sending it again (%d/%d)",
                           scope.get("method"), scope.get("path"), attempt + 1, self.tries)
            await asyncio.sleep(0.05 * (attempt + 1))
        message = json.dumps({"error": f"no replica answered after {self.tries} tries; retry later",
                              "error_type": "unavailable"}).encode("utf-8")
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                (b"content-length", str(len(message)).encode())]})
        await send({"type": "http.response.body", "body": message})


async def _read_body(receive, limit: int) -> tuple[bytes, bool, bool]:
    """(body read, whether it is complete, whether the client went away)."""
    body = b""
    while True:
        message = await receive()
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

    return [Middleware(ReplayLostRequests)]
