"""Several tasks in one onnxruntime call: ``predict_mixed`` and a speculative ``ask``.

Mixed into ``OnnxRouter`` for the one-call layouts (multi, trunk), where one
session takes rows of different tasks (``runtime.models.OneCallModel``):

* ``predict_mixed(items)``: the service's batcher hands over ``(task, text)``
  pairs of several tasks; they run as rows of one call (chunks of
  ``BATCH_SIZE`` rows), each text tokenised once per maximum length.
* ``ask`` / ``ask_batch``: every classification and extraction step of the
  chain runs on the question in one call, before the chain is walked; then
  ``core.chain.run_chain`` applies the chain's rules to those results, so
  routes, steps and results are those of the step-by-step chain. Pair-ranking
  steps (question_answer: scores over knowledge-base candidates) run after,
  as before. A question that stops at the first step has paid for rows it
  does not use: ``OnnxRouter``'s ``speculate`` chooses, by default one call
  with the trunk layout and step by step without (``SPECULATE_BY_DEFAULT``,
  with the figures it rests on).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ...config import PAIR_RANKING, SPAN_EXTRACTION
from ...core.chain import run_chain
from ...core.predictor import BATCH_SIZE
from ...core.results import classification_result, extraction_result
from ...encoding import Encoded, check_text


class OneCallPredictor:
    """``predict_mixed`` and ``ask_batch`` in one call per batch; falls back to ``TaskPredictor`` without one."""

    one_call = None  # OneCallModel when the layout is multi or trunk
    speculate = False

    # ------------------------------------------------------------ mixed batches
    def predict_mixed(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        """Results for ``(task, text)`` pairs of several tasks, in order; one call per ``BATCH_SIZE`` rows."""
        if self.one_call is None:
            return super().predict_mixed(items)  # type: ignore[misc]
        items = [(task, check_text(text)) for task, text in items]
        out: list[dict | None] = [None] * len(items)
        rows, ranking = [], {}
        for i, (task, _) in enumerate(items):
            if self._spec(task).kind == PAIR_RANKING:  # type: ignore[attr-defined]
                ranking.setdefault(task, []).append(i)
            else:
                rows.append(i)
        for start in range(0, len(rows), BATCH_SIZE):
            chunk = rows[start : start + BATCH_SIZE]
            for i, result in zip(chunk, self._one_call_results([items[i] for i in chunk])):
                out[i] = result
        for task, idx in ranking.items():
            for i, result in zip(idx, self.predict_batch(task, [items[i][1] for i in idx])):  # type: ignore[attr-defined]
                out[i] = result
        return out  # type: ignore[return-value]

    def mixed_logits(self, rows: Sequence[tuple[str, Encoded]]) -> list[np.ndarray]:
        """Head logits of encoded ``(task, input)`` rows in one call (the parity gate checks these)."""
        return self._logits_rows(rows)

    def _one_call_results(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        """One call for classification/extraction rows; rows that encode alike share one input row."""
        encoders = self.encoders  # type: ignore[attr-defined]
        by_encoder: dict[int, tuple] = {}
        for task, text in items:
            by_encoder.setdefault(id(encoders[task]), (encoders[task], {}))[1][text] = None
        encoded: dict[tuple[int, str], Encoded] = {}
        for key, (encoder, texts) in by_encoder.items():
            encoded.update(((key, t), e) for t, e in zip(texts, encoder.encode_batch(list(texts))))
        row_inputs = [encoded[(id(encoders[task]), text)] for task, text in items]
        logits = self._logits_rows([(task, e) for (task, _), e in zip(items, row_inputs)])
        out = []
        for (task, text), e, lg in zip(items, row_inputs, logits):
            spec = self.specs[task]  # type: ignore[attr-defined]
            if spec.kind == SPAN_EXTRACTION:
                out.append(extraction_result(text, e, lg))
            else:
                out.append(classification_result(lg / self._temperature(task), spec.labels))
        return out

    def _logits_rows(self, rows: Sequence[tuple[str, Encoded]]) -> list[np.ndarray]:
        texts, row_text = _distinct([e for _, e in rows], key=lambda e: (tuple(e.input_ids), tuple(e.token_type_ids)))
        arrays = self.encoders[rows[0][0]].pad(texts)  # type: ignore[attr-defined]
        return self.one_call.logits_rows(arrays, row_text, [t for t, _ in rows])  # type: ignore[union-attr]

    def _temperature(self, task: str) -> float:
        temperature = getattr(self, "temperature", None)  # classification calibration, where the predictor has it
        return temperature(task) if temperature is not None else 1.0

    # ------------------------------------------------------------ the chain in one call
    def speculated_tasks(self) -> list[str]:
        """The chain's steps that ``ask`` runs in its one call: loaded, and not pair ranking."""
        specs = self.specs  # type: ignore[attr-defined]
        return [s.task for s in self.chain.steps.values()  # type: ignore[attr-defined]
                if s.task in specs and specs[s.task].kind != PAIR_RANKING]

    def ask_batch(self, texts: Sequence[str]) -> list[dict]:
        """Run the chain on many questions; with a one-call layout, its steps in one call per question batch."""
        tasks = self.speculated_tasks() if self.one_call is not None and self.speculate else []
        if not tasks:
            return super().ask_batch(texts)  # type: ignore[misc]
        texts = [check_text(t) for t in texts]
        distinct = list(dict.fromkeys(texts))
        per_call = max(1, BATCH_SIZE // len(tasks))
        done: dict[tuple[str, str], dict] = {}
        t0 = time.perf_counter()
        for start in range(0, len(distinct), per_call):
            rows = [(task, q) for q in distinct[start : start + per_call] for task in tasks]
            done.update(zip(rows, self._one_call_results(rows)))
        ms_per_question = (time.perf_counter() - t0) * 1000 / len(distinct)

        def predict_batch(task: str, batch: Sequence[str]) -> list[dict]:
            if task in tasks:
                return [done[(task, q)] for q in batch]
            return self.predict_batch(task, batch)  # type: ignore[attr-defined]

        outs = run_chain(self.chain, texts, predict_batch, set(self.specs))  # type: ignore[attr-defined]
        for out in outs:  # the call's time, shared by the steps it answered
            taken = [s for s in out["steps"] if s["task"] in tasks]
            for step in taken:
                step["ms"] = round(ms_per_question / len(taken), 3)
        return outs


def _distinct(values: Sequence, key) -> tuple[list, list[int]]:
    """The distinct values (first occurrence order) and, per value, its index among them."""
    index: dict = {}
    out, rows = [], []
    for v in values:
        k = key(v)
        if k not in index:
            index[k] = len(out)
            out.append(v)
        rows.append(index[k])
    return out, rows
