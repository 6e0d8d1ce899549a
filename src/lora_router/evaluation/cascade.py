"""The cascade's threshold: the lowest n-gram confidence at which letting it decide keeps the step accurate.

A step of the cascade (``core.cascade``) takes the n-gram model's label when
its confidence is at least the threshold, the adapter's otherwise. On the
held-out split, every threshold gives an accuracy; the one chosen lets the
n-gram model decide as many questions as it can while the step's accuracy
stays no lower than the better of the two models alone minus ``max_drop``
points. Both extremes (never / always the n-gram model) are candidates, so
a threshold always exists; "never" is ``None``. The adapter may be scored in
several runs (an export's layouts and precisions): the threshold must hold
for each. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_DROP_POINTS = 0.5


def fit_threshold(ngram_probs: np.ndarray, adapter_predictions: dict[str, Sequence[int]], gold: Sequence[int],
                  max_drop: float = MAX_DROP_POINTS) -> dict:
    """``{"threshold", "max_drop", "held_out", "ngram_accuracy", "runs": {run: figures}}``.

    ``ngram_probs``: (questions, labels); ``adapter_predictions``: per run
    (e.g. "trunk/int8"), the adapter's label index per question; ``gold`` the
    right label index. Accuracies are percentages; ``ngram_share`` is the
    share of held-out questions the n-gram model decides at the threshold.
    """
    probs, gold = np.asarray(ngram_probs, dtype=np.float64), np.asarray(gold)
    n = len(gold)
    if n == 0 or probs.shape[0] != n:
        raise ValueError(f"fit_threshold needs as many n-gram rows as gold labels (got {probs.shape[0]} and {n}), "
                         "at least one")
    if not adapter_predictions:
        raise ValueError("fit_threshold needs the adapter's predictions of at least one run")
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    ngram_right = (probs.argmax(axis=1) == gold)[order]
    # k questions decided by the n-gram model: the k most confident; a cut only between distinct confidences
    cuts = [k for k in range(n + 1) if k in (0, n) or confidence[order[k - 1]] > confidence[order[k]]]
    ngram_prefix = np.concatenate([[0], np.cumsum(ngram_right)])
    allowed = np.ones(n + 1, dtype=bool)
    for predicted in adapter_predictions.values():
        adapter_right = (np.asarray(predicted) == gold)[order]
        adapter_suffix = np.concatenate([np.cumsum(adapter_right[::-1])[::-1], [0]])
        correct = ngram_prefix + adapter_suffix  # correct answers of the cascade with k decided by the n-gram model
        best = max(correct[0], correct[n])  # adapter alone, n-gram alone
        allowed &= correct * 100.0 >= best * 100.0 - max_drop * n - 1e-9
    # With one run either extreme is allowed; with several, none may be (the adapter better in one run, the
    # n-gram model in another): then the adapter decides alone, as without the cascade.
    k = max((c for c in cuts if allowed[c]), default=0)
    threshold = float(confidence[order[k - 1]]) if k else None
    runs = {}
    for run, predicted in adapter_predictions.items():
        adapter_right = np.asarray(predicted) == gold
        decided = confidence >= threshold if threshold is not None else np.zeros(n, dtype=bool)
        right = np.where(decided, probs.argmax(axis=1) == gold, adapter_right)
        runs[run] = {"adapter_accuracy": _pct(adapter_right.sum(), n), "cascade_accuracy": _pct(right.sum(), n),
                     "ngram_share": _pct(decided.sum(), n)}
    return {"threshold": threshold, "max_drop": max_drop, "held_out": n,
            "ngram_accuracy": _pct(int((probs.argmax(axis=1) == gold).sum()), n), "runs": runs}


def _pct(count, n: int) -> float:
    return round(100.0 * float(count) / n, 2)
