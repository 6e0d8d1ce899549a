"""Fit how the answerer ranks and decides, from training questions already scored.

Training (``training/ranking.py``) and the cross-validation of the decision
(``evaluation/answering.py``) both call ``fit_answer_settings``, so what the
cross-validation measures is what training saves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .answerer import Candidate, decide, left_over, rank, ranking_features
from .decision import fit_decision
from .examples import examples_for
from .residual import FEATURE as RESIDUAL_FEATURE
from .residual import fit_residual
from .settings import AnswerSettings
from .threshold import fit_threshold


def fit_answer_settings(settings: AnswerSettings, candidates: Sequence[Sequence[Candidate]],
                        logits: Sequence[np.ndarray], gold: Sequence[str | None], max_weight: float,
                        with_decision: bool = True, with_examples: bool = True,
                        questions: Sequence[str] | None = None,
                        extra_examples: Sequence[str] = (),
                        with_residual: bool = True) -> tuple[AnswerSettings, dict | None]:
    """``settings`` with the cross-encoder's weight, the threshold and (``with_decision``) the no-answer model fitted.

    ``candidates[i]`` and ``logits[i]`` are question i's retrieval and its
    pairs' cross-encoder logits; ``gold[i]`` its entry id, None for no answer;
    ``questions[i]`` its text (by default, what its candidates record).
    The weight (0, 0.1, ... up to ``max_weight``) is the one with the best MRR;
    the threshold best separates the two kinds (``kb/threshold.py``); the
    decision is ``kb/decision.py``'s model, which ``with_examples`` also reads
    each question's likeness to the questions without an answer among these
    (``kb/examples.py``), its own left out, and ``with_residual`` the model of
    the n-grams the top entry leaves over (``kb/residual.py``), each question
    scored by a model fitted without its fold, and fitted with rows made from the answerable
    questions against a wrong entry (``wrong_entry_left_overs``). Returns the settings and the fit's
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
        if questions is None:
            questions = [c[0].question if c else "" for c in candidates]
        examples = list(dict.fromkeys([*(q for q, none in zip(questions, no_answer, strict=True) if none and q),
                                       *(q for q in extra_examples if q)]))
        index = examples_for(examples, settings) if with_examples and examples else None
        features = [ranking_features(r, c, index, exclude={q}) for r, c, q in zip(ranked, candidates, questions,
                                                                                  strict=True)]
        residual = None
        if with_residual:
            docs = [left_over(r, c, settings, exclude={q}) for r, c, q in zip(ranked, candidates, questions,
                                                                              strict=True)]
            wrong, made_from = wrong_entry_left_overs(ranked, candidates, gold, questions, settings)
            residual, out_of_fold = fit_residual(docs, [not none for none in no_answer], wrong_entry_docs=wrong,
                                                 made_from=made_from)
            for row, p in zip(features, out_of_fold, strict=True):
                row[RESIDUAL_FEATURE] = float(p)
        decision = fit_decision(features, no_answer, no_answer_examples=examples if index is not None else None,
                                residual_model=residual)
        settings = dataclasses.replace(settings, decision=decision)
        abstain = np.array([decide(c, lg, settings)["answer"] == "" for c, lg in zip(candidates, logits, strict=True)])
        none = np.array(no_answer)
        fit.update(decision_no_answer_recall=round(float(abstain[none].mean()), 4),
                   decision_answered=round(float((~abstain[~none]).mean()), 4))
    return settings, fit


def wrong_entry_left_overs(ranked: Sequence[list[dict]], candidates: Sequence[Sequence[Candidate]],
                           gold: Sequence[str | None], questions: Sequence[str], settings: AnswerSettings
                           ) -> tuple[list[list[str]], list[int]]:
    """For each answerable question, what it leaves over against the best-ranked entry that does not answer it,
    and the question's row: rows without an answer for the residual model (``fit_residual``)."""
    docs, made_from = [], []
    for i, (r, c, q, g) in enumerate(zip(ranked, candidates, questions, gold, strict=True)):
        other = next((x for x in r if x["id"] != g), None) if g is not None else None
        if other is not None:
            docs.append(left_over([other], c, settings, exclude={q}))
            made_from.append(i)
    return docs, made_from


def _reciprocal_rank(ranked: list[dict], gold: str | None) -> float:
    ids = [r["id"] for r in ranked]
    return 1.0 / (ids.index(gold) + 1) if gold in ids else 0.0
