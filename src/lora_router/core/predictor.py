"""What the PyTorch router and the ONNX runtime share: results from head logits, and the chain.

Subclasses load their models and give ``logits(task, encoded)``; everything
after the forward pass (result dicts, knowledge-base answers, batching, the
chain) is this one code path, so both routers answer alike. No torch here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import PAIR_RANKING, SPAN_EXTRACTION, TaskSpec
from ..encoding import Encoded, TextEncoder, check_text
from ..errors import ConfigError
from .chain import Chain, run_chain
from .results import classification_result, extraction_result

# Inputs of one forward pass; bounds memory on long batches (128 tokens x 64 x bert-base: ~25 MB per layer).
BATCH_SIZE = 64


class TaskPredictor:
    """Predictions and the chain over per-task models; subclasses implement ``logits`` and ``_answerer_for``."""

    specs: dict[str, TaskSpec]
    encoders: dict[str, TextEncoder]
    chain: Chain
    source: str = ""

    def _init_predictor(self) -> None:
        self._answerers: dict[str, object] = {}
        self._answerers_lock = threading.Lock()

    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:  # pragma: no cover - abstract
        """Head logits for one padded batch of encoded inputs, with ``task``'s model."""
        raise NotImplementedError

    def _answerer_for(self, task: str):  # pragma: no cover - abstract
        raise NotImplementedError

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

    def temperature(self, task: str) -> float:
        """The temperature a classification task's logits are divided by: fitted at training, 1.0 before that."""
        calibration = (getattr(self, "manifests", {}).get(task) or {}).get("calibration") or {}
        return float(calibration.get("temperature", 1.0))

    def score_pairs(self, task: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance logits of (question, candidate) pairs for a pair-ranking task."""
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        enc = self.encoders[task].encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False)
        return np.concatenate([self.logits(task, enc[i : i + BATCH_SIZE]).reshape(-1)
                               for i in range(0, len(enc), BATCH_SIZE)])

    def predict(self, task: str, text: str) -> dict:
        """One task's result for one text (see ``lora_router.core.results``)."""
        return self.predict_batch(task, [text])[0]

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        """One task's results for many texts, in padded batches of up to ``BATCH_SIZE``."""
        spec = self._spec(task)
        texts = [check_text(t) for t in texts]
        if spec.kind == PAIR_RANKING:
            answerer = self.answerer(task)
            return [answerer.answer(t, lambda pairs: self.score_pairs(task, pairs)) for t in texts]
        out: list[dict] = []
        for i in range(0, len(texts), BATCH_SIZE):
            chunk = texts[i : i + BATCH_SIZE]
            encoded = self.encoders[task].encode_batch(chunk)
            logits = self.logits(task, encoded)
            if spec.kind == SPAN_EXTRACTION:
                out += [extraction_result(t, e, lg) for t, e, lg in zip(chunk, encoded, logits)]
            else:
                out += [classification_result(lg / self.temperature(task), spec.labels) for lg in logits]
        return out

    def predict_mixed(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        """Results for ``(task, text)`` pairs of several tasks, in order.

        The service's batcher gathers one chain step's requests across tasks and
        calls this. Here each task's texts run as one batch; a backend that can
        run several tasks in one forward pass overrides it.
        """
        by_task: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(items):
            by_task.setdefault(task, []).append(i)
        out: list[dict | None] = [None] * len(items)
        for task, idx in by_task.items():
            for i, result in zip(idx, self.predict_batch(task, [items[i][1] for i in idx])):
                out[i] = result
        return out  # type: ignore[return-value]

    def answerer(self, task: str):
        """The knowledge-base ``Answerer`` of a pair-ranking task, made on first use."""
        self._spec(task)
        with self._answerers_lock:
            if task not in self._answerers:
                self._answerers[task] = self._answerer_for(task)
            return self._answerers[task]

    def ask(self, text: str) -> dict:
        """Run the chain on one question: every step, the route, file names, the answer."""
        return self.ask_batch([text])[0]

    def ask_batch(self, texts: Sequence[str]) -> list[dict]:
        """Run the chain on many questions, batching each step across them."""
        texts = [check_text(t) for t in texts]
        return run_chain(self.chain, texts, self.predict_batch, set(self.specs))


def knowledge_base_path(path: str | Path | None) -> Path | None:
    return Path(path).expanduser() if path is not None else None
