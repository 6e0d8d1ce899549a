"""The service behind the HTTP app: loaded models, the chain over the batcher, reloads.

``Service`` holds the current models (a predictor and its batcher) as one
``Loaded`` generation. Each request takes the generation current when it
starts and keeps it to the end, so a reload (SIGHUP) never changes models in
the middle of a chain. A new generation is loaded and checked beside the old
one and swapped in only when every task answers; a damaged export is refused
and the old one keeps serving. An old generation's batcher closes when its
last request is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..backends.source import ModelSource
from ..capture import CaptureStore, CaptureWriter
from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION
from ..core.chain import apply_step, finish_missing, new_answer
from ..core.trace import decision_trace, unknown_model
from ..errors import ConfigError, InputError, LoraRouterError, UnknownCaptureError
from .batcher import Batcher
from .limits import OverloadedError, ThroughputMeter
from .metrics import ServiceMetrics
from .settings import ServeSettings
from .shadow import start_shadow
from .tracing import tracing_for

logger = logging.getLogger(__name__)

# How long a request waits for the models of a service still starting before it is answered 503.
STARTUP_WAIT_S = 30.0
# Asked of every task before a generation is served: loads lazy parts, fails fast on a broken model.
WARM_UP_TEXT = "帮我把sales_2024.csv导入到ODS层"


class NotReadyError(LoraRouterError):
    """Models are still loading (or failed to load)."""


class UnknownServedTaskError(LoraRouterError):
    """A task the served models do not have; ``tasks`` lists those they have."""

    def __init__(self, task: str, tasks: list[str]):
        self.task, self.tasks = task, tasks
        super().__init__(f"unknown task {task!r}; this service has: {', '.join(tasks) or 'none'}")


class PayloadTooLargeError(InputError):
    """A request with more, or longer, texts than the service takes (or than the model, with truncate off)."""


@dataclass
class Loaded:
    """One generation of models: a predictor, its batcher, and who is using it."""

    predictor: object
    batcher: Batcher
    generation: int
    loaded_at: float
    users: int = 0
    retired: bool = False


class Service:
    """Answer questions with the current models, batched; reload them on request."""

    def __init__(self, source: ModelSource | None, settings: ServeSettings, metrics: ServiceMetrics | None = None,
                 *, predictor=None, tracer_provider=None):
        if source is None and predictor is None:
            raise ConfigError("Service needs a ModelSource or a loaded predictor")
        self.source = source
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self._given = predictor
        self._loaded: Loaded | None = None
        self._generation = 0
        self._questions_in_flight = 0
        self.rate = ThroughputMeter()  # questions per second lately: a 429's Retry-After is the expected wait
        self._executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="lora-router-infer")
        self._reload_lock = asyncio.Lock()
        self.load_error: str | None = None
        self._first_load = asyncio.Event()  # set when start() has loaded the models or failed to
        self.reload_error: str | None = None  # why the last reload was refused (None after one that worked)
        self.tracing = tracing_for(settings, tracer_provider)  # None unless settings.otel
        self.capture: CaptureWriter | None = None  # with settings.capture: every answer, off the request's path
        self.captured: CaptureStore | None = None  # ... and the store that feedback is checked against
        if settings.capture:
            self.capture = CaptureWriter(settings.capture, max_mb=settings.capture_max_mb,
                                         on_count=self.metrics.count_capture)
            self.captured = CaptureStore(settings.capture, shard=self.capture.shard)
        self.shadow = None  # with settings.shadow: a candidate export run on answers, off their path (start)

    # ------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._loaded is not None

    async def start(self) -> None:
        """Load and warm the models (on a thread: ``/health`` answers meanwhile)."""
        try:
            predictor = self._given or await asyncio.to_thread(self.source.load)
            await asyncio.to_thread(self._check, predictor)
            if self.settings.shadow:
                self.shadow = await asyncio.to_thread(start_shadow, self, self._check)
        except BaseException as exc:  # failed, or cancelled (shutdown): requests waiting for the models stop waiting
            if isinstance(exc, Exception):
                self.load_error = str(exc)
                logger.error("models failed to load: %s", exc, exc_info=not isinstance(exc, LoraRouterError))
            self._first_load.set()
            raise
        self._swap(predictor)
        self._first_load.set()
        logger.info("ready: %s", self._describe_source())

    async def reload(self, *, compare: bool = False) -> bool:
        """Load the source again beside the current models and swap when every task answers.

        With ``compare`` and ``settings.promote_compare``, the new models must also not be significantly worse
        than the current ones on that chain file (``admin.compare_refusal``), or they are refused.
        """
        if self.source is None:
            logger.warning("reload asked, but this service was given a predictor, not a source; nothing to reload")
            return False
        async with self._reload_lock:
            t0 = time.perf_counter()
            try:
                predictor = await asyncio.to_thread(self.source.load)
                await asyncio.to_thread(self._check, predictor)
                if compare and self.settings.promote_compare and self._loaded is not None:
                    from .admin import compare_refusal

                    problem = await asyncio.to_thread(compare_refusal, self._loaded.predictor, predictor,
                                                      self.settings.promote_compare)
                    if problem:
                        raise LoraRouterError(problem)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old models
                self.metrics.reloads.labels("refused").inc()
                self.reload_error = str(exc)
                logger.error("reload refused, the models loaded before keep serving: %s", exc,
                             exc_info=not isinstance(exc, LoraRouterError))
                return False
            self._swap(predictor)
            self.reload_error = None
            self.metrics.reloads.labels("ok").inc()
            logger.info("reloaded %s in %.2f s (generation %d)", self._describe_source(), time.perf_counter() - t0,
                        self._generation)
            return True

    async def stop(self) -> None:
        """Answer what is queued, then release the inference threads."""
        if self._loaded is not None:
            await self._loaded.batcher.close()
        self._executor.shutdown(wait=True)
        if self.shadow is not None:
            await asyncio.to_thread(self.shadow.close)
        if self.capture is not None:
            await asyncio.to_thread(self.capture.close)

    def _check(self, predictor) -> None:
        tasks = list(predictor.specs)
        if not tasks:
            raise ConfigError(f"{self._describe_source()} has no task to serve")
        predictor.predict_mixed([(task, WARM_UP_TEXT) for task in tasks])

    def _swap(self, predictor) -> None:
        self._generation += 1
        batcher = Batcher(predictor.predict_mixed, executor=self._executor, tokens=_token_estimate(predictor),
                          max_batch_tokens=self.settings.max_batch_tokens,
                          max_batch_requests=self.settings.max_batch_requests,
                          max_wait_ms=self.settings.max_wait_ms, in_flight=lambda: self._questions_in_flight,
                          metrics=self.metrics, rate=self.rate)
        old, self._loaded = self._loaded, Loaded(predictor, batcher, self._generation, time.time())
        self.metrics.ready.set(1)
        if old is not None:
            old.retired = True
            if old.users == 0:
                asyncio.get_running_loop().create_task(old.batcher.close())

    @contextlib.asynccontextmanager
    async def _use(self, questions: int):
        loaded = self._loaded
        if loaded is None and not self._first_load.is_set():
            # A request that reaches a worker still loading (under --workers N the others may be ready, and a
            # client cannot pick its worker) waits for the models rather than getting a 503; /ready stays 503.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_load.wait(), STARTUP_WAIT_S)
            loaded = self._loaded
        if loaded is None:
            raise NotReadyError(f"models are not loaded yet{': ' + self.load_error if self.load_error else ''}")
        queued, limit = self._questions_in_flight, self.settings.max_queued_questions
        if queued and queued + questions > limit:  # a request alone is always taken (limit >= max_client_batch)
            self.metrics.refused.labels("queue").inc()
            wait = self.rate.retry_after(queued, self.settings.retry_after_s)
            raise OverloadedError(f"{queued} questions are queued and this request brings {questions}; the service "
                                  f"queues at most {limit} (--max-queued-questions); retry after {wait} s", wait)
        loaded.users += 1
        self._questions_in_flight += questions
        try:
            yield loaded
        finally:
            loaded.users -= 1
            self._questions_in_flight -= questions
            if loaded.retired and loaded.users == 0:
                await loaded.batcher.close()

    # ------------------------------------------------------------ answering
    async def ask(self, questions: list[str], ids: list[str] | None = None) -> list[dict]:
        """The chain's answer to each question, same shape as ``ask --json``, batched with other requests.

        ``ids`` name the answers (``request_id`` in each answer and its trace, and the capture id).
        """
        ids = ids or [None] * len(questions)
        async with self._use(len(questions)) as loaded:
            return list(await asyncio.gather(*(self._ask_one(loaded, q, i) for q, i in zip(questions, ids))))

    async def _ask_one(self, loaded: Loaded, text: str, answer_id: str | None = None) -> dict:
        predictor = loaded.predictor
        chain = predictor.chain
        out = new_answer(text)
        warnings = await _truncation(predictor, chain.start, text)
        task = chain.start
        while task is not None:
            step = chain.steps[task]
            if task not in predictor.specs:
                finish_missing(out, step)
                break
            t0 = time.perf_counter()
            # the cascade's n-gram pass costs well under a millisecond: here, not after a wait for batch-mates
            cascade = getattr(predictor, "cascades", None) or {}  # a predictor given in code may have none
            result = predictor.first_pass(task, [text])[0] if task in cascade else None
            if result is None:
                result = await self._submit(loaded.batcher, task, text, route=step.route)
            elapsed = time.perf_counter() - t0
            out["steps"].append({"task": task, "result": result, "ms": round(elapsed * 1000, 3)})
            self.metrics.step_latency.labels(task).observe(elapsed)
            task = apply_step(out, step, result)
        if warnings:
            out["warnings"] = warnings
            self.metrics.truncated.inc()
        self.metrics.routes.labels(out["route"] or "none").inc()
        trace = getattr(predictor, "trace", None)  # a predictor given in code may have none
        out["trace"] = trace(out) if trace is not None else decision_trace(out, chain, unknown_model)
        if answer_id is None and self.capture is not None:
            answer_id = uuid.uuid4().hex  # feedback must be able to name it
        if answer_id is not None:
            out["request_id"] = out["trace"]["request_id"] = answer_id
        if self.shadow is not None:
            self.shadow.add(out, answer_id)  # captures it too, once the candidate has run
        elif self.capture is not None:
            self.capture.add(out, id=answer_id)
        return out

    async def feedback(self, answer_id: str, **feedback) -> dict:
        """Store feedback on a captured answer; the line stored.

        ``UnknownCaptureError`` (404) for an id no captured answer has,
        ``InputError`` (422) for feedback that does not fit the answer or the
        served tasks, ``CaptureError`` (503) when the store cannot be written.
        """
        if self.captured is None:
            raise UnknownCaptureError(f"no answer has id {answer_id!r}: this service does not capture answers "
                                      "(start it with --capture DIR to take feedback)")
        loaded = self._loaded
        label_sets = None if loaded is None else {
            name: list(spec.labels) for name, spec in loaded.predictor.specs.items()
            if spec.kind == SEQUENCE_CLASSIFICATION}
        add = functools.partial(self.captured.add_feedback, answer_id, label_sets=label_sets, **feedback)
        try:
            line = await asyncio.to_thread(add)
        except UnknownCaptureError:
            # Answered a moment ago, it may still be on this process's queue, or written just after the first
            # look: once the queue is written, look again (always: "nothing pending now" may mean "just written").
            await asyncio.to_thread(self._flush_capture, 1.0)
            line = await asyncio.to_thread(add)
        self.metrics.feedback.labels(line["verdict"] or "none").inc()
        return line

    def _flush_capture(self, timeout: float) -> bool:
        """Wait for answers still queued to be captured (behind the shadow, with --shadow); whether all were."""
        if self.shadow is not None:
            self.shadow.drain(timeout)
        return self.capture.drain(timeout)

    async def predict(self, task: str, texts: list[str], *, truncate: bool = True) -> tuple[list[dict], list, str]:
        """One task's results for ``texts``, per text the warnings (truncation) it got, and the task's kind."""
        async with self._use(len(texts)) as loaded:
            predictor = loaded.predictor
            if task not in predictor.specs:
                raise UnknownServedTaskError(task, list(predictor.specs))
            warnings = [await _truncation(predictor, task, t) for t in texts]
            if not truncate and any(warnings):
                n = next(i for i, w in enumerate(warnings) if w)
                raise PayloadTooLargeError(f"inputs[{n}] is longer than the model takes "
                                           f"({predictor.encoders[task].max_length} tokens) and truncate is false")
            results = await asyncio.gather(*(self._submit(loaded.batcher, task, t) for t in texts))
            return list(results), warnings, predictor.specs[task].kind

    def _submit(self, batcher: Batcher, task: str, text: str, route: str | None = None) -> Awaitable[dict]:
        if self.tracing is None:
            return batcher.submit(task, text)
        # In this request's context, not the batch's: the step span joins this request's trace.
        return self.tracing.step(batcher, task, text, route=route)

    def describe(self) -> dict:
        """Tasks, labels, the chain and its thresholds, where the models come from and their parity figures."""
        loaded = self._loaded
        if loaded is None:
            raise NotReadyError("models are not loaded yet")
        predictor = loaded.predictor
        tasks = [{"name": name, "kind": spec.kind, "instruction": spec.instruction, "labels": list(spec.labels),
                  "max_length": predictor.encoders[name].max_length} for name, spec in predictor.specs.items()]
        chain = predictor.chain
        manifest = getattr(predictor, "manifest", None)  # an export's ExportManifest; a hub has none
        source = {"kind": self.source.kind if self.source else "predictor",
                  "path": self.source.path if self.source else getattr(predictor, "source", ""),
                  "generation": loaded.generation, "loaded_at": loaded.loaded_at}
        for key in ("layout", "precision", "device"):
            if hasattr(predictor, key):
                source[key] = getattr(predictor, key)
        if manifest is not None:  # the version that answers: what /admin/reload and /admin/rollback change
            source["export"] = {"id": manifest.id, "version": manifest.version}
        return {"tasks": tasks, "chain": chain.to_dict(),
                "thresholds": {s.task: s.threshold for s in chain.steps.values() if s.on},
                "source": source, "parity": getattr(manifest, "parity", None)}

    def _describe_source(self) -> str:
        return f"{self.source.kind} {self.source.path}" if self.source else "a predictor given in code"


async def _truncation(predictor, task: str, text: str) -> list[str]:
    encoder = predictor.encoders.get(task)
    # No more tokens than characters: a text that short surely fits, without encoding it.
    if encoder is None or len(text) + 2 <= encoder.max_length:
        return []
    # A long text is tokenised in a thread: 64 questions of 10,000 characters once held the event loop
    # (and every other client's /health) for 300 ms.
    if not (await asyncio.to_thread(encoder.encode, text, warn=False)).truncated:
        return []
    return [f"the question is longer than {task} takes; only its first {encoder.max_length} tokens were read"]


def _token_estimate(predictor):
    """Tokens an item will take, an upper bound: bert-base-chinese never makes more tokens than characters."""
    lengths = {task: enc.max_length for task, enc in predictor.encoders.items()}
    pair = {task for task, spec in predictor.specs.items() if spec.kind == PAIR_RANKING}

    def tokens(task: str, text: str) -> int:
        limit = lengths.get(task, 512)
        return limit if task in pair else min(len(text) + 2, limit)

    return tokens
