"""OpenTelemetry traces of the service (``lora-router serve --otel``): a span per request, one per chain step.

Off by default and free when off: nothing here imports OpenTelemetry until
``tracing_for`` is asked for settings with ``otel`` on, and an app without it
has no tracing middleware at all. When on:

- ``RequestTracing`` (ASGI middleware, outermost) opens a server span per
  request (the probes ``/health``, ``/ready``, ``/metrics`` excepted), a
  child of the caller's span when the request carries a W3C ``traceparent``
  (the propagators of ``OTEL_PROPAGATORS``), and records the method, route,
  status and request id; FastAPI's own request spans (>= 0.142) are turned
  off for it, so a request has one;
- ``Tracing.step`` opens a span per chain step *in the request's own context*,
  around its wait for the batcher: a batch serves several requests, so the
  batch thread knows no trace; each step span records the rows of the batch
  that computed it instead.

Spans go over OTLP/HTTP through a ``BatchSpanProcessor``; the SDK reads the
standard ``OTEL_*`` variables (endpoint, headers, service name, sampler, ...)
itself. A tracer provider already set in the process (``opentelemetry-instrument``,
an embedding app) is used as it is.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import require
from .middleware import PROBE_PATHS

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .batcher import Batcher
    from .settings import ServeSettings

logger = logging.getLogger(__name__)

INSTALL_EXTRA = "otel"
DEFAULT_SERVICE_NAME = "lora-router"
_OTLP_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_process: Tracing | None = None


def require_otel() -> None:
    """Fail now, with the install command, when ``--otel`` cannot work (rather than in each worker)."""
    require("opentelemetry.sdk.trace", INSTALL_EXTRA)
    require(_OTLP_EXPORTER, INSTALL_EXTRA)


def tracing_for(settings: ServeSettings, tracer_provider: TracerProvider | None = None) -> Tracing | None:
    """None when ``settings.otel`` is off; else the tracing of ``tracer_provider`` (default: the process's)."""
    global _process
    if not settings.otel:
        return None
    if tracer_provider is not None:
        return Tracing(tracer_provider)
    if _process is None:
        _process = Tracing(_process_provider())
    return _process


def _process_provider() -> TracerProvider:
    """The provider set in this process, or one exporting over OTLP/HTTP as the ``OTEL_*`` variables say."""
    require_otel()
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):  # somebody configured tracing already
        return current
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER; flushed at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_*, OTEL_BSP_*
    trace.set_tracer_provider(provider)
    logger.info("OpenTelemetry: exporting spans of %s over OTLP/HTTP", resource.attributes.get(SERVICE_NAME))
    return provider


class Tracing:
    """The service's tracer: request spans (``RequestTracing``) and chain-step spans (``step``)."""

    def __init__(self, tracer_provider: TracerProvider):
        from opentelemetry import propagate

        self.tracer = tracer_provider.get_tracer("lora_router.serving", __version__)
        self.propagator = propagate.get_global_textmap()  # OTEL_PROPAGATORS; W3C tracecontext by default

    @staticmethod
    def fastapi_options() -> dict:
        """FastAPI's own request spans off: FastAPI >= 0.142 traces natively once a provider is set, and a
        second server span per request (a sibling of ours under the caller's) would only confuse a trace."""
        import inspect

        from fastapi import FastAPI

        return {"telemetry": {"tracing": False}} if "telemetry" in inspect.signature(FastAPI).parameters else {}

    async def step(self, batcher: Batcher, task: str, text: str, *, route: str | None = None) -> dict:
        """``batcher.submit(task, text)`` inside a span of this request's trace, with what the step found."""
        with self.tracer.start_as_current_span(f"step {task}", attributes={"lora_router.task": task}) as span:
            t0 = time.perf_counter()
            result, rows = await batcher.submit_counted(task, text)
            span.set_attributes(_step_attributes(result, rows, time.perf_counter() - t0, route))
            return result


def _step_attributes(result: dict, rows: int, seconds: float, route: str | None) -> dict:
    out: dict = {"lora_router.batch.rows": rows, "lora_router.ms": round(seconds * 1000, 3)}
    if "predicted_label" in result:  # a classification
        out["lora_router.label"] = result["predicted_label"]
    if "confidence" in result:  # classification and knowledge-base answer
        out["lora_router.probability"] = float(result["confidence"])
    if "file_names" in result:
        out["lora_router.file_names"] = list(result["file_names"])
        spans = result.get("spans") or []
        if spans:
            out["lora_router.probability"] = min(float(s["score"]) for s in spans)  # what a threshold reads
    if "answer" in result:
        out["lora_router.answered"] = bool(result["answer"])
        if result.get("kb_id"):
            out["lora_router.kb_id"] = str(result["kb_id"])
    if route:
        out["lora_router.route"] = route
    return out


class RequestTracing:
    """ASGI middleware: a server span per HTTP request, a child of the caller's ``traceparent``."""

    def __init__(self, app, tracing: Tracing):
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.app = app
        self.tracing = tracing
        self._server, self._error = SpanKind.SERVER, Status(StatusCode.ERROR)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBE_PATHS:  # probes every few seconds: noise
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope.get("method", ""), scope.get("path", "")
        status = {"code": None}  # stays None when the client left before an answer

        async def send_traced(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with self.tracing.tracer.start_as_current_span(
                method, context=self.tracing.propagator.extract(headers), kind=self._server,
                attributes={"http.request.method": method, "url.path": path,
                            "url.scheme": scope.get("scheme", "http")},
                record_exception=True, set_status_on_exception=True) as span:
            try:
                await self.app(scope, receive, send_traced)
            finally:
                state = scope.get("state", {})
                route = scope.get("route")
                template = getattr(route, "path_format", None) or getattr(route, "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                if status["code"] is not None:
                    span.set_attribute("http.response.status_code", status["code"])
                if state.get("request_id"):
                    span.set_attribute("lora_router.request_id", state["request_id"])
                if state.get("chain_routes"):
                    span.set_attribute("lora_router.routes", list(state["chain_routes"]))
                if (status["code"] or 0) >= 500:  # a 4xx is the client's error (HTTP semantic conventions)
                    span.set_status(self._error)
