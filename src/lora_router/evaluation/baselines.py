"""Simple baselines scored beside every adapter, so a user sees at once whether the adapter beats them.

* classification: character 1-3-gram TF-IDF + logistic regression (scikit-learn),
  fitted on the adapter's own training split;
* file names: a regular expression, every maximal run of characters that are
  not white space, quotes, brackets or punctuation, ending in ``.ext``;
* knowledge-base answers: retrieval alone (the answerer's own index, no
  cross-encoder), its no-answer threshold on the retrieval score fitted on the
  training split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, TaskSpec
from ..data import Record
from ..encoding import char_spans
from .metrics import classification_metrics, ranking_metrics, span_metrics

CLASSIFIER = "char 1-3-gram TF-IDF + logistic regression"
FILE_REGEX_NAME = "regex: every maximal run without spaces, quotes, brackets or punctuation, ending in .ext"
RETRIEVAL_NAME = "retrieval only (the answerer's index, no cross-encoder; no-answer threshold fitted on train)"

_RUN = r"[^\s<>《》“”‘’'\"`「」『』()（）\[\]【】{}，。、；：！？,;!?]"
FILE_REGEX = re.compile(_RUN + r"+?\.[A-Za-z][A-Za-z0-9]{0,9}(?![A-Za-z0-9])")


class TextClassifierBaseline:
    """TF-IDF over character 1-3-grams and a logistic regression, fitted on training records."""

    def __init__(self, spec: TaskSpec, seed: int = 0):
        self.spec = spec
        self.seed = seed
        self.pipeline = None

    def fit(self, records: Sequence[Record]) -> TextClassifierBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=True),
            LogisticRegression(max_iter=2000, C=10.0, random_state=self.seed),
        )
        self.pipeline.fit([r.input for r in records], [self.spec.labels.index(r.output) for r in records])
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities over every label of the task (a label absent from training gets 0)."""
        assert self.pipeline is not None, "fit first"
        probs = self.pipeline.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self.spec.labels)))
        out[:, self.pipeline.classes_] = probs
        return out

    def ngram_model(self):
        """The fitted model as plain arrays that run with numpy alone (``core.cascade.NgramModel``)."""
        from ..core.cascade import NgramModel

        assert self.pipeline is not None, "fit first"
        vectorizer, regression = self.pipeline.steps[0][1], self.pipeline.steps[1][1]
        coef, intercept = regression.coef_.astype(np.float64), regression.intercept_.astype(np.float64)
        if coef.shape[0] == 1:  # two classes: sigmoid(z) == softmax([0, z])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        return NgramModel(labels=list(self.spec.labels), classes=[int(c) for c in regression.classes_],
                          vocabulary={str(g): int(i) for g, i in vectorizer.vocabulary_.items()},
                          idf=vectorizer.idf_.astype(np.float64), coef=coef, intercept=intercept,
                          ngram_range=tuple(vectorizer.ngram_range), lowercase=bool(vectorizer.lowercase))


def file_names(text: str) -> list[tuple[int, int]]:
    """Character ranges of the file names the regular-expression baseline finds."""
    return [m.span() for m in FILE_REGEX.finditer(text)]


def classification_baseline(spec: TaskSpec, train: Sequence[Record], test: Sequence[Record], seed: int = 0) -> dict:
    """The classifier baseline's metrics (with its ECE) on ``test``."""
    from .calibration import expected_calibration_error

    probs = TextClassifierBaseline(spec, seed).fit(train).predict_proba([r.input for r in test])
    gold = [spec.labels.index(r.output) for r in test]
    metrics = classification_metrics(gold, probs.argmax(-1).tolist(), spec.labels)
    metrics["ece"] = round(expected_calibration_error(probs, gold), 4)
    return metrics


def span_baseline(test: Sequence[Record]) -> dict:
    gold = [char_spans(r.input, r.output) for r in test]  # type: ignore[arg-type]
    return span_metrics(gold, [file_names(r.input) for r in test])


def retrieval_baseline(answerer, train: Sequence[Record], test: Sequence[Record]) -> dict:
    """Ranking metrics of retrieval alone; the retrieval-score threshold that answers train best decides no-answer."""
    by_answer = answerer.knowledge_base.by_answer()

    def gold(records):
        return [by_answer[r.output].id if r.output in by_answer else None for r in records]

    def ranked(records, exclude_self: bool):
        out = []
        for r in records:
            cands = answerer.retrieve(r.input, exclude={r.input} if exclude_self else ())
            out.append(([c.entry.id for c in cands], cands[0].retrieval if cands else 0.0))
        return out

    # A training question may be a phrasing of the knowledge base itself: leave it out, as training does.
    train_ranked, train_gold = ranked(train, True), gold(train)
    threshold = _best_threshold(train_ranked, train_gold)
    test_ranked, test_gold = ranked(test, False), gold(test)
    ranks = [ids.index(g) + 1 if g in ids else None for (ids, _), g in zip(test_ranked, test_gold)]
    top1 = [bool(ids) and ids[0] == g for (ids, _), g in zip(test_ranked, test_gold)]
    metrics = ranking_metrics(ranks, [g is None for g in test_gold], [s < threshold for _, s in test_ranked], top1)
    metrics["threshold"] = round(threshold, 4)
    return metrics


def _best_threshold(ranked: list[tuple[list[str], float]], gold: list[str | None]) -> float:
    """The retrieval score below which "no answer" is right most often on these records."""
    best, best_correct = 0.0, -1
    for t in sorted({0.0, *(round(s, 4) for _, s in ranked), 1.01}):
        correct = sum((g is None) if s < t else (bool(ids) and ids[0] == g) for (ids, s), g in zip(ranked, gold))
        if correct > best_correct:
            best, best_correct = t, correct
    return best


def baseline_for(spec: TaskSpec, train: Sequence[Record], test: Sequence[Record], *, answerer=None,
                 seed: int = 0) -> dict | None:
    """``{"name", "metrics"}`` of the task kind's baseline on ``test``, or None when there is none to fit."""
    if spec.kind == SPAN_EXTRACTION and spec.name == "file_name_pick" and test:  # the regex knows file names only
        return {"name": FILE_REGEX_NAME, "metrics": span_baseline(test)}
    if not train or not test:
        return None
    if spec.kind == SEQUENCE_CLASSIFICATION:
        if len({r.output for r in train}) < 2:
            return None
        return {"name": CLASSIFIER, "metrics": classification_baseline(spec, train, test, seed)}
    if spec.kind == PAIR_RANKING and answerer is not None:
        return {"name": RETRIEVAL_NAME, "metrics": retrieval_baseline(answerer, train, test)}
    return None
