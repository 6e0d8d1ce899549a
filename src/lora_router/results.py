"""Result dicts (JSON-ready), the same for the PyTorch router and the ONNX runtime.

Classification, as the original tool printed it::

    {"predicted_label", "confidence", "probabilities": {label: p}}

Extraction::

    {"file_names": [...], "spans": [{"text", "start", "end", "score"}]}
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .encoding import Encoded, decode_spans, softmax


def classification_result(logits: np.ndarray, labels: Sequence[str]) -> dict:
    probs = softmax(np.asarray(logits, dtype=np.float64))
    best = int(probs.argmax())
    return {
        "predicted_label": labels[best],
        "confidence": round(float(probs[best]), 6),
        "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probs)},
    }


# TASKS.md: "A file reference has an extension". A span without one (a table
# name, "ODS层") is not a file, whatever the model says.
_HAS_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


def extraction_result(text: str, enc: Encoded, logits: np.ndarray) -> dict:
    probs = softmax(np.asarray(logits[: len(enc.input_ids)], dtype=np.float64))
    spans = [s for s in decode_spans(text, enc, probs) if _HAS_EXTENSION.search(s["text"])]
    return {"file_names": [s["text"] for s in spans], "spans": spans}


def result_confidence(result: dict) -> float:
    """The figure a chain threshold is compared with."""
    if "confidence" in result:
        return float(result["confidence"])
    spans = result.get("spans") or []
    return min((s["score"] for s in spans), default=1.0)
