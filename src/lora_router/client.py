"""A Python client of ``lora-router serve``: ``Client`` and ``AsyncClient`` (httpx).

Why: every team that called the service wrote its own HTTP client with its own
retry rules. This one answers with the library's own types (``ChainAnswer``,
``ClassificationResult`` ...: plain dicts at run time, equal to what
``OnnxRouter`` gives in process) and raises the library's own exceptions
(``InputError``, ``UnknownTaskError``, and the ``ServiceError`` family below),
so code written against the router in process moves to the service unchanged.

It imports httpx and nothing heavy (no torch, onnxruntime, numpy or FastAPI),
so an assistant's process stays small.

Retries follow one ``RetryPolicy`` shared by both clients: a broken connection,
a 429 (too many requests in flight) and a 503 (models loading) are tried again,
waiting what the server's ``Retry-After`` asks (or a doubling backoff when it
asks nothing), each wait up to ``jitter`` longer at random so refused clients
come back apart, within ``max_attempts`` tries and ``max_total_s`` seconds.
Any other 4xx is the caller's to fix and raises at once; so do a 500 and a
timeout (the caller's own bound). Every call is idempotent (inference only), so
repeating one is safe.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote

import httpx

from . import __version__
from .errors import ConfigError, InputError, LoraRouterError, UnknownTaskError

if TYPE_CHECKING:  # the types only: importing core would import numpy
    from .core.results import ChainAnswer, TaskResult

logger = logging.getLogger(__name__)

API_KEY_ENV = "LORA_ROUTER_API_KEY"  # the same variable `lora-router serve` reads (serving.settings.API_KEY_ENV)
DEFAULT_URL = "http://127.0.0.1:8080"
MAX_CLIENT_BATCH = 64  # the service's default --max-client-batch: longer lists are sent in parts


class ServiceError(LoraRouterError):
    """An error answer of the service: ``status``, ``error_type`` (the body's), ``request_id`` (the server logs it)."""

    def __init__(self, message: str, *, status: int, error_type: str = "", request_id: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.error_type, self.request_id, self.retry_after = status, error_type, request_id, retry_after


class AuthenticationError(ServiceError):
    """401: the service wants an API key this client did not send, or sent wrong."""


class InvalidInputError(ServiceError, InputError):
    """422: a question the service cannot answer (empty, not a string); the message names the field."""


class InputTooLargeError(ServiceError, InputError):
    """413: a question longer than the service takes, or too many in one request."""


class TaskNotServedError(ServiceError, UnknownTaskError):
    """404: a task the served models do not have; ``tasks`` lists those they have."""

    def __init__(self, message: str, *, tasks: Sequence[str] = (), **kw):
        super().__init__(message, **kw)
        self.tasks = list(tasks)


class ServiceBusyError(ServiceError):
    """429 or 503 still after the retries: too many requests in flight, or models loading; see ``retry_after``."""


class ServerError(ServiceError):
    """A 5xx the client does not retry (500: look up ``request_id`` in the server's log)."""


class ServiceUnreachableError(LoraRouterError, ConnectionError):
    """No connection to the service, still after the retries."""


class ServiceTimeoutError(LoraRouterError, TimeoutError):
    """The service did not answer within the client's ``timeout``."""


@dataclass(frozen=True)
class RetryPolicy:
    """When a call is tried again, how long it waits, and when it gives up. Both clients use it."""

    max_attempts: int = 5  # tries in all, the first included; 1 turns retries off
    max_total_s: float = 30.0  # no wait starts that would end later than this after the call began
    backoff_s: float = 0.25  # the first wait when the server gives no Retry-After; it doubles per retry
    max_backoff_s: float = 4.0
    jitter: float = 0.25  # each wait is up to this share longer, at random; never shorter than asked

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be a whole number >= 1, got {self.max_attempts!r}")
        for name in ("max_total_s", "backoff_s", "max_backoff_s", "jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first): the server's ask, or the backoff."""
        base = retry_after if retry_after is not None else min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        return base * (1 + self.jitter * rng.random())


NO_RETRIES = RetryPolicy(max_attempts=1)


class _Attempts:
    """One call's tries under a ``RetryPolicy``: after each failure, the wait before the next, or the error.

    Shared by ``Client`` and ``AsyncClient``, which differ only in how they send and sleep.
    """

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rng: random.Random, url: str,
                 key_source: str | None, timeout: Any):
        self.policy, self.clock, self.rng, self.url = policy, clock, rng, url
        self.key_source, self.timeout = key_source, timeout
        self.started = clock()
        self.failures = 0

    def after(self, failure: httpx.Response | httpx.TransportError) -> float:
        """The seconds to wait before trying again; raises the error to give up with instead."""
        self.failures += 1
        if isinstance(failure, httpx.Response):
            error = _service_error(failure, self.key_source)
            retryable = failure.status_code in (429, 503)
            retry_after = error.retry_after
        else:
            error = self._transport_error(failure)
            retryable = isinstance(error, ServiceUnreachableError)
            retry_after = None
        cause = failure if isinstance(failure, Exception) else None
        if not retryable:
            raise error from cause
        wait = self.policy.wait(self.failures, retry_after, self.rng)
        elapsed = self.clock() - self.started
        if self.failures >= self.policy.max_attempts or elapsed + wait > self.policy.max_total_s:
            if isinstance(error, ServiceBusyError):
                error.args = (f"{error}; gave up after {self.failures} attempt(s) in {elapsed:.1f} s "
                              f"(RetryPolicy max_attempts={self.policy.max_attempts}, "
                              f"max_total_s={self.policy.max_total_s})",)
            raise error from cause
        logger.info("%s; retry %d in %.2f s", _first_line(error), self.failures, wait)
        return wait

    def _transport_error(self, exc: httpx.TransportError) -> LoraRouterError:
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return ServiceTimeoutError(f"{self.url} gave no answer within the client's timeout ({self.timeout}); "
                                       f"pass a longer timeout= if the service is busy ({exc!r})")
        return ServiceUnreachableError(
            f"cannot reach lora-router serve at {self.url} ({exc!r}) after {self.failures} attempt(s) in "
            f"{self.clock() - self.started:.1f} s; is it running there? (base_url=)")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _service_error(response: httpx.Response, key_source: str | None) -> ServiceError:
    """The library's exception for an error answer, with the server's message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # not the service's JSON: a proxy's page, say
        body = {"error": f"{response.status_code} {response.reason_phrase} from {response.request.url}: "
                         f"{response.text[:300]}"}
    status = response.status_code
    message = str(body.get("error") or f"{status} {response.reason_phrase}")
    kw = {"status": status, "error_type": str(body.get("error_type", "")),
          "request_id": str(body.get("request_id") or response.headers.get("x-request-id", "")),
          "retry_after": _retry_after(response.headers.get("retry-after"))}
    if status == 401:
        sent = (f"this client sent the key from {key_source}" if key_source
                else f"this client sent no key: pass api_key= or set {API_KEY_ENV}")
        return AuthenticationError(f"{message} ({sent})", **kw)
    if status == 404 and "tasks" in body:
        return TaskNotServedError(message, tasks=body["tasks"], **kw)
    if status == 413:
        return InputTooLargeError(message, **kw)
    if status == 422:
        return InvalidInputError(message, **kw)
    if status in (429, 503):
        return ServiceBusyError(message, **kw)
    if status >= 500:
        return ServerError(message + (f" (request id {kw['request_id']})" if kw["request_id"] else ""), **kw)
    return ServiceError(message, **kw)


def _answers(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ServiceError(f"{response.request.url} answered {response.status_code} with no JSON: "
                           f"{response.text[:300]!r}; is base_url a lora-router service?",
                           status=response.status_code) from exc


def _task_result(item: Any) -> TaskResult:
    """The library's result from the service's: TEI's ``[{"label", "score"}, ...]`` to a ``ClassificationResult``."""
    if isinstance(item, list):  # sorted by score, ties in label order: the first is the library's argmax
        return {"predicted_label": item[0]["label"], "confidence": item[0]["score"],
                "probabilities": {s["label"]: s["score"] for s in item}}
    return item


def _warn_truncation(response: httpx.Response) -> None:
    note = response.headers.get("warning")
    if note:  # e.g. 199 lora-router "the question is longer than ... takes; only its first 128 tokens were read"
        warnings.warn(note.split('"', 1)[-1].rstrip('"'), UserWarning, stacklevel=3)


def _texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise InputError(f"{what} takes a list of texts, got one string; use ask() (or predict with a string) "
                         "for one text")
    return list(texts)


def _feedback_body(request_id: str, fields: dict) -> dict:
    """``POST /v1/feedback``'s body: the answer's id and the fields given (the service's defaults for the rest)."""
    return {"request_id": request_id, **{k: v for k, v in fields.items() if v not in (None, False, "")}}


def _predict_path(task: str) -> str:
    return f"/v1/tasks/{quote(task, safe='')}/predict"


def _parts(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


class _Settings:
    """What both clients are made of: where, which key, how long, which retry policy."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float | httpx.Timeout, retry: RetryPolicy,
                 max_batch: int, rng: random.Random | None, clock: Callable[[], float]):
        if api_key is not None:
            self.key_source: str | None = "api_key="
        elif os.environ.get(API_KEY_ENV):
            api_key, self.key_source = os.environ[API_KEY_ENV], API_KEY_ENV
        else:
            self.key_source = None
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be a whole number >= 1, got {max_batch!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retry, self.max_batch, self.clock = timeout, retry, max_batch, clock
        self.rng = rng or random.Random()
        self.headers = {"user-agent": f"lora-router-client/{__version__}"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    def attempts(self) -> _Attempts:
        return _Attempts(self.retry, self.clock, self.rng, self.base_url, self.key_source, self.timeout)


class Client:
    """A client of ``lora-router serve``: the router's ``ask``, ``ask_batch`` and ``predict`` over HTTP.

    >>> with Client("http://127.0.0.1:8080") as router:
    ...     router.ask("帮我把sales_2024.csv导入到ODS层")["route"]

    ``api_key`` defaults to ``$LORA_ROUTER_API_KEY``; ``timeout`` (seconds, or an
    ``httpx.Timeout``) bounds each attempt; ``retry`` bounds the retries.
    ``transport`` is httpx's (a proxy's, a test's); ``sleep``, ``clock`` and ``rng``
    are there for tests.
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: RetryPolicy | None = None,
                 max_batch: int = MAX_CLIENT_BATCH, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 transport: httpx.BaseTransport | None = None):
        self._settings = _Settings(base_url, api_key, timeout, retry or RetryPolicy(), max_batch, rng, clock)
        self._sleep = sleep
        self._http = httpx.Client(base_url=self._settings.base_url, timeout=timeout, headers=self._settings.headers,
                                  transport=transport)

    def ask(self, question: str) -> ChainAnswer:
        """The chain's answer to one question (what ``OnnxRouter.ask`` gives)."""
        return _answers(self._call("POST", "/v1/ask", {"question": question}))

    def ask_batch(self, questions: Sequence[str]) -> list[ChainAnswer]:
        """The chain's answers, in order; a long list goes in parts of ``max_batch``."""
        out: list = []
        for part in _parts(_texts(questions, "ask_batch"), self._settings.max_batch):
            out += _answers(self._call("POST", "/v1/ask", {"questions": part}))
        return out

    @overload
    def predict(self, task: str, inputs: str) -> TaskResult: ...
    @overload
    def predict(self, task: str, inputs: Sequence[str]) -> list[TaskResult]: ...

    def predict(self, task, inputs):
        """One task's result for a text, or a list of results for a list of texts."""
        if isinstance(inputs, str):
            response = self._call("POST", _predict_path(task), {"inputs": inputs})
            _warn_truncation(response)
            return _task_result(_answers(response))
        out: list = []
        for part in _parts(list(inputs), self._settings.max_batch):
            response = self._call("POST", _predict_path(task), {"inputs": part})
            _warn_truncation(response)
            out += [_task_result(r) for r in _answers(response)]
        return out

    def tasks(self) -> dict[str, Any]:
        """The served tasks and their labels, the chain and its thresholds, the models' source and parity figures."""
        return _answers(self._call("GET", "/v1/tasks"))

    def feedback(self, request_id: str, *, verdict: str | None = None, route: str | None = None,
                 labels: dict[str, str] | None = None, file_names: Sequence[str] | None = None,
                 kb_id: str | None = None, no_entry: bool = False, comment: str = "") -> dict:
        """Say what was right or wrong in an answer, named by its ``request_id`` (a service run with
        ``--capture``); the feedback line stored. See docs/serve.md, Capture and feedback."""
        fields = dict(verdict=verdict, route=route, labels=labels, file_names=None if file_names is None else
                      list(file_names), kb_id=kb_id, no_entry=no_entry, comment=comment)
        return _answers(self._call("POST", "/v1/feedback", _feedback_body(request_id, fields)))["feedback"]

    def _call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        attempts = self._settings.attempts()
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                self._sleep(attempts.after(exc))
                continue
            if response.status_code < 400:
                return response
            self._sleep(attempts.after(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same methods, awaited; ``async with AsyncClient(...) as router``."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: RetryPolicy | None = None,
                 max_batch: int = MAX_CLIENT_BATCH, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._settings = _Settings(base_url, api_key, timeout, retry or RetryPolicy(), max_batch, rng, clock)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=self._settings.base_url, timeout=timeout,
                                       headers=self._settings.headers, transport=transport)

    async def ask(self, question: str) -> ChainAnswer:
        """The chain's answer to one question (what ``OnnxRouter.ask`` gives)."""
        return _answers(await self._call("POST", "/v1/ask", {"question": question}))

    async def ask_batch(self, questions: Sequence[str]) -> list[ChainAnswer]:
        """The chain's answers, in order; a long list goes in parts of ``max_batch``."""
        out: list = []
        for part in _parts(_texts(questions, "ask_batch"), self._settings.max_batch):
            out += _answers(await self._call("POST", "/v1/ask", {"questions": part}))
        return out

    @overload
    async def predict(self, task: str, inputs: str) -> TaskResult: ...
    @overload
    async def predict(self, task: str, inputs: Sequence[str]) -> list[TaskResult]: ...

    async def predict(self, task, inputs):
        """One task's result for a text, or a list of results for a list of texts."""
        if isinstance(inputs, str):
            response = await self._call("POST", _predict_path(task), {"inputs": inputs})
            _warn_truncation(response)
            return _task_result(_answers(response))
        out: list = []
        for part in _parts(list(inputs), self._settings.max_batch):
            response = await self._call("POST", _predict_path(task), {"inputs": part})
            _warn_truncation(response)
            out += [_task_result(r) for r in _answers(response)]
        return out

    async def tasks(self) -> dict[str, Any]:
        """The served tasks and their labels, the chain and its thresholds, the models' source and parity figures."""
        return _answers(await self._call("GET", "/v1/tasks"))

    async def feedback(self, request_id: str, *, verdict: str | None = None, route: str | None = None,
                       labels: dict[str, str] | None = None, file_names: Sequence[str] | None = None,
                       kb_id: str | None = None, no_entry: bool = False, comment: str = "") -> dict:
        """``Client.feedback``, awaited."""
        fields = dict(verdict=verdict, route=route, labels=labels, file_names=None if file_names is None else
                      list(file_names), kb_id=kb_id, no_entry=no_entry, comment=comment)
        return _answers(await self._call("POST", "/v1/feedback", _feedback_body(request_id, fields)))["feedback"]

    async def _call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        attempts = self._settings.attempts()
        while True:
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                await self._sleep(attempts.after(exc))
                continue
            if response.status_code < 400:
                return response
            await self._sleep(attempts.after(response))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
