"""Evaluation figures, computed with scikit-learn where it has them."""

from __future__ import annotations

from collections.abc import Sequence


def classification_metrics(gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=idx, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
        "macro_f1": round(float(f1_score(gold, pred, labels=idx, average="macro", zero_division=0)), 4),
        "per_label": {
            label: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                    "f1": round(float(f[i]), 4), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(gold, pred, labels=idx).tolist(),
        "labels": list(labels),
        "n": len(gold),
    }


def span_metrics(gold: Sequence[Sequence[tuple[int, int]]], pred: Sequence[Sequence[tuple[int, int]]]) -> dict:
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
                    top1_correct: Sequence[bool]) -> dict:
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


def headline(kind: str, metrics: dict) -> float:
    """The one figure that picks the best epoch."""
    if kind == "span_extraction":
        return metrics["f1"]
    if kind == "pair_ranking":
        return metrics["answer_accuracy"] + metrics["mrr"]
    return metrics["macro_f1"]
