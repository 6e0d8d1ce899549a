"""question_answer's no-answer decision, cross-validated on the training split and checked on a held-out one.

The test split holds 41 questions without an answer: one more or less moves
no-answer recall by 0.02. The cross-validation scores every training question
once, with a decision fitted on the other folds, each question retrieved with
its own phrasing left out of the knowledge base (as training fits it).
``holdout_answering`` fits on all of the training split and scores another
split, as training does with the test split.

The cross-encoder is the trained adapter, which saw the training questions it
was trained with: the figures measure how well the decision fitted on some
questions holds on others, not a cross-encoder that never saw them. Questions
added to the training data after the adapter was trained are new to it.
``settings`` measures other retrieval settings (an analyzer, say) with the same
cross-encoder, without retraining it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ..data import Record
from ..kb import Answerer, AnswerSettings
from ..kb.answerer import decide
from ..kb.fitting import fit_answer_settings
from ..data.no_answer import usable_examples
from .metrics import score_results


def cross_validate_answering(router, task: str, records: Sequence[Record], folds: int = 5, seed: int = 0,
                             with_decision: bool = True, settings: AnswerSettings | None = None,
                             with_examples: bool = True, extra_examples: Sequence[str] = (),
                             with_residual: bool = True) -> dict:
    """Ranking metrics of ``records`` (e.g. the training split), each scored by a decision fitted on the other folds.

    ``with_decision=False`` fits the threshold alone, as adapters trained
    before the decision model did; ``with_examples=False`` fits the decision
    without ``no_answer_similarity``, as adapters trained before issue 20 did
    (the examples a fold's decision compares with are the other folds' questions
    without an answer, and ``extra_examples`` but the fold's own questions, as training's
    ``--no-answer-examples``: ``data/no_answer.py``); ``with_residual=False`` without the
    model of what the top entry leaves over (``kb/residual.py``), as adapters trained before it. ``settings``: retrieve with these instead
    of the adapter's (weight, threshold and decision are refitted either way).
    Folds keep the share of questions without an answer. Returns the pooled
    metrics plus ``folds`` (each fold's).
    """
    answerer, base = _answerer(router, task, settings)
    gold, candidates, logits = _scored(router, task, answerer, records, leave_out_self=True)
    max_weight = AnswerSettings().relevance_weight  # what training starts from
    fold_of = _stratified_folds([g is None for g in gold], folds, seed)
    results: list[dict | None] = [None] * len(records)
    per_fold = []
    for k in range(folds):
        fit_idx = [i for i, f in enumerate(fold_of) if f != k]
        held = [i for i, f in enumerate(fold_of) if f == k]
        fitted, _ = fit_answer_settings(base, [candidates[i] for i in fit_idx], [logits[i] for i in fit_idx],
                                        [gold[i] for i in fit_idx], max_weight, with_decision=with_decision,
                                        with_examples=with_examples, questions=[records[i].input for i in fit_idx],
                                        extra_examples=usable_examples(extra_examples, {records[i].input for i in held}),
                                        with_residual=with_residual)
        for i in held:
            results[i] = decide(candidates[i], logits[i], fitted)
        per_fold.append(score_results([results[i] for i in held], [gold[i] for i in held], fitted.threshold))
    metrics = dict(score_results(results, gold, float(np.mean([f["threshold"] for f in per_fold]))))
    metrics.update(folds=per_fold, decision="logistic" if with_decision else "threshold",
                   no_answer_examples=with_decision and with_examples, seed=seed, analyzer=base.analyzer)
    return metrics


def holdout_answering(router, task: str, train: Sequence[Record], test: Sequence[Record],
                      with_decision: bool = True, settings: AnswerSettings | None = None,
                      with_examples: bool = True, extra_examples: Sequence[str] = (),
                      with_residual: bool = True) -> dict:
    """Ranking metrics of ``test`` under a decision fitted on all of ``train``, as training fits and scores it.

    ``settings``, ``with_decision``, ``with_examples``, ``extra_examples`` (less ``test``'s questions, as in
    training) and ``with_residual`` as in ``cross_validate_answering``.
    """
    answerer, base = _answerer(router, task, settings)
    gold, candidates, logits = _scored(router, task, answerer, train, leave_out_self=True)
    fitted, _ = fit_answer_settings(base, candidates, logits, gold, AnswerSettings().relevance_weight,
                                    with_decision=with_decision, with_examples=with_examples,
                                    questions=[r.input for r in train],
                                    extra_examples=usable_examples(extra_examples, {r.input for r in test}),
                                    with_residual=with_residual)
    test_gold, test_candidates, test_logits = _scored(router, task, answerer, test, leave_out_self=False)
    results = [decide(c, lg, fitted) for c, lg in zip(test_candidates, test_logits, strict=True)]
    metrics = dict(score_results(results, test_gold, fitted.threshold))
    metrics.update(decision="logistic" if with_decision else "threshold",
                   no_answer_examples=with_decision and with_examples, analyzer=base.analyzer,
                   relevance_weight=fitted.relevance_weight)
    return metrics


def _answerer(router, task: str, settings: AnswerSettings | None) -> tuple[Answerer, AnswerSettings]:
    """The answerer to measure and its settings without a fitted decision."""
    answerer = router.answerer(task)
    if settings is not None:
        answerer = Answerer(answerer.path, settings)
    return answerer, AnswerSettings.from_dict({**answerer.settings.to_dict(), "decision": None})


def _scored(router, task: str, answerer: Answerer, records: Sequence[Record],
            leave_out_self: bool) -> tuple[list[str | None], list, list[np.ndarray]]:
    """Gold entry ids, retrieved candidates and the cross-encoder's logits of every record."""
    by_answer = answerer.knowledge_base.by_answer()
    gold = [by_answer[r.output].id if r.output in by_answer else None for r in records]
    candidates = [answerer.retrieve(r.input, exclude={r.input} if leave_out_self else ()) for r in records]
    pairs = [p for r, c in zip(records, candidates, strict=True) for p in answerer.pairs(r.input, c)]
    flat = np.asarray(router.score_pairs(task, pairs), dtype=np.float64).reshape(-1) if pairs else np.zeros(0)
    logits, pos = [], 0
    for c in candidates:
        n = sum(len(x.phrasings) for x in c)
        logits.append(flat[pos : pos + n])
        pos += n
    return gold, candidates, logits


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
