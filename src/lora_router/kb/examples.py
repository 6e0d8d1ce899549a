"""The training split's questions without an answer, kept as examples the decision compares a question with.

Features of the ranking alone cannot tell a question about a platform topic the
knowledge base does not cover ("平台多久做一次数据备份") from a new phrasing of
one it does: both share the platform's common words with some entry. What
sets many of them apart is that they resemble questions already known to have
no answer: the same uncovered topics, the same small talk. The decision
(``kb/decision.py``) therefore also reads ``no_answer_similarity``: the
TF-IDF cosine of the question to the closest of these examples, under the
answerer's own analyzer. Measured on the tiny random base (docs/performance.md),
it raised no-answer precision and recall in a 5-fold CV of train and on
hand-written questions never used for fitting.

The examples are saved, as text, in the fitted decision (``no_answer_examples``)
so that every runtime computes the feature the same way (numpy only). An
example that a retrieved entry now holds as a phrasing (the knowledge base
grew to answer it) is not compared with: it is no longer a question without an answer.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

import numpy as np

from .index import CharTfidfIndex

FEATURE = "no_answer_similarity"


class NoAnswerExamples:
    """A TF-IDF index over questions known to have no answer; ``similarity`` is the best cosine to one."""

    def __init__(self, questions: Sequence[str], *, analyzer: str, ngram_range: tuple[int, int],
                 sublinear_tf: bool, unknown_query_ngrams: bool):
        self.questions = list(questions)
        self.index = CharTfidfIndex(self.questions, analyzer=analyzer, ngram_range=ngram_range,
                                    sublinear_tf=sublinear_tf, unknown_query_ngrams=unknown_query_ngrams)

    def similarity(self, question: str, exclude: Collection[str] = ()) -> float:
        """The cosine of ``question`` to its closest example, leaving out the examples in ``exclude``."""
        if not self.questions or not question:
            return 0.0
        scores = self.index.scores(question)
        if exclude:
            keep = np.array([q not in exclude for q in self.questions])
            scores = scores[keep]
        return float(scores.max()) if scores.size else 0.0


@lru_cache(maxsize=8)
def _cached(questions: tuple[str, ...], analyzer: str, ngram_range: tuple[int, int], sublinear_tf: bool,
            unknown_query_ngrams: bool) -> NoAnswerExamples:
    return NoAnswerExamples(questions, analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=sublinear_tf,
                            unknown_query_ngrams=unknown_query_ngrams)


def examples_for(questions: Sequence[str], settings) -> NoAnswerExamples:
    """The examples index of ``questions`` under ``settings``' analyzer (an ``AnswerSettings``); built once."""
    return _cached(tuple(questions), settings.analyzer, tuple(settings.ngram_range), bool(settings.sublinear_tf),
                   bool(settings.unknown_query_ngrams))
