"""The int8 gate's comparison: a task's own metric on the held-out split, PyTorch's against the export's.

The gated metric is accuracy (classification), exact-span F1 (extraction) or
top-1 (ranking), in percent; the export may fall at most ``int8_max_drop``
points below PyTorch (``lora-router export --int8-max-drop``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from .metrics import score_results, span_metrics

INT8_MAX_DROP_POINTS = 1.0
# The metric each kind is gated on, by its figure's name in the report.
METRIC_NAMES = {SEQUENCE_CLASSIFICATION: "accuracy", SPAN_EXTRACTION: "exact-span F1", PAIR_RANKING: "top-1"}


def compare_metric(kind: str, gold: Sequence, pytorch: Sequence, onnx: Sequence,
                   threshold: float | None = None) -> dict:
    """The gated metric of both, in percent, and how far ONNX falls below PyTorch (positive: a drop).

    ``gold`` and the predictions are label indices (classification), character
    spans per record (extraction), or entry ids (None: no answer) and the
    answerer's results, decided at ``threshold`` (ranking; answer accuracy is reported beside top-1).
    """
    if kind == PAIR_RANKING:
        mt, mo = score_results(pytorch, gold, threshold), score_results(onnx, gold, threshold)
        return {**_figures(kind, mt["top1"], mo["top1"]),
                "answer_accuracy_pytorch": round(mt["answer_accuracy"] * 100, 2),
                "answer_accuracy_onnx": round(mo["answer_accuracy"] * 100, 2)}
    if kind == SPAN_EXTRACTION:
        return _figures(kind, span_metrics(gold, pytorch)["f1"], span_metrics(gold, onnx)["f1"])
    labels = np.asarray(gold)
    return _figures(kind, float((np.asarray(pytorch) == labels).mean()), float((np.asarray(onnx) == labels).mean()))


def _figures(kind: str, pytorch: float, onnx: float) -> dict:
    t, o = round(pytorch * 100, 2), round(onnx * 100, 2)
    return {"metric": METRIC_NAMES[kind], "metric_pytorch": t, "metric_onnx": o, "metric_drop_points": round(t - o, 2)}


def metric_drop(figures: dict, agreement_key: str, max_drop: float = INT8_MAX_DROP_POINTS) -> str | None:
    """What is wrong when ``figures``' metric drops more than ``max_drop`` points; None when it does not."""
    if figures["metric_drop_points"] <= max_drop:
        return None
    ties = figures.get("near_ties", figures.get("near_tie_tokens"))
    return (f"{figures['metric']} {figures['metric_onnx']:.2f} vs PyTorch {figures['metric_pytorch']:.2f} "
            f"({figures['metric_drop_points']:.2f} points lower, bound {max_drop:g}; "
            f"agreement {figures[agreement_key]:.2%}, near-ties {ties})")
