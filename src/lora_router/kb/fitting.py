"""Fit how the answerer ranks and decides, from training questions already scored.

Training (``training/ranking.py``) and the cross-validation of the decision
(``evaluation/answering.py``) both call ``fit_answer_settings``, so what the
cross-validation measures is what training saves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .answerer import Candidate, decide, rank, ranking_features
from .decision import fit_decision
from .settings import AnswerSettings
from .threshold import fit_threshold


def fit_answer_settings(settings: AnswerSettings, candidates: Sequence[Sequence[Candidate]],
                        logits: Sequence[np.ndarray], gold: Sequence[str | None], max_weight: float,
                        with_decision: bool = True) -> tuple[AnswerSettings, dict | None]:
    """``settings`` with the cross-encoder's weight, the threshold and (``with_decision``) the no-answer model fitted.

    ``candidates[i]`` and ``logits[i]`` are question i's retrieval and its
    pairs' cross-encoder logits; ``gold[i]`` its entry id, None for no answer.
    The weight (0, 0.1, ... up to ``max_weight``) is the one with the best MRR;
    the threshold best separates the two kinds (``kb/threshold.py``); the
    decision is ``kb/decision.py``'s model. Returns the settings and the fit's
    figures (None, and ``settings`` unchanged but for the weight, when the
    questions are all of one kind).
    """
    answerable = [i for i, g in enumerate(gold) if g is not None]
    best: tuple[float, float] | None = None
    for weight in sorted({max_weight, *(k / 10 for k in range(11) if k / 10 < max_weight)}, reverse=True):
        mrr = sum(_reciprocal_rank(rank(candidates[i], logits[i], weight), gold[i])
                  for i in answerable) / max(len(answerable), 1)
        if best is None or mrr > best[0] + 1e-9:
            best = (mrr, weight)
    assert best is not None
    mrr, weight = best
    settings = dataclasses.replace(settings, relevance_weight=weight, decision=None)
    ranked = [rank(c, lg, weight) for c, lg in zip(candidates, logits, strict=True)]
    no_answer = [g is None for g in gold]
    fit = fit_threshold([r[0]["score"] if r else 0.0 for r in ranked], no_answer)
    if fit is None:
        return settings, None
    settings = dataclasses.replace(settings, threshold=fit["threshold"])
    fit.update(relevance_weight=weight, train_mrr=round(mrr, 4))
    if with_decision:
        features = [ranking_features(r, c) for r, c in zip(ranked, candidates, strict=True)]
        settings = dataclasses.replace(settings, decision=fit_decision(features, no_answer))
        abstain = np.array([decide(c, lg, settings)["answer"] == "" for c, lg in zip(candidates, logits, strict=True)])
        none = np.array(no_answer)
        fit.update(decision_no_answer_recall=round(float(abstain[none].mean()), 4),
                   decision_answered=round(float((~abstain[~none]).mean()), 4))
    return settings, fit


def _reciprocal_rank(ranked: list[dict], gold: str | None) -> float:
    ids = [r["id"] for r in ranked]
    return 1.0 / (ids.index(gold) + 1) if gold in ids else 0.0
