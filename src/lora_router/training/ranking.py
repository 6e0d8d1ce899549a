"""``RankingTask``: question_answer's training pairs and evaluation.

The adapter is a cross-encoder over (user question, knowledge-base phrasing).
Positives pair a question with the other phrasings of its entry (and with
itself, as an in-KB question is asked verbatim); hard negatives are the
phrasings of other entries that TF-IDF retrieves first; a question with no
answer makes every retrieved phrasing a negative. Evaluation runs the same
``Answerer`` logic as inference, with the no-answer threshold fitted first on
the training split (each training question retrieved with its own phrasing
left out of the knowledge base, as if it were new; ``kb/threshold.py``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import TaskSpec
from ..data import Record
from ..encoding import TextEncoder
from ..errors import DataError
from ..evaluation.metrics import score_results
from ..kb import Answerer, AnswerSettings, Candidate
from ..kb.fitting import fit_answer_settings
from .examples import Example
from ..data.no_answer import usable_examples

logger = logging.getLogger(__name__)


class RankingTask:
    """Pairs to train a pair-ranking adapter on, and its ranking metrics."""

    def __init__(self, spec: TaskSpec, kb_path: Path, train_records: Sequence[Record],
                 test_records: Sequence[Record], encoder: TextEncoder, seed: int,
                 settings: AnswerSettings | None = None, hard_negatives: int = 4, random_negatives: int = 1,
                 no_answer_examples: Sequence[str] = ()):
        self.spec = spec
        self.encoder = encoder
        self.seed = seed
        self.hard_negatives = hard_negatives
        self.random_negatives = random_negatives
        self.answerer = Answerer(kb_path, settings)
        self._max_relevance_weight = self.answerer.settings.relevance_weight
        kb = self.answerer.knowledge_base
        self.train = list(train_records)
        self.test = list(test_records)
        self._gold_train = self._gold_ids(self.train, "training")
        self._gold_test = self._gold_ids(self.test, "test")
        # More questions without an answer for the decision to compare with (data/no_answer.py); never a
        # question of the test split, which decides nothing, nor one this knowledge base answers.
        answered = {q for e in kb.entries for q in e.questions}
        self.no_answer_examples = usable_examples(no_answer_examples, {*(r.input for r in self.test), *answered})
        self._eval: tuple[list[list[Candidate]], list[Example]] | None = None
        self._fit: tuple[list[list[Candidate]], list[Example]] | None = None
        self._scored_by: tuple | None = None  # the (model, head) the threshold was last fitted with
        self.threshold_fit: dict | None = None
        logger.info("question_answer: %d entries in %s", len(kb.entries), kb.path)

    def _gold_ids(self, records: Sequence[Record], split: str) -> list[str | None]:
        """The entry each record's answer names (None for no answer); DataError for unknown answers."""
        by_answer = self.answerer.knowledge_base.by_answer()
        gold, problems = [], []
        for r in records:
            if r.output == "":
                gold.append(None)
            elif r.output in by_answer:
                gold.append(by_answer[r.output].id)
            else:
                problems.append((r.line, f"answer {str(r.output)[:30]!r}... is the answer of no entry in "
                                 f"{self.answerer.path}; the output must be an entry's answer exactly, or \"\" "
                                 "for no answer (fix the data or pass the matching --kb FILE)"))
        if problems:
            raise DataError(f"{self.spec.name} {split} data", problems)
        return gold

    # ------------------------------------------------------------ training
    def training_examples(self) -> list[Example]:
        """Encoded (question, phrasing) pairs with float targets 1.0 / 0.0."""
        rng = random.Random(self.seed)
        entries = self.answerer.knowledge_base.entries
        pairs: list[tuple[str, str, float, Record]] = []
        for r, gold in zip(self.train, self._gold_train, strict=True):
            q = r.input
            if gold is not None:
                own = next(e for e in entries if e.id == gold)
                pairs += [(q, p, 1.0, r) for p in own.questions if p != q]
                pairs.append((q, q, 1.0, r))
            # Hard negatives: the phrasings of other entries that retrieval ranks first.
            limit = self.hard_negatives if gold is not None else self.hard_negatives + 2
            negatives = [p for c in self.answerer.retrieve(q, exclude={q}) if c.entry.id != gold
                         for p in c.phrasings][:limit]
            others = [e for e in entries if e.id != gold]
            for _ in range(self.random_negatives):
                negatives.append(rng.choice(rng.choice(others).questions))
            pairs += [(q, p, 0.0, r) for p in dict.fromkeys(negatives)]
        encoded = self.encoder.encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False)
        n_pos = sum(p[2] == 1.0 for p in pairs)
        logger.info("question_answer: %d pairs (%d positive, %d negative)", len(pairs), n_pos, len(pairs) - n_pos)
        return [Example(enc, target, record) for enc, (_, _, target, record) in zip(encoded, pairs, strict=True)]

    # ------------------------------------------------------------ evaluation
    def _inputs(self, records: Sequence[Record], leave_out_self: bool) -> tuple[list[list[Candidate]], list[Example]]:
        """Retrieved candidates and encoded pairs of ``records`` (retrieval does not change while training)."""
        candidates = [self.answerer.retrieve(r.input, exclude={r.input} if leave_out_self else ()) for r in records]
        pairs = [p for r, c in zip(records, candidates, strict=True) for p in Answerer.pairs(r.input, c)]
        encoded = self.encoder.encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False) if pairs else []
        return candidates, [Example(e, 0.0) for e in encoded]

    def _logits(self, model, head, examples: list[Example]) -> list[float]:
        from .loop import predict_logits

        return [float(x[0]) for x in predict_logits(model, head, examples, self.encoder)] if examples else []

    def _decide(self, candidates: list[list[Candidate]], logits: Sequence[float]) -> list[dict]:
        results, pos = [], 0
        for cands in candidates:
            n = sum(len(c.phrasings) for c in cands)
            results.append(self.answerer.decide(cands, logits[pos : pos + n]))
            pos += n
        return results

    def fit_answering(self, model, head) -> dict | None:
        """Fit the cross-encoder's weight, the no-answer threshold and decision on the training split.

        A training question that is a phrasing of the knowledge base is retrieved
        with that phrasing left out, so it is scored as a new question would be.
        The weight is the one (of 0, 0.1, ... up to the configured weight) whose
        ranking has the best MRR there: the fit may lower it, never raise it,
        as the cross-encoder has seen these questions in training and looks
        better on them than on new ones. The threshold then best separates
        questions with and without an answer (``kb/threshold.py``), and the
        decision model (``kb/decision.py``) does so from several features,
        answering in the threshold's place (``kb/fitting.py``). The answerer
        keeps all three; None (threshold unchanged, no decision model) when the
        training split lacks questions with, or without, an answer.
        """
        if self._fit is None:
            self._fit = self._inputs(self.train, leave_out_self=True)
        candidates, examples = self._fit
        logits = _per_question(candidates, self._logits(model, head, examples))
        settings, fit = fit_answer_settings(self.answerer.settings, candidates, logits, self._gold_train,
                                            self._max_relevance_weight, extra_examples=self.no_answer_examples)
        self.answerer.settings = settings
        self._scored_by = (model, head)
        if fit is not None:
            fit.update(fitted_on="training split, each question's own phrasing left out",
                       extra_no_answer_examples=len(self.no_answer_examples))
        else:
            logger.warning("question_answer: the training split needs questions with and without an answer to "
                           "fit the no-answer decision; keeping threshold %s", settings.threshold)
        self.threshold_fit = fit
        return fit

    def predict(self, model, head) -> list[dict]:
        """The answerer's result for every test record, with ``model`` as the cross-encoder."""
        if self._eval is None:
            self._eval = self._inputs(self.test, leave_out_self=False)
        candidates, examples = self._eval
        return self._decide(candidates, self._logits(model, head, examples))

    def evaluate(self, model, head) -> dict:
        """Top-1, MRR, no-answer precision/recall and answer accuracy on the test split.

        The cross-encoder's weight and the no-answer threshold are fitted on the
        training split first, so the test split decides nothing.
        """
        self.fit_answering(model, head)
        results = self.predict(model, head)
        return score_results(results, self._gold_test, self.answerer.settings.threshold)

    def manifest_info(self) -> dict:
        """The knowledge base and answer settings, for ``Answerer.from_saved``.

        The weight and threshold are refitted with the model as it is now (the
        trainer restores the best epoch before asking), so the saved ones are that epoch's.
        """
        if self._scored_by is not None:
            self.fit_answering(*self._scored_by)
        info = self.answerer.manifest_info()
        if self.threshold_fit is not None:
            info["threshold_fit"] = self.threshold_fit
        return info


def _per_question(candidates: Sequence[Sequence[Candidate]], logits: Sequence[float]) -> list[np.ndarray]:
    """The flat logits of every question's pairs, cut into one array per question."""
    out, pos = [], 0
    for cands in candidates:
        n = sum(len(c.phrasings) for c in cands)
        out.append(np.asarray(logits[pos : pos + n], dtype=np.float64))
        pos += n
    return out

