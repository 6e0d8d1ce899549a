"""The HTTP API (FastAPI): validate, ask the service, answer in one JSON shape.

Endpoints (OpenAPI at ``/docs``): ``POST /v1/ask``, ``POST /v1/feedback``, ``POST /v1/tasks/{task}/predict``
(TEI's ``/predict`` shape for classification tasks), ``GET /v1/tasks``,
``GET /info``, ``GET /health``, ``GET /ready``, ``GET /metrics``. Every error is
``{"error", "error_type"}`` with a status a client can act on: 401, 404, 413,
422, 429, 503, and 500 with a request id. The app is host-neutral: uvicorn
runs it (``serving.host``) and so can any ASGI host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..backends.source import ModelSource
from ..config import SEQUENCE_CLASSIFICATION
from ..encoding import encoding_problem
from ..errors import CaptureError, InputError, UnknownCaptureError
from .admin import add_admin_routes, gated_reload
from .docs import FASTAPI_OPTIONS, add_offline_docs
from .limits import OverloadedError
from .metrics import ServiceMetrics
from .middleware import Gatekeeper
from .schemas import AskRequest, FeedbackRequest, PredictRequest
from .service import NotReadyError, PayloadTooLargeError, Service, UnknownServedTaskError
from .settings import ServeSettings
from .tracing import RequestTracing, tracing_for

logger = logging.getLogger(__name__)

DESCRIPTION = """Route Chinese data-platform questions through lora-router's chain of LoRA tasks.

Errors are `{"error": "...", "error_type": "..."}`: 401 unauthorized, 403 forbidden (admin without a key
configured), 404 not_found, 409 refused (a reload or rollback whose export fails the gate),
413 payload_too_large, 422 validation, 429 overloaded (see `Retry-After`),
503 unavailable (models loading), 500 internal (with `request_id`)."""


def create_app(source: ModelSource | None = None, settings: ServeSettings | None = None, *, predictor=None,
               service: Service | None = None, handle_sighup: bool = True,
               resolve: Callable[[Request], Awaitable[Service]] | None = None,
               metrics: ServiceMetrics | None = None, tracer_provider=None,
               promote: Callable[[str, Service], Awaitable[dict]] | None = None) -> FastAPI:
    """The ASGI app over a model source (or an already loaded predictor, or a ``Service``).

    ``resolve(request)`` picks the ``Service`` that answers a request, for a
    host that serves several exports (Ray Serve's multiplexing); without it,
    the one service made here answers every request. With ``settings.otel``,
    requests and chain steps are traced to ``tracer_provider`` (default: the
    process's, exporting over OTLP as the ``OTEL_*`` variables say). ``promote(action, service)``
    answers ``/admin/reload`` and ``/admin/rollback`` where another process swaps the models (Ray Serve);
    by default this process reloads its own (``admin.promote_here``).
    """
    settings = settings or ServeSettings()
    metrics = metrics or (service.metrics if service is not None else ServiceMetrics())
    if resolve is None:
        service = service or Service(source, settings, metrics, predictor=predictor, tracer_provider=tracer_provider)

        async def resolve(request: Request) -> Service:
            return service

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(_load(service, app)) if service is not None else None
        if handle_sighup and service is not None:
            _on_sighup(service)
        try:
            yield
        finally:
            if loading is not None and not loading.done():
                loading.cancel()
            if service is not None:
                await service.stop()

    tracing = tracing_for(settings, tracer_provider)
    app = FastAPI(title="lora-router", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  **FASTAPI_OPTIONS, **(tracing.fastapi_options() if tracing is not None else {}))
    add_offline_docs(app, "lora-router")  # /docs without a CDN: closed networks
    app.state.service = service
    app.state.on_load_failure = None

    @app.post("/v1/ask", tags=["chain"], summary="Run the chain on one question or several")
    async def ask(body: AskRequest, request: Request) -> Response:
        """The same JSON as `lora-router ask --json`: steps, route, file names, answer, and the decision
        trace; `request_id` names the answer for `POST /v1/feedback` (in a batch: REQUEST_ID/INDEX).
        A list of those for `questions`. Concurrent requests are batched per chain step."""
        texts, field = body.texts()
        _check_texts(texts, field, settings)
        request_id = request.scope["state"]["request_id"]
        ids = [request_id] if field == "question" else [f"{request_id}/{i}" for i in range(len(texts))]
        answers = await (await resolve(request)).ask(texts, ids)
        request.state.chain_routes = [a["route"] or "none" for a in answers]
        return JSONResponse(answers[0] if field == "question" else answers)

    @app.post("/v1/tasks/{task}/predict", tags=["tasks"], summary="One task's result for one input or several")
    async def predict(task: str, body: PredictRequest, request: Request) -> Response:
        """For a classification task, TEI's `/predict` shape: `[{"label", "score"}, ...]` sorted by score
        (a list of those for a list of inputs). For other tasks, the task's result object(s)."""
        texts, many = ([body.inputs], False) if isinstance(body.inputs, str) else (list(body.inputs), True)
        _check_texts(texts, "inputs", settings, indexed=many)
        results, warnings, kind = await (await resolve(request)).predict(task, texts, truncate=body.truncate)
        headers = {}
        if kind == SEQUENCE_CLASSIFICATION:
            top_k = body.parameters.top_k if body.parameters else None
            shaped = [_tei_scores(r)[:top_k] for r in results]
            notes = [f"inputs[{i}]: {w}" if many else w for i, ws in enumerate(warnings) for w in ws]
            if notes:
                headers["warning"] = '199 lora-router "' + "; ".join(notes).replace('"', "'") + '"'
        else:
            shaped = [dict(r, warnings=w) if w else r for r, w in zip(results, warnings)]
        # The Hugging Face inference clients (who send `parameters`) read a single input's scores as [[...]].
        hf_client = kind == SEQUENCE_CLASSIFICATION and body.parameters is not None
        return JSONResponse(shaped if many or hf_client else shaped[0], headers=headers)

    @app.post("/v1/feedback", tags=["chain"], status_code=201, summary="Say what was right or wrong in an answer")
    async def feedback(body: FeedbackRequest, request: Request) -> Response:
        """Stored beside the captured answer (the service must run with `--capture DIR`): thumbs up or down,
        the right route, labels, file names or knowledge-base entry, a comment. 404 for a `request_id` no
        captured answer has, 422 for a label not in its task or a file name not in the question."""
        fields = body.model_dump(exclude={"request_id"})
        line = await (await resolve(request)).feedback(body.request_id, **fields)
        return JSONResponse({"status": "stored", "feedback": line}, status_code=201)

    @app.get("/v1/tasks", tags=["info"], summary="Tasks, labels, the chain and its thresholds, parity figures")
    async def tasks(request: Request) -> Response:
        return JSONResponse((await resolve(request)).describe())

    @app.get("/info", tags=["info"], summary="The served models and the service's limits (TEI's /info)")
    async def info(request: Request) -> Response:
        described = (await resolve(request)).describe()
        return JSONResponse({
            "version": __version__, "model_id": described["source"]["path"], "source": described["source"],
            "tasks": [t["name"] for t in described["tasks"]],
            "max_input_length": max((t["max_length"] for t in described["tasks"]), default=0),
            "max_batch_tokens": settings.max_batch_tokens, "max_batch_requests": settings.max_batch_requests,
            "max_wait_ms": settings.max_wait_ms, "max_concurrent_requests": settings.max_concurrent_requests,
            "max_client_batch_size": settings.max_client_batch, "max_question_chars": settings.max_question_chars,
        })

    @app.get("/health", tags=["operations"], summary="Alive (no key needed)")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/ready", tags=["operations"], summary="Models loaded and warmed (503 before)")
    async def ready(request: Request) -> Response:
        served = await resolve(request)
        if not served.ready:
            raise NotReadyError(f"models are not loaded yet{': ' + served.load_error if served.load_error else ''}")
        return JSONResponse({"status": "ready", "generation": served.describe()["source"]["generation"]})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    if promote is not None or handle_sighup:  # POST /admin/reload, /admin/rollback
        add_admin_routes(app, resolve, settings, *([promote] if promote is not None else []))
    _add_error_handlers(app, settings)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type", "x-request-id"])
    app.add_middleware(Gatekeeper, settings=settings, metrics=metrics)
    if tracing is not None:  # outermost: refusals are traced too; off, the app has no trace of it
        app.add_middleware(RequestTracing, tracing=tracing)
    return app


async def _load(service: Service, app: FastAPI) -> None:
    try:
        await service.start()
    except Exception:  # noqa: BLE001 - logged by the service; the host decides whether to exit
        if app.state.on_load_failure is not None:
            app.state.on_load_failure()


def _on_sighup(service: Service) -> None:
    if not hasattr(signal, "SIGHUP"):  # pragma: no cover - Windows
        return
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(gated_reload(service)))
    except (RuntimeError, ValueError):  # not the main thread (e.g. a test client): no signal
        logger.debug("SIGHUP reload not installed: not in the main thread")


def _check_texts(texts: list[str], field: str, settings: ServeSettings, indexed: bool = True) -> None:
    if not texts:
        raise InputError(f"{field} is an empty list; give at least one text")
    if len(texts) > settings.max_client_batch:
        raise PayloadTooLargeError(f"{field} has {len(texts)} texts; this service takes at most "
                                   f"{settings.max_client_batch} per request (--max-client-batch)")
    for i, text in enumerate(texts):
        name = f"{field}[{i}]" if indexed and field != "question" else field
        if not text.strip():
            raise InputError(f"{name} is empty or only whitespace; give a question")
        problem = encoding_problem(text)
        if problem:  # checked before the batch: the tokenizer would fail the whole batch on it
            raise InputError(f"{name} {problem}")
        if len(text) > settings.max_question_chars:
            raise PayloadTooLargeError(f"{name} has {len(text)} characters; this service takes at most "
                                       f"{settings.max_question_chars}")


def _tei_scores(result: dict) -> list[dict]:
    probabilities = result.get("probabilities") or {result["predicted_label"]: result.get("confidence", 1.0)}
    return [{"label": label, "score": float(score)}
            for label, score in sorted(probabilities.items(), key=lambda kv: -kv[1])]


def _error(status: int, message: str, error_type: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type, **extra}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        details = [{"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
                   for e in exc.errors()]
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
        return _error(422, message or "invalid request", "validation", details=details)

    @app.exception_handler(PayloadTooLargeError)
    async def too_large(request: Request, exc: PayloadTooLargeError):
        return _error(413, str(exc), "payload_too_large")

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError):
        return _error(422, str(exc), "validation")

    @app.exception_handler(UnknownServedTaskError)
    async def unknown_task(request: Request, exc: UnknownServedTaskError):
        return _error(404, str(exc), "not_found", tasks=exc.tasks)

    @app.exception_handler(UnknownCaptureError)
    async def unknown_capture(request: Request, exc: UnknownCaptureError):
        return _error(404, str(exc), "not_found")

    @app.exception_handler(CaptureError)
    async def capture_failed(request: Request, exc: CaptureError):
        return _error(503, str(exc), "unavailable", headers={"retry-after": str(settings.retry_after_s)})

    @app.exception_handler(OverloadedError)
    async def overloaded(request: Request, exc: OverloadedError):
        return _error(429, str(exc), "overloaded", headers={"retry-after": str(exc.retry_after)})

    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, exc: NotReadyError):
        return _error(503, str(exc), "unavailable", headers={"retry-after": str(settings.retry_after_s)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        message = exc.detail if exc.status_code != 404 else (
            f"no endpoint {request.url.path}; see /docs (POST /v1/ask, POST /v1/feedback, "
            "POST /v1/tasks/{task}/predict, GET /v1/tasks, /info, /health, /ready, /metrics)")
        return _error(exc.status_code, str(message), kind, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        request_id = request.scope.get("state", {}).get("request_id", "")
        logger.error("internal error in %s %s (request id %s)", request.method, request.url.path, request_id,
                     exc_info=exc)
        return _error(500, "internal error; the server logged it with this request id", "internal",
                      request_id=request_id)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    if parts and parts[0].isdigit() and loc[0] == "body":  # json_invalid: the position
        return f"body (at character {parts[0]})"
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out
