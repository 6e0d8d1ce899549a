"""The words a question leaves over once its top entry is taken away, read by a small fitted model.

A question about an entry's topic that asks what its answer does not say
("补数据跑到一半想停掉，已经补完的分区会回滚吗" against the backfill entry) shares
nearly every n-gram with the entry: retrieval, coverage and the gap cannot
tell it from a new phrasing. What tells them apart is what is left over: the
n-grams of the question that the entry holds nowhere (in its answer or its
phrasings). A paraphrase leaves over function words ("啥", "一下"); a question
the entry does not answer leaves over what it asks about ("暂停", "静默", "回滚").

``fit_residual`` fits a logistic regression "an entry answers it" on the
TF-IDF of those left-over n-grams (numpy, L2, each kind weighing half) and
gives every training question the probability of a model fitted without its
fold, so the decision (``kb/decision.py``) learns how far to trust it on
questions it has not seen. Each answerable training question also gives a
row without an answer: what it leaves over against the best-ranked entry that
does not answer it, so the model learns that another topic's words left over
mean the top entry is the wrong one (measured: CV no-answer precision 0.814 to
0.844 at recall 0.833, docs/performance.md, under a CV that overstated precision
for every row; the fixed CV's figures are there too). The model is saved as plain numbers in the decision
(``residual_model``) and read with numpy by every runtime. An entry added to
the knowledge base after training holds its own n-grams, so they leave the
residual: the model never holds back a new entry for its topic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from functools import lru_cache

import numpy as np

from .decision import newton_logistic
from .index import char_ngrams

FEATURE = "residual_answerable"
MIN_DOCS = 2  # an n-gram left over by a single training question is not read: it would only memorise that question
L2_PENALTY = 1.0
FOLDS = 5


def residual_grams(question: str, entry, analyzer: str, ngram_range: tuple[int, int],
                   exclude: Collection[str] = ()) -> list[str]:
    """The n-grams of ``question`` that ``entry`` holds in neither its answer nor a phrasing outside ``exclude``."""
    grams = char_ngrams(question, ngram_range, analyzer)
    if entry is None:
        return grams
    phrasings = tuple(q for q in entry.questions if q not in exclude)
    held = _held(entry.answer, phrasings, analyzer, tuple(ngram_range))
    return [g for g in grams if g not in held]


@lru_cache(maxsize=4096)
def _held(answer: str, phrasings: tuple[str, ...], analyzer: str, ngram_range: tuple[int, int]) -> frozenset[str]:
    """The n-grams an entry holds in its answer or these phrasings (once per entry: every question reads it)."""
    return frozenset(g for text in (answer, *phrasings) for g in char_ngrams(text, ngram_range, analyzer))


def residual_probability(model: dict, grams: Sequence[str]) -> float:
    """P(an entry answers it) under a saved ``model`` (``fit_residual``'s), from a question's left-over n-grams."""
    idf, coef = model["idf"], model["coef"]
    counts = Counter(g for g in grams if g in idf)
    z = float(model["intercept"])
    if counts:
        weights = {g: (1.0 + math.log(n)) * idf[g] for g, n in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        z += sum(w * coef[g] for g, w in weights.items()) / norm
    return 1.0 / (1.0 + math.exp(-z))


def fit_residual(docs: Sequence[Sequence[str]], answerable: Sequence[bool], seed: int = 0,
                 wrong_entry_docs: Sequence[Sequence[str]] = (), made_from: Sequence[int] = ()
                 ) -> tuple[dict, np.ndarray]:
    """The model fitted on every question, and each question's probability under a model fitted without its fold.

    ``wrong_entry_docs`` are more rows without an answer: what an answerable
    question leaves over against an entry that does not answer it (the best
    ranked other one), so the model also learns that another entry's words
    left over mean the top entry is not the one asked about. ``made_from[j]``
    is the question row ``wrong_entry_docs[j]`` was made from; it shares that
    question's fold, so no question is scored by a model that saw its own words.
    """
    y = np.asarray(answerable, dtype=np.float64)
    if len(made_from) != len(wrong_entry_docs):
        raise ValueError(f"{len(wrong_entry_docs)} wrong-entry rows for {len(made_from)} sources")
    all_docs = [*docs, *wrong_entry_docs]
    all_y = np.r_[y, np.zeros(len(wrong_entry_docs))]
    model = _fit(all_docs, all_y)
    out_of_fold = np.empty(len(y))
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for kind in (0.0, 1.0):  # each kind dealt round-robin after a seeded shuffle, as the decision's CV deals them
        idx = np.flatnonzero(y == kind)
        fold[rng.permutation(idx)] = np.arange(idx.size) % FOLDS
    all_fold = np.r_[fold, fold[np.asarray(made_from, dtype=np.int64)]] if len(made_from) else fold
    for k in range(FOLDS):
        fit_idx, held = np.flatnonzero(all_fold != k), np.flatnonzero(fold == k)
        part = _fit([all_docs[i] for i in fit_idx], all_y[fit_idx])
        for i in held:
            out_of_fold[i] = residual_probability(part, docs[i])
    return model, out_of_fold


def _fit(docs: Sequence[Sequence[str]], y: np.ndarray) -> dict:
    df = Counter(g for d in docs for g in set(d))
    vocab = sorted(g for g, n in df.items() if n >= MIN_DOCS)
    if not vocab or y.all() or not y.any():
        p = float(np.clip(y.mean() if y.size else 0.5, 1e-3, 1 - 1e-3))
        return {"idf": {}, "coef": {}, "intercept": round(math.log(p / (1 - p)), 8)}
    column = {g: j for j, g in enumerate(vocab)}
    n = len(docs)
    idf = np.array([math.log((1 + n) / (1 + df[g])) + 1.0 for g in vocab])
    x = np.zeros((n, len(vocab)))
    for i, d in enumerate(docs):
        for g, c in Counter(g for g in d if g in column).items():
            x[i, column[g]] = (1.0 + math.log(c)) * idf[column[g]]
        norm = np.linalg.norm(x[i])
        if norm:
            x[i] /= norm
    z = np.c_[np.ones(n), x]
    w = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum())  # each kind half the loss
    penalty = np.r_[0.0, np.full(len(vocab), L2_PENALTY / n)]
    beta = newton_logistic(z, y, w, penalty, iterations=50, tol=1e-8, ridge=1e-9)
    return {"idf": {g: round(float(v), 6) for g, v in zip(vocab, idf, strict=True)},
            "coef": {g: round(float(v), 6) for g, v in zip(vocab, beta[1:], strict=True)},
            "intercept": round(float(beta[0]), 8)}
