"""Limits on a request's head that uvicorn does not set: its size (431) and the time to send it (408).

What uvicorn 0.30-0.54 offers, read from its source: ``timeout_keep_alive``
closes a connection idle *between* requests, but any byte received cancels
that timer and nothing times the head itself, so a client trickling a
header a byte every few seconds holds its connection forever;
``h11_max_incomplete_event_size`` bounds the head only under the h11
protocol, while uvicorn picks httptools whenever it is installed, and
httptools takes a 1 MB header or 20,000 headers (answered 200). So this
module wraps whichever protocol uvicorn picks (``GuardedHttp``) and, below
the ASGI app, counts the bytes and the time of each request's head: more
than ``max_header_bytes`` is 431, longer than ``header_timeout_s`` is 408,
each answered in the service's JSON error shape, the connection closed.

The limits come with uvicorn's ``Config`` (``config.lora_router_limits``,
set by ``serving.host``), so they reach ``--workers`` processes too.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

DEFAULT_LIMITS = {"max_header_bytes": 16384, "header_timeout_s": 10.0}
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttp(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol with a size and a time limit on each request's head."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        limits = getattr(config, "lora_router_limits", None) or DEFAULT_LIMITS
        self._max_head = limits["max_header_bytes"]
        self._head_timeout = limits["header_timeout_s"]
        self._in_head = True  # bytes now received belong to a request's line and headers
        self._head_bytes = 0
        self._tail = b""  # the last bytes seen, for an end of head split across reads
        self._head_timer = None
        self._head_cycle = None  # the request whose head was seen last

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that sends nothing at all is timed too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head and self._head_cycle is not None and self._head_cycle.response_complete:
            self._in_head, self._head_bytes, self._tail = True, 0, b""  # the next request on this connection
            self._arm()
        ended = False
        if self._in_head:
            # The head ends at the first blank line; the parser below sees the bytes only once they fit.
            end = (self._tail + data).find(b"\r\n\r\n")
            ended = end >= 0
            head = self._head_bytes + (end + 4 - len(self._tail) if ended else len(data))
            if head > self._max_head:
                self._refuse(431, f"the request's line and headers exceed {self._max_head} bytes "
                                  "(--max-header-bytes)")
                return
            self._head_bytes, self._tail = head, (self._tail + data)[-3:]
        super().data_received(data)
        if ended:
            self._in_head, self._head_cycle = False, self.cycle
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"the request's line and headers did not arrive within {self._head_timeout:g} s "
                              "(--header-timeout)")

    def _refuse(self, status: int, message: str) -> None:
        error_type = "timeout" if status == 408 else "headers_too_large"
        body = json.dumps({"error": message, "error_type": error_type}).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body)
        self.transport.close()
        self._disarm()
