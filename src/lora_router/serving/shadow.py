"""Shadow a candidate export on live traffic: answer with production, compare with the candidate, off the path.

``serve --shadow DIR`` loads a second export (the candidate) beside the one
that answers. Every answered question (or a sampled share of them) is put on
a bounded queue and returns at once; one thread of its own, at a lower OS
priority, runs the candidate's chain on what is queued, compares it with
production step by step and route by route, and counts the result in
``/metrics``. A full queue drops the shadow work (counted), never the answer
and never its time: answers are always production's. With ``--capture`` the
answer is captured once the candidate has run, with the candidate's trace
beside it (``"shadow"`` on the capture line; lines without it are plain
answers, as before).

On Ray Serve (``serve --engine ray``) every replica runs the candidate
beside the deployment's default export only (``serving.ray``), and counts
in that replica's ``/metrics``.

What "agree" means: a step agrees when both sides ran it and decided the
same (the label, whether it passed its threshold, and the file names it
picked); a step only one side ran disagrees. A question agrees when its
route and every step agree.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from queue import Empty, Full, Queue

from prometheus_client import CollectorRegistry, Counter

from ..backends.source import ModelSource
from ..core.options import PredictorOptions
from ..errors import ConfigError
from ..pending import PendingWork, QueuedWork

logger = logging.getLogger(__name__)

BATCH = 16  # questions the candidate answers in one ask_batch (its steps batched across them)
NICENESS = 10  # the shadow thread runs below the threads that answer (Linux: per-thread priority)
_STOP = object()


class ShadowMetrics:
    """The shadow's counters, in the service's registry (``of(registry)``: the ones already there, if any)."""

    _lock = threading.Lock()

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ShadowMetrics:
        """The counters of ``registry``, registered on first use. A Ray replica's exports share one registry, and
        its default export, with the shadow, may be unloaded and loaded again: its counters go on counting."""
        with cls._lock:  # kept on the registry itself, so they live and go with it
            metrics = getattr(registry, "_lora_router_shadow", None)
            if metrics is None:
                metrics = cls(registry)
                registry._lora_router_shadow = metrics
            return metrics

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.steps = Counter("lora_router_shadow_steps_total",
                             "Chain steps of shadowed questions, by task and whether the candidate decided as "
                             "production did (agree) or not (disagree: another decision, or only one side ran it)",
                             ["task", "result"], registry=registry)
        self.questions = Counter("lora_router_shadow_questions_total",
                                 "Shadowed questions by production's route, the candidate's route, and whether "
                                 "the candidate agreed with production on every step and the route",
                                 ["route", "candidate_route", "result"], registry=registry)
        self.dropped = Counter("lora_router_shadow_dropped_total",
                               "Questions not shadowed, by reason: overload (the shadow queue was full), error "
                               "(the candidate failed on it)", ["reason"], registry=registry)
        self.seconds = Counter("lora_router_shadow_seconds_total",
                               "Wall seconds the candidate took on the shadow thread", registry=registry)


def candidate_source(folder: str, production: ModelSource) -> ModelSource:
    """The candidate export as a model source: its own chain and thresholds, one onnxruntime thread.

    One thread: the candidate runs on the shadow thread itself, whose low
    priority then covers its work too (a session's own pool would not be).
    The precision is production's when production names one (``--precision
    fp32``): otherwise the two would disagree on int8 rounding alone.
    """
    precision = production.options.precision if production.onnx else None
    options = PredictorOptions(threads=1, device=production.options.device, verify=production.options.verify,
                               precision=precision)
    return ModelSource(onnx=folder, options=options)


def start_shadow(service, check: Callable[[object], None]) -> Shadow:
    """The shadow of ``service`` (its ``settings.shadow`` loaded and ``check``-ed), or a clear ``ConfigError``."""
    settings = service.settings
    production = service.source or ModelSource(onnx=settings.shadow)
    try:
        candidate = candidate_source(settings.shadow, production).load()
        check(candidate)
    except Exception as exc:  # noqa: BLE001 - whatever failed, the service refuses to start and says why
        raise ConfigError(f"the --shadow candidate {settings.shadow} cannot be run: {exc}") from exc
    return Shadow(candidate, folder=settings.shadow, share=settings.shadow_share, queue_size=settings.shadow_queue,
                  capture=service.capture, metrics=ShadowMetrics.of(service.metrics.registry))


class Shadow(QueuedWork):
    """Run ``candidate`` on a share of the answered questions, on a thread, and compare it with production.

    ``add(answer, id)`` is called with every answer production gives; it
    returns at once. ``capture`` (a ``CaptureWriter`` or None) gets every
    answer, shadowed or not, with ``"shadow"`` beside the shadowed ones.
    """

    def __init__(self, candidate, *, folder: str, share: float = 1.0, queue_size: int = 256, capture=None,
                 metrics: ShadowMetrics | None = None, rng: Callable[[], float] = random.random):
        self.candidate = candidate
        self.folder = folder
        self.share = share
        self.capture = capture
        self.metrics = metrics
        self._rng = rng
        self._queue: Queue = Queue(maxsize=queue_size)
        self._pending = PendingWork()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lora-router-shadow", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the service's side
    def add(self, answer: dict, answer_id: str | None = None) -> bool:
        """Queue ``answer`` (production's, which must not change after) for the candidate; whether it was queued."""
        if self._closed or self._rng() >= self.share:
            self._capture(answer, answer_id)
            return False
        self._pending.started()
        try:
            self._queue.put_nowait((answer, answer_id))
        except Full:
            self._pending.done()
            self._count_dropped("overload")
            self._capture(answer, answer_id)
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Compare what is queued (up to ``timeout``), then stop the thread."""
        if self._closed:
            return
        self.drain(timeout)
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        _lower_priority()
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except Empty:
                    break
            stop = any(item is _STOP for item in batch)
            batch = [item for item in batch if item is not _STOP]
            try:
                if batch:
                    self._shadow(batch)
            finally:
                for _ in batch:
                    self._pending.done()
            if stop:
                return

    def _shadow(self, batch: list[tuple[dict, str | None]]) -> None:
        t0 = time.perf_counter()
        try:
            theirs = self.candidate.ask_batch([answer["question"] for answer, _ in batch])
        except Exception as exc:  # noqa: BLE001 - a failing candidate must not stop capture or the service
            logger.warning("shadow: the candidate %s failed on %d questions: %s", self.folder, len(batch), exc)
            for answer, answer_id in batch:
                self._count_dropped("error")
                self._capture(answer, answer_id, {"export": self.folder, "error": str(exc)})
            return
        if self.metrics is not None:
            self.metrics.seconds.inc(time.perf_counter() - t0)
        for (answer, answer_id), candidate in zip(batch, theirs):
            shadow = compare(answer, candidate)
            self._count(answer, candidate, shadow)
            self._capture(answer, answer_id, {"export": self.folder, "route": candidate.get("route"),
                                              "file_names": candidate.get("file_names"),
                                              "trace": candidate.get("trace"), **shadow})

    def _count(self, answer: dict, candidate: dict, shadow: dict) -> None:
        if self.metrics is None:
            return
        for task, agreed in shadow["steps"].items():
            self.metrics.steps.labels(task, "agree" if agreed else "disagree").inc()
        self.metrics.questions.labels(answer.get("route") or "none", candidate.get("route") or "none",
                                      "agree" if shadow["agree"] else "disagree").inc()

    def _capture(self, answer: dict, answer_id: str | None, shadow: dict | None = None) -> None:
        if self.capture is not None:
            self.capture.add(answer, id=answer_id, extra={"shadow": shadow} if shadow is not None else None)

    def _count_dropped(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped.labels(reason).inc()


def compare(production: dict, candidate: dict) -> dict:
    """``{"agree": bool, "steps": {task: agreed}, "disagreements": [...]}`` of two answers to one question.

    A disagreement names the task and each side's decision (None: that side
    did not run the step); ``{"task": "route", ...}`` when the routes differ.
    """
    ours, theirs = _decisions(production), _decisions(candidate)
    steps, disagreements = {}, []
    for task in list(dict.fromkeys([*ours, *theirs])):
        a, b = ours.get(task), theirs.get(task)
        steps[task] = a is not None and a == b
        if not steps[task]:
            disagreements.append({"task": task, "production": a, "candidate": b})
    if production.get("route") != candidate.get("route"):
        disagreements.append({"task": "route", "production": production.get("route"),
                              "candidate": candidate.get("route")})
    return {"agree": not disagreements, "steps": steps, "disagreements": disagreements}


def _decisions(answer: dict) -> dict[str, dict]:
    """Per task, what the step decided: its label, whether it passed, the file names it picked."""
    traced = {s["task"]: s for s in (answer.get("trace") or {}).get("steps", [])}
    out = {}
    for step in answer.get("steps", []):
        task, result = step["task"], step.get("result") or {}
        trace = traced.get(task, {})
        decision = {"label": trace.get("label", result.get("predicted_label")), "passed": trace.get("passed")}
        if "file_names" in result:
            decision["file_names"] = list(result["file_names"])
        out[task] = decision
    return out


def _lower_priority() -> None:
    if not sys.platform.startswith("linux"):  # elsewhere the id is not a thread's to renice
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)  # Linux: this thread only
    except OSError:  # pragma: no cover - a sandbox that forbids it: same priority
        logger.debug("shadow thread runs at the service's priority")
