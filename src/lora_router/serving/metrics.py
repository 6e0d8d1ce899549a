"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can start many).

Names follow Prometheus conventions (``_total``, ``_seconds``); endpoints are
route templates (``/v1/tasks/{task}/predict``), never raw paths, so a client
cannot blow up the label space.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class ServiceMetrics:
    """Requests by endpoint and status, latencies per endpoint and per chain step, batches, queue, routes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lora_router_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("lora_router_request_duration_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.step_latency = Histogram("lora_router_step_duration_seconds",
                                      "Latency of one chain step for one question (queue + forward pass)",
                                      ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("lora_router_batch_size", "Questions per forward pass",
                                    buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("lora_router_batch_tokens", "Padded tokens per forward pass",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.queue_depth = Gauge("lora_router_queue_depth", "Chain steps waiting for a batch", registry=r)
        self.in_flight = Gauge("lora_router_requests_in_flight", "HTTP requests being answered", registry=r)
        self.routes = Counter("lora_router_questions_total", "Questions answered by route", ["route"], registry=r)
        self.truncated = Counter("lora_router_truncated_questions_total", "Questions cut to the model's length",
                                 registry=r)
        self.reloads = Counter("lora_router_reloads_total", "Model reloads by result", ["result"], registry=r)
        self.abandoned = Counter("lora_router_abandoned_requests_total",
                                 "Requests whose work was stopped: the client left, or the request timed out",
                                 ["reason"], registry=r)
        self.skipped_steps = Counter("lora_router_skipped_steps_total",
                                     "Chain steps dropped from a batch unrun because nobody waits for them", registry=r)
        self.refused = Counter("lora_router_refused_requests_total",
                               "Requests refused before their work began, by reason", ["reason"], registry=r)
        self.ready = Gauge("lora_router_ready", "1 when models are loaded and warmed", registry=r)
        self.captured = Counter("lora_router_captured_total", "Answers written to the capture store", registry=r)
        self.capture_dropped = Counter(
            "lora_router_capture_dropped_total", "Answers the capture store lost, by reason: oldest (dropped to "
            "stay within --capture-max-mb), overload (queue full), error (the store could not be written)",
            ["reason"], registry=r)
        self.capture_cpu = Counter("lora_router_capture_cpu_seconds_total",
                                   "CPU seconds capture took: queueing each answer, encoding and writing it",
                                   registry=r)
        self.feedback = Counter("lora_router_feedback_total", "Feedback stored, by verdict (none: no verdict)",
                                ["verdict"], registry=r)

    def count_capture(self, kind: str, n: float) -> None:
        """A ``CaptureWriter``'s count: lines captured, or dropped for a reason."""
        if kind == "captured":
            self.captured.inc(n)
        elif kind == "cpu_seconds":
            self.capture_cpu.inc(n)
        else:
            self.capture_dropped.labels(kind).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
