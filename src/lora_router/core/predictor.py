"""``TaskPredictor(backend, options)``: results from any backend's logits, and the chain.

Every backend (``backends.torch_peft``, ``backends.onnx``) only gives logits;
turning them into results (temperature included), knowledge-base answers,
batching and the chain is this one code path, for every caller: the CLI, the
service, the parity gate and the bench. So both backends answer alike.

With a backend that runs rows of several tasks in one call (``MixedBackend``:
the multi and trunk layouts), ``predict_mixed`` runs the service's mixed
batches as one call, and ``ask`` may run every classification and extraction
step of the chain in one call before the chain is walked (``speculate``);
``core.chain.run_chain`` then applies the chain's rules to those results, so
routes, steps and results are those of the step-by-step chain. A question that
stops at the first step has paid for rows it does not use: the backend says
whether that pays by default (docs/performance.md has the figures).

With ``PredictorOptions.cascade`` (a backend that has ``cascades``: an export
made with ``--cascade``), each classification step first asks the task's
character n-gram model (``core.cascade``) and the adapter runs only for the
texts it is not sure of; every classification result then says
``decided_by``. No torch here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import PAIR_RANKING, SPAN_EXTRACTION, TaskSpec
from ..encoding import Encoded, TextEncoder, check_text
from ..errors import ConfigError
from .backend import Backend, MixedBackend
from .cascade import ADAPTER, NGRAM, CascadeStep
from .chain import ROUTE_PREFIX, Chain, apply_step, new_answer, run_chain
from .options import PredictorOptions
from .results import ChainAnswer, TaskResult, classification_result, extraction_result
from .trace import DecisionTrace, ModelIdentity, decision_trace, unknown_model

# Inputs of one forward pass; bounds memory on long batches (128 tokens x 64 x bert-base: ~25 MB per layer).
BATCH_SIZE = 64


def backend_attribute(name: str) -> property:
    """A read-only attribute of the predictor's backend, seen on the predictor."""
    return property(lambda self: getattr(self.backend, name), doc=f"The backend's ``{name}``.")


class TaskPredictor:
    """Predictions and the chain over the tasks a ``Backend`` loaded.

    >>> predictor = TaskPredictor(backend, PredictorOptions(thresholds={"question_classifier": 0.6}))
    >>> predictor.ask("帮我把sales_2024.csv导入到ODS层")["route"]
    """

    def __init__(self, backend: Backend, options: PredictorOptions | None = None, *, chain: Chain | None = None,
                 capture=None):
        self.backend = backend
        # Anything with add(answer, id=...): a capture.CaptureWriter keeps every answer ask gives, with its trace.
        self.capture = capture
        self.options = options or PredictorOptions()
        self.chain = chain if chain is not None else Chain.load(self.options.chain or backend.chain_path)
        if self.options.thresholds:
            self.chain.with_thresholds(self.options.thresholds)
        self.knowledge_base = Path(self.options.knowledge_base) if self.options.knowledge_base else None
        mixed = isinstance(backend, MixedBackend) and backend.runs_mixed
        self.mixed: MixedBackend | None = backend if mixed else None
        speculate = self.options.speculate
        self.speculate = bool(mixed and (backend.speculate_by_default if speculate is None else speculate))
        self._answerers: dict[str, object] = {}
        self._answerers_lock = threading.Lock()
        self.cascades: dict[str, CascadeStep] = {}
        if self.options.cascade:
            cascades = getattr(backend, "cascades", None)
            if cascades is None:
                raise ConfigError(f"--cascade runs from an export made with `lora-router export --cascade`; "
                                  f"{backend.source} has none")
            self.cascades = dict(cascades)

    # ------------------------------------------------------------ what the backend loaded
    specs = backend_attribute("specs")  # dict[str, TaskSpec]
    encoders = backend_attribute("encoders")  # dict[str, TextEncoder]
    manifests = backend_attribute("manifests")  # dict[str, TaskManifest]
    source = backend_attribute("source")  # str

    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    def _spec(self, task: str) -> TaskSpec:
        try:
            return self.specs[task]
        except KeyError:
            raise ConfigError(
                f"task {task!r} is not loaded; loaded: {', '.join(self.specs) or 'none'} ({self.source})"
            ) from None

    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits for one padded batch of encoded inputs, with ``task``'s model."""
        self._spec(task)
        return self.backend.logits(task, encoded)

    def mixed_logits(self, rows: Sequence[tuple[str, Encoded]]) -> list[np.ndarray]:
        """Head logits of encoded ``(task, input)`` rows: one call with a one-call layout, a call per row without."""
        if self.mixed is not None:
            return self.mixed.mixed_logits(rows)
        return [self.logits(task, [e])[0] for task, e in rows]

    def temperature(self, task: str) -> float:
        """The temperature a classification task's logits are divided by: fitted at training, 1.0 before that."""
        manifest = self.manifests.get(task)
        return manifest.temperature if manifest is not None else 1.0

    # ------------------------------------------------------------ results
    def result(self, task: str, text: str, encoded: Encoded, logits: np.ndarray) -> TaskResult:
        """The result of a classification or extraction task from its logits: the one place results are made."""
        spec = self.specs[task]
        if spec.kind == SPAN_EXTRACTION:
            return extraction_result(text, encoded, logits)
        result = classification_result(logits / self.temperature(task), spec.labels)
        if task in self.cascades:
            result["decided_by"] = ADAPTER
        return result

    def score_pairs(self, task: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance logits of (question, candidate) pairs for a pair-ranking task."""
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        enc = self.encoders[task].encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False)
        return np.concatenate([self.logits(task, enc[i : i + BATCH_SIZE]).reshape(-1)
                               for i in range(0, len(enc), BATCH_SIZE)])

    def predict(self, task: str, text: str) -> TaskResult:
        """One task's result for one text (see ``lora_router.core.results``)."""
        return self.predict_batch(task, [text])[0]

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[TaskResult]:
        """One task's results for many texts, in padded batches of up to ``BATCH_SIZE``."""
        spec = self._spec(task)
        texts = [check_text(t) for t in texts]
        if spec.kind == PAIR_RANKING:
            answerer = self.answerer(task)
            return [answerer.answer(t, lambda pairs: self.score_pairs(task, pairs)) for t in texts]
        out: list[TaskResult] = []
        for i in range(0, len(texts), BATCH_SIZE):
            chunk = texts[i : i + BATCH_SIZE]
            first = self.first_pass(task, chunk)
            rest = [t for t, r in zip(chunk, first) if r is None]
            encoded = self.encoders[task].encode_batch(rest) if rest else []
            adapter = iter([self.result(task, t, e, lg) for t, e, lg in
                            zip(rest, encoded, self.logits(task, encoded) if rest else [])])
            out += [r if r is not None else next(adapter) for r in first]
        return out

    def first_pass(self, task: str, texts: Sequence[str]) -> list[TaskResult | None]:
        """With the cascade on, the n-gram model's result per text where it decides alone; None: ask the adapter."""
        step = self.cascades.get(task)
        return step.first_pass(texts) if step is not None else [None] * len(texts)

    def predict_mixed(self, items: Sequence[tuple[str, str]]) -> list[TaskResult]:
        """Results for ``(task, text)`` pairs of several tasks, in order.

        The service's batcher gathers one chain step's requests across tasks
        and calls this: one call per ``BATCH_SIZE`` rows with a one-call
        layout, else one batch per task. Pair-ranking rows run per task.
        """
        items = [(task, check_text(text)) for task, text in items]
        out: dict[int, TaskResult] = {}
        by_task: dict[str, list[int]] = {}
        rows = []
        for task, idx in _indices_by_task(items, self.cascades).items():  # the cascade's first pass
            for i, result in zip(idx, self.first_pass(task, [items[i][1] for i in idx])):
                if result is not None:
                    out[i] = result
        for i, (task, _) in enumerate(items):
            if i in out:
                continue
            if self.mixed is not None and self._spec(task).kind != PAIR_RANKING:
                rows.append(i)
            else:
                by_task.setdefault(task, []).append(i)
        for start in range(0, len(rows), BATCH_SIZE):
            chunk = rows[start : start + BATCH_SIZE]
            for i, result in zip(chunk, self._one_call_results([items[i] for i in chunk])):
                out[i] = result
        for task, idx in by_task.items():
            for i, result in zip(idx, self.predict_batch(task, [items[i][1] for i in idx])):
                out[i] = result
        return [out[i] for i in range(len(items))]

    def _one_call_results(self, items: Sequence[tuple[str, str]]) -> list[TaskResult]:
        """One call for classification/extraction rows; each text is tokenised once per encoder."""
        by_encoder: dict[int, tuple[TextEncoder, dict[str, None]]] = {}
        for task, text in items:
            by_encoder.setdefault(id(self.encoders[task]), (self.encoders[task], {}))[1][text] = None
        encoded: dict[tuple[int, str], Encoded] = {}
        for key, (encoder, texts) in by_encoder.items():
            encoded.update(((key, t), e) for t, e in zip(texts, encoder.encode_batch(list(texts))))
        row_inputs = [encoded[(id(self.encoders[task]), text)] for task, text in items]
        logits = self.mixed_logits([(task, e) for (task, _), e in zip(items, row_inputs)])
        return [self.result(task, text, e, lg) for (task, text), e, lg in zip(items, row_inputs, logits)]

    def answerer(self, task: str):
        """The knowledge-base ``Answerer`` of a pair-ranking task, made on first use."""
        self._spec(task)
        with self._answerers_lock:
            if task not in self._answerers:
                self._answerers[task] = self.backend.answerer(task, self.knowledge_base)
            return self._answerers[task]

    # ------------------------------------------------------------ the decision trace
    def model_identity(self, task: str) -> ModelIdentity:
        """The model that answers ``task``: its adapter's content hash, the export's id and version."""
        return getattr(self.backend, "identities", {}).get(task) or unknown_model(task)

    def trace(self, answer: ChainAnswer) -> DecisionTrace:
        """The decision trace of an answer of this predictor's chain (see ``core.trace``)."""
        with self._answerers_lock:  # the knowledge-base step is held to its answerer's threshold
            thresholds = {task: a.settings.threshold for task, a in self._answerers.items()}
        return decision_trace(answer, self.chain, self.model_identity, thresholds)

    # ------------------------------------------------------------ the chain
    def ask(self, text: str) -> ChainAnswer:
        """Run the chain on one question: every step, the route, file names, the answer."""
        return self.ask_batch([text])[0]

    def speculated_tasks(self) -> list[str]:
        """The chain's steps that ``ask`` runs in its one call: loaded, and not pair ranking."""
        return [s.task for s in self.chain.steps.values()
                if s.task in self.specs and self.specs[s.task].kind != PAIR_RANKING]

    def ask_batch(self, texts: Sequence[str]) -> list[ChainAnswer]:
        """Run the chain on many questions, batching each step across them (or in one call, with ``speculate``)."""
        outs = self._run_chain([check_text(t) for t in texts])
        for out in outs:
            out["trace"] = self.trace(out)
            if self.capture is not None:
                out["request_id"] = capture_id = uuid.uuid4().hex
                self.capture.add(dict(out), id=capture_id)  # a copy: the caller may add to its answer meanwhile
        return outs

    def _run_chain(self, texts: list[str]) -> list[ChainAnswer]:
        tasks = self.speculated_tasks() if self.speculate else []
        if not tasks:
            return run_chain(self.chain, texts, self.predict_batch, set(self.specs))
        distinct = list(dict.fromkeys(texts))
        done: dict[tuple[str, str], TaskResult] = {}
        t0 = time.perf_counter()
        rows = self._speculated_rows(distinct, tasks, done)
        first_ms = (time.perf_counter() - t0) * 1000 / len(distinct)
        per_call = max(1, BATCH_SIZE // len(tasks)) * len(tasks)
        t0 = time.perf_counter()
        for start in range(0, len(rows), per_call):
            chunk = rows[start : start + per_call]
            done.update(zip(chunk, self._one_call_results(chunk)))
        call_ms = (time.perf_counter() - t0) * 1000 / max(1, len({q for _, q in rows}))

        def predict_batch(task: str, batch: Sequence[str]) -> list[TaskResult]:
            if task not in tasks:
                return self.predict_batch(task, batch)
            missing = list(dict.fromkeys(q for q in batch if (task, q) not in done))
            done.update(zip(((task, q) for q in missing), self.predict_batch(task, missing) if missing else []))
            return [done[(task, q)] for q in batch]

        outs = run_chain(self.chain, texts, predict_batch, set(self.specs))
        for out in outs:  # the call's time, shared by the steps it answered; the first pass's by the steps it decided
            taken = [s for s in out["steps"] if s["task"] in tasks]
            by_ngram = [s for s in taken if s["result"].get("decided_by") == NGRAM]
            by_call = [s for s in taken if s["result"].get("decided_by") != NGRAM]
            for group, ms in ((by_ngram, first_ms), (by_call, call_ms)):
                for step in group:
                    step["ms"] = round(ms / len(group), 3)
        return outs

    def _speculated_rows(self, questions: Sequence[str], tasks: Sequence[str],
                         done: dict[tuple[str, str], TaskResult]) -> list[tuple[str, str]]:
        """The ``(task, question)`` rows ``ask``'s one call runs; with the cascade, fewer.

        Without the cascade: every speculated task for every question. With it,
        each question first walks the chain while the n-gram model decides
        (its results go into ``done``); from the first step it does not decide,
        every speculated step the question may still reach needs a row, unless
        the n-gram model decides that step too. A question the n-gram model
        routes to its end needs none. The answers are those of the step-by-step
        chain with the cascade.
        """
        if not self.cascades:
            return [(task, q) for q in questions for task in tasks]
        rows = []
        for q in questions:
            task: str | None = self.chain.start
            while task in self.cascades and task in tasks:
                result = self.first_pass(task, [q])[0]
                if result is None:
                    break
                done[(task, q)] = result
                task = apply_step(new_answer(q), self.chain.steps[task], result)
            if task is None:
                continue
            for t in self._reachable(task):  # the n-gram model answers later steps it is sure of, here too
                result = self.first_pass(t, [q])[0] if t != task and t in tasks else None
                if result is not None:
                    done[(t, q)] = result
                elif t in tasks:
                    rows.append((t, q))
        return rows

    def _reachable(self, task: str) -> list[str]:
        """``task`` and every chain step after it, in the chain's order."""
        seen, todo = {task}, [task]
        while todo:
            step = self.chain.steps.get(todo.pop())
            for target in (step.on.values() if step else ()):
                if not target.startswith(ROUTE_PREFIX) and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return [t for t in self.chain.steps if t in seen]


def _indices_by_task(items: Sequence[tuple[str, str]], tasks) -> dict[str, list[int]]:
    """The indices of ``items`` per task, for the tasks in ``tasks``."""
    out: dict[str, list[int]] = {}
    for i, (task, _) in enumerate(items):
        if task in tasks:
            out.setdefault(task, []).append(i)
    return out


def split_options(options: PredictorOptions | None, chain: Chain | str | Path | None,
                  fields: dict) -> tuple[PredictorOptions, Chain | None]:
    """``PredictorOptions`` from an options object and/or keyword fields; a ``Chain`` object travels beside it."""
    if isinstance(chain, Chain):
        return (options or PredictorOptions()).replace(**fields), chain
    return (options or PredictorOptions()).replace(chain=chain, **fields), None
