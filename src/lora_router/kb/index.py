"""Character n-gram TF-IDF retrieval in numpy (no scikit-learn at deploy time).

Computes exactly what scikit-learn's ``TfidfVectorizer(analyzer=..., ngram_range=...,
sublinear_tf=..., preprocessor=normalize_text)`` computes (smooth idf, l2 norm),
so cosine scores match it (tests/test_kb.py checks to 1e-6).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

ANALYZERS = ("char", "char_wb")
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's, applied after preprocessing


def normalize_text(text: str) -> str:
    """NFKC (full-width letters and punctuation to half-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def char_ngrams(text: str, ngram_range: tuple[int, int], analyzer: str = "char") -> list[str]:
    """The n-grams scikit-learn's ``char`` / ``char_wb`` analyzers give for ``text``."""
    low, high = ngram_range
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
            offset = 0
            out.append(w[offset : offset + n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset : offset + n])
            if offset == 0:  # a word shorter than n counts once
                break
    return out


class CharTfidfIndex:
    """Cosine similarity of a query to every indexed text, via an inverted index."""

    def __init__(self, texts: Sequence[str], *, analyzer: str = "char", ngram_range: tuple[int, int] = (1, 2),
                 sublinear_tf: bool = True):
        self.analyzer = analyzer
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.sublinear_tf = sublinear_tf
        self.n_texts = len(texts)
        counts = [Counter(char_ngrams(t, self.ngram_range, analyzer)) for t in texts]
        df: Counter = Counter()
        for c in counts:
            df.update(c.keys())
        self.vocabulary = {g: i for i, g in enumerate(sorted(df))}
        n = self.n_texts
        self.idf = np.array([math.log((1 + n) / (1 + df[g])) + 1.0 for g in sorted(df)], dtype=np.float64)
        postings: list[list[tuple[int, float]]] = [[] for _ in self.vocabulary]
        for doc, c in enumerate(counts):
            vec = self._weights(c)
            for col, w in vec.items():
                postings[col].append((doc, w))
        self._indptr = np.zeros(len(postings) + 1, dtype=np.int64)
        self._indptr[1:] = np.cumsum([len(p) for p in postings])
        self._docs = np.array([d for p in postings for d, _ in p], dtype=np.int64)
        self._data = np.array([w for p in postings for _, w in p], dtype=np.float64)

    def _weights(self, counts: Counter) -> dict[int, float]:
        """l2-normalised tf-idf weights of known n-grams."""
        vec = {}
        for g, tf in counts.items():
            col = self.vocabulary.get(g)
            if col is not None:
                vec[col] = ((1.0 + math.log(tf)) if self.sublinear_tf else float(tf)) * self.idf[col]
        norm = math.sqrt(sum(w * w for w in vec.values()))
        return {col: w / norm for col, w in vec.items()} if norm > 0 else {}

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of ``query`` to each indexed text (0 where nothing is shared)."""
        out = np.zeros(self.n_texts, dtype=np.float64)
        vec = self._weights(Counter(char_ngrams(query, self.ngram_range, self.analyzer)))
        for col, w in vec.items():
            s = slice(self._indptr[col], self._indptr[col + 1])
            out[self._docs[s]] += w * self._data[s]
        return out
