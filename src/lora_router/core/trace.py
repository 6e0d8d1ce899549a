"""The decision trace of an answer: per step, what was decided, how sure, against what bar, by which model.

Every answer carries one (``answer["trace"]``), in Python, ``ask --json`` and
HTTP, so a person reviewing it later sees why the chain went where it did and
which adapter to blame::

    {"steps": [{"task": "question_classifier", "label": "数据平台相关问题", "probability": 0.93,
                "margin": 0.88, "threshold": 0.5, "passed": true, "ms": 3.1,
                "model": {"task": "question_classifier", "adapter": "<content hash>",
                          "export": "<export id>", "version": "<export version>"}}, ...],
     "request_id": "..."}                      # only when the service answered

A classification step's ``label`` is its predicted label, ``probability`` its
calibrated probability and ``margin`` the lead over the second label. The
file-name step has no label; its probability is the figure the chain holds
it to (the least sure span, 1.0 without one). The knowledge-base step's label
is the entry that answered (None: no entry), its probability the answer's
confidence and its margin the lead of the best candidate over the second; its
threshold is the answerer's. ``passed``: the step's figure reached its
threshold. With the cascade on (``--cascade``), a classification step's
``model`` also says which model decided it: ``"decided_by": "ngram"`` (the
export's character n-gram first pass) or ``"adapter"``. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypedDict

from .chain import Chain
from .results import ChainAnswer, TaskResult, result_confidence

ID_CHARS = 16  # hex characters of a content hash or id that a trace names a model by


class ModelIdentity(TypedDict):
    task: str
    adapter: str | None  # content hash of the adapter (weights, LoRA config, head)
    export: str | None  # the export's id; None: served from a hub
    version: str | None  # the export's version; from a hub, when the adapter was trained


class StepTrace(TypedDict):
    task: str
    label: str | None
    probability: float
    margin: float | None
    threshold: float
    passed: bool
    ms: float
    model: ModelIdentity


class DecisionTrace(TypedDict, total=False):
    steps: list[StepTrace]
    request_id: str


def unknown_model(task: str) -> ModelIdentity:
    return ModelIdentity(task=task, adapter=None, export=None, version=None)


def decision_trace(answer: ChainAnswer, chain: Chain, model: Callable[[str], ModelIdentity],
                   thresholds: Mapping[str, float] | None = None) -> DecisionTrace:
    """The trace of ``answer`` as ``chain`` ran it; ``model(task)`` names the model of a step, ``thresholds``
    overrides a step's (the knowledge-base answerer's own)."""
    steps = []
    for step in answer["steps"]:
        task, result = step["task"], step["result"]
        threshold = float((thresholds or {}).get(task, chain.steps[task].threshold if task in chain.steps else 0.0))
        label, probability, margin = _decision(result)
        passed = result.get("kb_id") is not None if "kb_id" in result else probability >= threshold
        identity = model(task)
        if "decided_by" in result:  # --cascade: the n-gram first pass or the adapter decided (core.cascade)
            identity = {**identity, "decided_by": result["decided_by"]}
        steps.append(StepTrace(task=task, label=label, probability=probability, margin=margin, threshold=threshold,
                               passed=passed, ms=step["ms"], model=identity))
    return DecisionTrace(steps=steps)


def _decision(result: TaskResult) -> tuple[str | None, float, float | None]:
    if "predicted_label" in result:
        ranked = sorted(result.get("probabilities", {}).values(), reverse=True)
        margin = ranked[0] - ranked[1] if len(ranked) > 1 else None
        return result["predicted_label"], float(result["confidence"]), _round(margin)
    if "kb_id" in result:
        scores = [c["score"] for c in result.get("candidates", [])]
        margin = scores[0] - scores[1] if len(scores) > 1 else None
        return result["kb_id"], float(result["confidence"]), _round(margin)
    return None, float(result_confidence(result)), None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
