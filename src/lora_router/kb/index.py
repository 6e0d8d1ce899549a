"""Character n-gram TF-IDF retrieval in numpy (no scikit-learn at deploy time).

With the default options it computes exactly what scikit-learn's
``TfidfVectorizer(analyzer=..., ngram_range=..., sublinear_tf=...,
preprocessor=normalize_text)`` computes (smooth idf, l2 norm), so cosine
scores match it (tests/test_kb.py checks to 1e-6). Two additions serve the
knowledge base:

* the ``char_run`` analyzer: n-grams inside runs of letters, digits and CJK
  characters only, so punctuation and spaces neither match nor join two words;
  ``char_run_words`` does the same for CJK but keeps a Latin word (``mysql``,
  ``pasta``) whole: its letters and letter pairs are shared by every English
  text, so under ``char_run`` any English question matched the entry with the
  most English in it;
* ``unknown_query_ngrams``: the n-grams of a query that no document has still
  count in the query's norm, so an off-topic question that shares only
  ``怎么`` with the knowledge base scores low instead of matching it fully.

A document is a bag of n-grams (``Counter``); a knowledge-base entry's bag is
the sum of its phrasings' bags and its answer's. ``scores_with`` scores the
entries as if one had lost a phrasing (training's leave-one-out), exactly as a
rebuilt index would; ``weights`` and ``cosine`` score a single phrasing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError

ANALYZERS = ("char", "char_wb", "char_run", "char_run_words")
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's, applied after preprocessing
_RUNS = re.compile(r"[^\W_]+")  # letters, digits, CJK: what is left between spaces and punctuation
# Inside a run: a stretch of Latin letters and digits (a word: mysql, b, 2024) or of anything else (CJK).
_LATIN_OR_NOT = re.compile(r"[a-z0-9]+|[^a-z0-9]+")


def normalize_text(text: str) -> str:
    """NFKC (full-width letters and punctuation to half-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def char_ngrams(text: str, ngram_range: tuple[int, int], analyzer: str = "char") -> list[str]:
    """The n-grams of ``text``: scikit-learn's ``char`` / ``char_wb``, ``char_run`` (inside word runs), or
    ``char_run_words`` (inside word runs, a Latin word whole)."""
    low, high = ngram_range
    if analyzer == "char_run_words":
        out = []
        for run in _RUNS.findall(normalize_text(text)):
            parts = _LATIN_OR_NOT.findall(run)
            for k, part in enumerate(parts):
                if part.isascii():
                    out.append(part)  # a word counts whole: its letters are shared by every English text
                    # and with the CJK character next to it (ods层, 用spark), as char_run's bigrams join them
                    if high >= 2 and k + 1 < len(parts):
                        out.append(part + parts[k + 1][0])
                    if high >= 2 and k > 0:
                        out.append(parts[k - 1][-1] + part)
                    continue
                for n in range(low, min(high, len(part)) + 1):
                    out.extend(part[i : i + n] for i in range(len(part) - n + 1))
        return out
    if analyzer == "char_run":
        out = []
        for run in _RUNS.findall(normalize_text(text)):
            for n in range(low, min(high, len(run)) + 1):
                out.extend(run[i : i + n] for i in range(len(run) - n + 1))
        return out
    text = _WHITE_SPACES.sub(" ", normalize_text(text))
    if analyzer == "char":
        out = list(text) if low == 1 else []
        for n in range(max(low, 2), min(high + 1, len(text) + 1)):
            out.extend(text[i : i + n] for i in range(len(text) - n + 1))
        return out
    if analyzer != "char_wb":
        raise ConfigError(f"unknown analyzer {analyzer!r}; valid: {', '.join(ANALYZERS)}")
    out = []
    for word in text.split():
        w = f" {word} "
        for n in range(low, high + 1):
            out.extend(w[i : i + n] for i in range(max(len(w) - n, 0) + 1))
            if len(w) <= n:  # a word shorter than n counts once
                break
    return out


class CharTfidfIndex:
    """Cosine similarity of a query to every indexed document, via an inverted index."""

    def __init__(self, texts: Sequence[str], *, analyzer: str = "char", ngram_range: tuple[int, int] = (1, 2),
                 sublinear_tf: bool = True, unknown_query_ngrams: bool = False):
        self.analyzer = analyzer
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.sublinear_tf = sublinear_tf
        self.unknown_query_ngrams = unknown_query_ngrams
        if analyzer not in ANALYZERS:
            raise ConfigError(f"unknown analyzer {analyzer!r}; valid: {', '.join(ANALYZERS)}")
        self._build([self.bag(t) for t in texts])

    @classmethod
    def from_bags(cls, bags: Sequence[Counter], **options) -> CharTfidfIndex:
        """An index whose documents are n-gram bags made with ``bag`` (e.g. sums of several texts' bags)."""
        index = cls([], **options)
        index._build(list(bags))
        return index

    def bag(self, text: str) -> Counter:
        """The n-gram counts of ``text`` under this index's analyzer."""
        return Counter(char_ngrams(text, self.ngram_range, self.analyzer))

    def _build(self, bags: list[Counter]) -> None:
        self.n_texts = n = len(bags)
        self.bags = [Counter({g: tf for g, tf in c.items() if tf > 0}) for c in bags]
        df: Counter = Counter()
        for c in self.bags:
            df.update(c.keys())
        self.vocabulary = {g: i for i, g in enumerate(sorted(df))}
        self.df = np.array([df[g] for g in sorted(df)], dtype=np.int64)
        self.idf = self._idf(self.df)
        self._unknown_idf = math.log(1 + n) + 1.0  # the idf of an n-gram no document has (df = 0)
        postings: list[list[tuple[int, float]]] = [[] for _ in self.vocabulary]
        for doc, c in enumerate(self.bags):
            for g, tf in c.items():
                postings[self.vocabulary[g]].append((doc, self._tf(tf)))
        self._indptr = np.zeros(len(postings) + 1, dtype=np.int64)
        self._indptr[1:] = np.cumsum([len(p) for p in postings])
        self._docs = np.array([d for p in postings for d, _ in p], dtype=np.int64)
        self._tfw = np.array([w for p in postings for _, w in p], dtype=np.float64)  # tf weight, before idf
        cols = np.repeat(np.arange(len(postings)), np.diff(self._indptr))
        self._norms = np.sqrt(np.bincount(self._docs, (self._tfw * self.idf[cols]) ** 2, minlength=n))
        self._data = self._tfw * self.idf[cols] / np.where(self._norms > 0, self._norms, 1.0)[self._docs]

    def _idf(self, df: np.ndarray) -> np.ndarray:
        return np.log((1 + self.n_texts) / (1 + df)) + 1.0

    def _tf(self, tf: float) -> float:
        return (1.0 + math.log(tf)) if self.sublinear_tf else float(tf)

    def weights(self, counts: Counter) -> dict[int, float]:
        """l2-normalised tf-idf weights of a bag's known n-grams (a document vector)."""
        return self._vector(counts, self.idf, unknown_ngrams=False)

    def query_vector(self, query: str, idf: np.ndarray | None = None) -> dict[int, float]:
        """The query's weights by vocabulary column; unknown n-grams only shrink them (``unknown_query_ngrams``)."""
        return self._vector(self.bag(query), self.idf if idf is None else idf, self.unknown_query_ngrams)

    def _vector(self, counts: Counter, idf: np.ndarray, unknown_ngrams: bool) -> dict[int, float]:
        vec, unknown = {}, 0.0
        for g, tf in counts.items():
            col = self.vocabulary.get(g)
            if col is not None and tf > 0 and np.isfinite(idf[col]):
                vec[col] = self._tf(tf) * idf[col]
            elif unknown_ngrams:
                unknown += (self._tf(tf) * self._unknown_idf) ** 2
        norm = math.sqrt(sum(w * w for w in vec.values()) + unknown)
        return {col: w / norm for col, w in vec.items()} if norm > 0 else {}

    def scores(self, query: str | dict[int, float]) -> np.ndarray:
        """Cosine similarity of ``query`` (a text or its ``query_vector``) to each document (0 where none shared)."""
        vec = self.query_vector(query) if isinstance(query, str) else query
        out = np.zeros(self.n_texts, dtype=np.float64)
        for col, w in vec.items():
            s = slice(self._indptr[col], self._indptr[col + 1])
            out[self._docs[s]] += w * self._data[s]
        return out

    def scores_with(self, query: str, changed: dict[int, Counter]) -> np.ndarray:
        """``scores(query)`` as if documents ``changed`` held other bags, idf included.

        Exactly what an index rebuilt with those bags would give (tests check it),
        without rebuilding: only the columns whose document frequency changes and
        the documents that hold them are recomputed. Bags may only lose n-grams
        (a phrasing left out), never gain unknown ones.
        """
        changed = {d: Counter({g: tf for g, tf in b.items() if tf > 0}) for d, b in changed.items()}
        df = self.df.copy()
        for d, bag in changed.items():
            for g in self.bags[d].keys() - bag.keys():
                df[self.vocabulary[g]] -= 1
            if bag.keys() - self.bags[d].keys():
                raise ValueError("scores_with: a changed document may only lose n-grams")
        moved = np.flatnonzero(df != self.df)
        idf = self.idf.copy()
        idf[moved] = self._idf(df[moved])
        idf[moved[df[moved] == 0]] = np.inf  # in no document any more: unknown to the query
        norms2 = self._norms**2
        for col in moved:  # every document holding a column whose idf moved gets a new norm
            s = slice(self._indptr[col], self._indptr[col + 1])
            new = 0.0 if df[col] == 0 else idf[col] ** 2
            np.add.at(norms2, self._docs[s], self._tfw[s] ** 2 * (new - self.idf[col] ** 2))
        for d, bag in changed.items():
            norms2[d] = sum((self._tf(tf) * idf[self.vocabulary[g]]) ** 2 for g, tf in bag.items())
        norms = np.sqrt(np.maximum(norms2, 0.0))
        query_vec = self.query_vector(query, idf)
        out = np.zeros(self.n_texts, dtype=np.float64)
        for col, w in query_vec.items():
            s = slice(self._indptr[col], self._indptr[col + 1])
            out[self._docs[s]] += w * self._tfw[s] * idf[col]
        for d, bag in changed.items():
            out[d] = sum(w * self._tf(bag[g]) * idf[col] for g, col in
                         ((g, self.vocabulary[g]) for g in bag) if (w := query_vec.get(col)) is not None)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    @staticmethod
    def cosine(query: dict[int, float], doc: dict[int, float]) -> float:
        """Cosine of a ``query_vector`` to a document vector (``weights``)."""
        if len(doc) < len(query):
            query, doc = doc, query
        return float(sum(w * doc.get(col, 0.0) for col, w in query.items()))


def sum_bags(bags: Iterable[Counter]) -> Counter:
    """One bag holding every n-gram of ``bags``."""
    total: Counter = Counter()
    for b in bags:
        total.update(b)
    return total
