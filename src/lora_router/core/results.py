"""The results every backend gives, typed: JSON-ready dicts, the same for PyTorch and onnxruntime.

``ClassificationResult`` is what the original tool printed; ``ExtractionResult``
the file names and their spans; ``AnswerResult`` a knowledge-base answer;
``ChainAnswer`` what ``ask`` returns. They are ``TypedDict``: at run time
plain dicts, so results serialise as they always did, while a type checker
and a reader see every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from ..config import BIO_LABELS
from ..encoding import Encoded, softmax
from ..tasks.filename_rules import find_file_names


class _ClassificationFields(TypedDict):
    predicted_label: str
    confidence: float  # the calibrated probability of predicted_label
    probabilities: dict[str, float]


class ClassificationResult(_ClassificationFields, total=False):
    decided_by: str  # with the cascade on: "ngram" (the cheap first pass) or "adapter" (core.cascade)


class Span(TypedDict):
    text: str  # == question[start:end]
    start: int
    end: int
    score: float  # mean probability, over its tokens, of being inside a file name


class ExtractionResult(TypedDict):
    file_names: list[str]
    spans: list[Span]


class AnswerResult(TypedDict):
    answer: str  # "" when no entry answers confidently
    kb_id: str | None
    confidence: float
    candidates: list[dict]


TaskResult = ClassificationResult | ExtractionResult | AnswerResult


class ChainStep(TypedDict):
    task: str
    result: TaskResult
    ms: float


class _ChainAnswerFields(TypedDict):
    question: str
    steps: list[ChainStep]
    route: str | None  # answer, task, general, out_of_scope or uncertain
    file_names: list[str]
    answer: str | None


class ChainAnswer(_ChainAnswerFields, total=False):
    uncertain_step: str  # the step that was unsure (route uncertain)
    note: str  # why the chain stopped where it did, for a person


def classification_result(logits: np.ndarray, labels: Sequence[str]) -> ClassificationResult:
    probs = softmax(np.asarray(logits, dtype=np.float64))
    best = int(probs.argmax())
    return {
        "predicted_label": labels[best],
        "confidence": round(float(probs[best]), 6),
        "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probs)},
    }


def extraction_result(text: str, enc: Encoded, logits: np.ndarray) -> ExtractionResult:
    """File names in ``text``: the model marks which, ``tasks.filename_rules`` cuts them at their edges.

    A span's ``score`` is the mean probability, over its tokens, that the token is inside a name.
    """
    probs = softmax(np.asarray(logits[: len(enc.input_ids)], dtype=np.float64))
    inside = probs[:, BIO_LABELS.index("B")] + probs[:, BIO_LABELS.index("I")]
    chars = [0.0] * len(text)
    for p, (s, e), special in zip(inside, enc.offsets, enc.special):
        if not special:
            chars[s:e] = [float(p)] * (e - s)
    spans = []
    for start, end in find_file_names(text, chars):
        tokens = [p for p, (s, e), sp in zip(inside, enc.offsets, enc.special) if not sp and s < end and e > start]
        score = float(np.mean(tokens)) if tokens else 0.0
        spans.append(Span(text=text[start:end], start=start, end=end, score=round(score, 6)))
    return {"file_names": [s["text"] for s in spans], "spans": spans}


def result_confidence(result: TaskResult) -> float:
    """The figure a chain threshold is compared with."""
    if "confidence" in result:
        return float(result["confidence"])
    spans = result.get("spans") or []
    return min((s["score"] for s in spans), default=1.0)
