"""Task metrics in numpy, typed per kind (TypedDicts: the value is the JSON of ``task.json``'s ``metrics``),
and the one headline of each kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION


class LabelFigures(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class _ClassificationFigures(TypedDict):
    accuracy: float
    macro_f1: float
    per_label: dict[str, LabelFigures]
    confusion_matrix: list[list[int]]  # rows gold, columns predicted, in ``labels`` order
    labels: list[str]
    n: int


class ClassificationMetrics(_ClassificationFigures, total=False):
    calibration: dict  # eval: ECE before and after the temperature
    ece: float  # the baseline's


class SpanMetrics(TypedDict):
    precision: float
    recall: float
    f1: float
    exact_match: float
    n: int


class _RankingFigures(TypedDict):
    top1: float
    mrr: float
    no_answer_precision: float
    no_answer_recall: float
    answer_accuracy: float
    n: int
    n_answerable: int


class RankingMetrics(_RankingFigures, total=False):
    threshold: float  # the answerer's, when scored through one


Metrics = ClassificationMetrics | SpanMetrics | RankingMetrics


@dataclass(frozen=True)
class Headline:
    """The figure that sums a kind up (``hub list``), and the figures whose sum picks the best epoch.

    They differ for ranking only: top-1 is what a reader knows, while the best
    epoch also weighs the no-answer decisions (answer accuracy) and the ranks below the first (MRR).
    """

    key: str
    name: str
    best_epoch: tuple[str, ...]


HEADLINES = {
    SEQUENCE_CLASSIFICATION: Headline("macro_f1", "macro-F1", ("macro_f1",)),
    SPAN_EXTRACTION: Headline("f1", "span F1", ("f1",)),
    PAIR_RANKING: Headline("top1", "top-1", ("answer_accuracy", "mrr")),
}


def headline(kind: str, metrics: Mapping) -> str:
    """A task's headline figure as ``hub list`` shows it, e.g. ``macro-F1 0.912``; ``-`` without one."""
    h = HEADLINES.get(kind)
    return f"{h.name} {metrics[h.key]:.3f}" if h and h.key in metrics else "-"


def best_epoch_score(kind: str, metrics: Mapping) -> float:
    """The figure training keeps the best epoch by (higher is better)."""
    return sum(metrics[k] for k in HEADLINES[kind].best_epoch)


def classification_metrics(gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> ClassificationMetrics:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix of label indices.

    The figures are scikit-learn's (``zero_division=0``: a label never predicted has precision 0).
    """
    g, p = np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if not g.size:
        raise ValueError("no records to score")
    n = len(labels)
    cm = np.bincount(g * n + p, minlength=n * n).reshape(n, n)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    precision, recall, f1 = _divide(tp, predicted), _divide(tp, support), _divide(2 * tp, support + predicted)
    return {
        "accuracy": round(float((g == p).mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "per_label": {
            label: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                    "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
        "n": len(gold),
    }


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, 0 where ``b`` is 0."""
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def span_metrics(gold: Sequence[Sequence[tuple[int, int]]], pred: Sequence[Sequence[tuple[int, int]]]) -> SpanMetrics:
    """Exact-span precision, recall and F1 over character ranges, plus whole-record accuracy."""
    tp = n_pred = n_gold = exact = 0
    for g, p in zip(gold, pred):
        gs, ps = set(map(tuple, g)), set(map(tuple, p))
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
        exact += gs == ps
    precision = tp / n_pred if n_pred else (1.0 if not n_gold else 0.0)
    recall = tp / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "exact_match": round(exact / len(gold), 4) if gold else 0.0,
        "n": len(gold),
    }


def ranking_metrics(ranks: Sequence[int | None], no_answer_gold: Sequence[bool], no_answer_pred: Sequence[bool],
                    top1_correct: Sequence[bool]) -> RankingMetrics:
    """Top-1 accuracy and MRR on answerable questions; no-answer precision/recall on all."""
    answerable = [r for r, na in zip(ranks, no_answer_gold) if not na]
    mrr = sum(1.0 / r for r in answerable if r) / len(answerable) if answerable else 0.0
    top1 = sum(c for c, na in zip(top1_correct, no_answer_gold) if not na) / len(answerable) if answerable else 0.0
    tp = sum(g and p for g, p in zip(no_answer_gold, no_answer_pred))
    n_pred, n_gold = sum(no_answer_pred), sum(no_answer_gold)
    correct = sum(
        (g and p) or (not g and not p and c) for g, p, c in zip(no_answer_gold, no_answer_pred, top1_correct)
    )
    return {
        "top1": round(top1, 4),
        "mrr": round(mrr, 4),
        "no_answer_precision": round(tp / n_pred, 4) if n_pred else 0.0,
        "no_answer_recall": round(tp / n_gold, 4) if n_gold else 0.0,
        "answer_accuracy": round(correct / len(no_answer_gold), 4) if no_answer_gold else 0.0,
        "n": len(no_answer_gold),
        "n_answerable": len(answerable),
    }


def score_results(results: Sequence[dict], gold: Sequence[str | None], threshold: float) -> RankingMetrics:
    """Ranking metrics of answerer results against gold entry ids (None = no answer)."""
    ranks, top1 = [], []
    for res, g in zip(results, gold, strict=True):
        ids = [c["id"] for c in res["candidates"]]
        ranks.append(ids.index(g) + 1 if g in ids else None)
        top1.append(bool(ids) and ids[0] == g)
    metrics = ranking_metrics(ranks, [g is None for g in gold], [r["answer"] == "" for r in results], top1)
    metrics["threshold"] = threshold
    return metrics
