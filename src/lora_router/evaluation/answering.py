"""question_answer's no-answer decision, cross-validated on the training split.

The test split holds 25 questions without an answer: one more or less moves
no-answer recall by 0.04. The cross-validation scores every training question
once, with a decision fitted on the other folds, each question retrieved with
its own phrasing left out of the knowledge base (as training fits it).

The cross-encoder is the trained adapter, which saw all of these questions in
training: the figures measure how well the decision fitted on some questions
holds on others, not a cross-encoder that never saw them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ..data import Record
from ..kb import AnswerSettings
from ..kb.answerer import decide
from ..kb.fitting import fit_answer_settings
from .metrics import score_results


def cross_validate_answering(router, task: str, records: Sequence[Record], folds: int = 5, seed: int = 0,
                             with_decision: bool = True) -> dict:
    """Ranking metrics of ``records`` (e.g. the training split), each scored by a decision fitted on the other folds.

    ``with_decision=False`` fits the threshold alone, as adapters trained
    before the decision model did. Folds keep the share of questions without
    an answer. Returns the pooled metrics plus ``folds`` (each fold's).
    """
    answerer = router.answerer(task)
    by_answer = answerer.knowledge_base.by_answer()
    gold = [by_answer[r.output].id if r.output in by_answer else None for r in records]
    candidates = [answerer.retrieve(r.input, exclude={r.input}) for r in records]
    logits = [np.asarray(router.score_pairs(task, answerer.pairs(r.input, c)), dtype=np.float64).reshape(-1)
              if c else np.zeros(0) for r, c in zip(records, candidates, strict=True)]
    base = AnswerSettings.from_dict({**answerer.settings.to_dict(), "decision": None})
    max_weight = AnswerSettings().relevance_weight  # what training starts from
    fold_of = _stratified_folds([g is None for g in gold], folds, seed)
    results: list[dict | None] = [None] * len(records)
    per_fold = []
    for k in range(folds):
        fit_idx = [i for i, f in enumerate(fold_of) if f != k]
        held = [i for i, f in enumerate(fold_of) if f == k]
        settings, _ = fit_answer_settings(base, [candidates[i] for i in fit_idx], [logits[i] for i in fit_idx],
                                          [gold[i] for i in fit_idx], max_weight, with_decision=with_decision)
        for i in held:
            results[i] = decide(candidates[i], logits[i], settings)
        per_fold.append(score_results([results[i] for i in held], [gold[i] for i in held], settings.threshold))
    metrics = dict(score_results(results, gold, float(np.mean([f["threshold"] for f in per_fold]))))
    metrics.update(folds=per_fold, decision="logistic" if with_decision else "threshold", seed=seed)
    return metrics


def _stratified_folds(no_answer: Sequence[bool], folds: int, seed: int) -> list[int]:
    """A fold number per question, each kind dealt round-robin after a seeded shuffle."""
    out = [0] * len(no_answer)
    rng = random.Random(seed)
    for kind in (True, False):
        idx = [i for i, na in enumerate(no_answer) if na == kind]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            out[i] = j % folds
    return out
