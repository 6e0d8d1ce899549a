"""Result dicts (JSON-ready), the same for the PyTorch router and the ONNX runtime.

Classification, as the original tool printed it::

    {"predicted_label", "confidence", "probabilities": {label: p}}

Extraction::

    {"file_names": [...], "spans": [{"text", "start", "end", "score"}]}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import BIO_LABELS
from ..encoding import Encoded, softmax
from ..tasks.filename_rules import find_file_names


def classification_result(logits: np.ndarray, labels: Sequence[str]) -> dict:
    probs = softmax(np.asarray(logits, dtype=np.float64))
    best = int(probs.argmax())
    return {
        "predicted_label": labels[best],
        "confidence": round(float(probs[best]), 6),
        "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probs)},
    }


def extraction_result(text: str, enc: Encoded, logits: np.ndarray) -> dict:
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
        spans.append({"text": text[start:end], "start": start, "end": end, "score": round(score, 6)})
    return {"file_names": [s["text"] for s in spans], "spans": spans}


def result_confidence(result: dict) -> float:
    """The figure a chain threshold is compared with."""
    if "confidence" in result:
        return float(result["confidence"])
    spans = result.get("spans") or []
    return min((s["score"] for s in spans), default=1.0)
