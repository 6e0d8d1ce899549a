"""``Answerer``: TF-IDF candidates, cross-encoder re-ranking, the no-answer decision.

The decision is a threshold on the top confidence, or, for adapters trained
since it exists, a logistic regression over several features of the ranking
(``kb/decision.py``) and, since issue 20, the question's likeness to training
questions without an answer (``kb/examples.py``); an adapter saved before
keeps the decision it was saved with.

The same code answers in the PyTorch router, the ONNX runtime and evaluation
during training; only ``score_pairs`` (the cross-encoder) differs. The index
is rebuilt when the knowledge-base file changes, so a new entry is answerable
at once without retraining.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.results import AnswerResult
from ..errors import ConfigError, DataError
from .decision import answer_probability, decision_features
from .examples import FEATURE as EXAMPLE_FEATURE
from .examples import NoAnswerExamples, examples_for
from .file import Entry, KnowledgeBase, file_sha256, read_knowledge_base
from .index import CharTfidfIndex, sum_bags
from .residual import FEATURE as RESIDUAL_FEATURE
from .residual import residual_grams, residual_probability
from .settings import LEGACY_DEFAULTS, AnswerSettings

RACY_NS = 2_000_000_000  # a file changed this close to when it was read is checked by content, not by stat

logger = logging.getLogger(__name__)

ScorePairs = Callable[[list[tuple[str, str]]], np.ndarray]


@dataclass
class Candidate:
    """A retrieved entry, the phrasings to re-rank it by, and its TF-IDF score.

    ``coverage`` is the share of the question's distinct n-grams the entry
    holds (in its answer or a phrasing not left out); ``unknown`` the share no phrasing
    or answer of the knowledge base holds (the same for every candidate of a question);
    ``question`` the question itself, which the decision compares with questions
    known to have no answer (``kb/examples.py``); ``left_out`` the phrasings retrieval
    left out (``retrieve``'s ``exclude``), which the decision leaves out too.
    """

    entry: Entry
    phrasings: list[str]
    retrieval: float
    coverage: float = 0.0
    unknown: float = 0.0
    question: str = ""
    left_out: frozenset[str] = frozenset()


class _Index:
    """One knowledge base and its TF-IDF index.

    With ``index_answers`` each entry is one document: its phrasings and its
    answer text together, so a question worded like the answer finds the entry
    as well as one worded like a phrasing. Without it (adapters trained before
    that setting) each phrasing is a document and an entry scores its best one.
    """

    def __init__(self, kb: KnowledgeBase, settings: AnswerSettings):
        self.kb = kb
        self.by_entry = settings.index_answers
        options = {"analyzer": settings.analyzer, "ngram_range": settings.ngram_range,
                   "sublinear_tf": settings.sublinear_tf, "unknown_query_ngrams": settings.unknown_query_ngrams}
        bag = CharTfidfIndex([], **options).bag
        self.bag = bag
        self.phrasing_bags = [[bag(q) for q in e.questions] for e in kb.entries]
        self.answer_bags = [bag(e.answer) for e in kb.entries]
        # How many phrasings and answers hold each n-gram: what a question shares with the knowledge base.
        self.text_df: Counter = Counter(g for b in [*(b for bs in self.phrasing_bags for b in bs), *self.answer_bags]
                                        for g in b)
        if self.by_entry:
            docs = [sum_bags([*qs, a]) for qs, a in zip(self.phrasing_bags, self.answer_bags, strict=True)]
            self.owner = np.arange(len(kb.entries), dtype=np.int64)
        else:
            docs = [b for qs in self.phrasing_bags for b in qs]
            self.owner = np.array([i for i, e in enumerate(kb.entries) for _ in e.questions], dtype=np.int64)
        self.phrasings = [q for e in kb.entries for q in e.questions]
        self.tfidf = CharTfidfIndex.from_bags(docs, **options)
        # Which phrasings of a retrieved entry the cross-encoder sees: those closest to the question.
        self.phrasing_vectors = [[self.tfidf.weights(b) for b in bags] for bags in self.phrasing_bags]

    def question_grams(self, question: str, exclude: Collection[str]) -> tuple[set[str], float]:
        """The question's distinct n-grams and the share of them no phrasing or answer holds.

        Phrasings in ``exclude`` count as absent, as for retrieval.
        """
        grams = set(self.bag(question))
        if not grams:
            return grams, 0.0
        left = Counter()
        for e, entry in enumerate(self.kb.entries):
            for q, b in zip(entry.questions, self.phrasing_bags[e], strict=True):
                if q in exclude:
                    left.update(g for g in b if g in grams)
        unknown = sum(self.text_df.get(g, 0) - left[g] <= 0 for g in grams)
        return grams, unknown / len(grams)

    def coverage(self, grams: set[str], e: int, exclude: Collection[str]) -> float:
        """The share of ``grams`` that entry ``e`` holds in its answer or a phrasing not in ``exclude``."""
        if not grams:
            return 0.0
        held = set(self.answer_bags[e])
        for q, b in zip(self.kb.entries[e].questions, self.phrasing_bags[e], strict=True):
            if q not in exclude:
                held.update(b)
        return len(grams & held) / len(grams)

    def entry_scores(self, question: str, exclude: Collection[str]) -> tuple[np.ndarray, dict[int, float]]:
        """The retrieval score of every document (entry, or phrasing without ``index_answers``) and the query vector."""
        query = self.tfidf.query_vector(question)
        scores = self.tfidf.scores(query)
        if not exclude:
            return scores, query
        if not self.by_entry:
            for j, q in enumerate(self.phrasings):
                if q in exclude:
                    scores[j] = -1.0
            return scores, query
        # Score as an index built without the left-out phrasings would (their n-grams leave the idf too).
        changed = {}
        for e, entry in enumerate(self.kb.entries):
            if any(q in exclude for q in entry.questions):
                kept = [b for q, b in zip(entry.questions, self.phrasing_bags[e], strict=True) if q not in exclude]
                changed[e] = sum_bags([*kept, self.answer_bags[e]])
        return (self.tfidf.scores_with(question, changed) if changed else scores), query


class Answerer:
    """Answer questions from a knowledge-base file.

    >>> answerer = Answerer("knowledge_base.jsonl", threshold=0.5)
    >>> answerer.answer("ODS层和DWD层有什么区别？", router_score_pairs)["answer"]
    """

    def __init__(self, kb_path: str | Path, settings: AnswerSettings | None = None, **overrides):
        settings = settings or AnswerSettings()
        if overrides:
            settings = AnswerSettings.from_dict({**settings.to_dict(), **overrides})
        self.settings = settings
        self.path = Path(kb_path).expanduser()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._read_at_ns = 0
        self._sha256: str | None = None
        self._index: _Index | None = None
        self._refresh()

    # ------------------------------------------------------------ construction
    @classmethod
    def from_saved(cls, saved: dict | None, task_dir: Path, knowledge_base: str | Path | None = None) -> Answerer:
        """The answerer a trained adapter was evaluated with, from its task.json's ``knowledge_base``.

        ``knowledge_base`` overrides the file it records.
        """
        info = dict(saved or {})
        known = {f.name for f in dataclasses.fields(AnswerSettings)}
        settings = AnswerSettings.from_dict({**LEGACY_DEFAULTS, **{k: v for k, v in info.items() if k in known}})
        if knowledge_base is not None:
            path = Path(knowledge_base).expanduser()
            if not path.is_file():
                raise ConfigError(f"knowledge base {path} does not exist; give the path of a knowledge-base "
                                  "JSONL file (check it with: lora-router kb check FILE)")
            return cls(path, settings)
        if "path" not in info:
            raise ConfigError(f"the adapter in {task_dir} records no knowledge base; retrain it "
                              "(lora-router train --task question_answer) or pass --kb FILE")
        path = Path(info["path"]).expanduser()
        if not path.is_absolute():
            path = Path(task_dir) / path
        if path.is_file():
            return cls(path, settings)
        from ..data.bundled import bundled_knowledge_base

        bundled = bundled_knowledge_base()
        if info.get("sha256") and bundled.is_file() and file_sha256(bundled) == info["sha256"]:
            logger.info("knowledge base %s is gone; using the identical bundled one", path)
            return cls(bundled, settings)
        raise ConfigError(
            f"the knowledge base this adapter was trained with ({path}) no longer exists and the bundled "
            f"one differs from it; pass the knowledge base to answer from with --kb FILE "
            f"(or Router(..., knowledge_base=FILE))"
        )

    # ------------------------------------------------------------ the file
    def _refresh(self) -> _Index:
        """The index of the file as it is now; rebuilt only when the file changed (stat)."""
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError as exc:
                if self._index is None:
                    raise ConfigError(f"knowledge base {self.path} cannot be read ({exc.strerror}); "
                                      "give an existing knowledge-base JSONL file") from None
                warnings.warn(f"knowledge base {self.path} is gone; answering from the last version read",
                              stacklevel=3)
                return self._index
            if stamp == self._stamp and self._index is not None and not self._racy(st):
                return self._index
            self._stamp, self._read_at_ns = stamp, time.time_ns()
            try:
                digest = file_sha256(self.path)
                if digest == self._sha256 and self._index is not None:
                    return self._index
                kb = read_knowledge_base(self.path)
                self._sha256 = digest
            except DataError as exc:
                if self._index is None:
                    raise
                warnings.warn(f"knowledge base changed but is not valid, answering from the last valid "
                              f"version: {exc}", stacklevel=3)
                return self._index
            self._index = _Index(kb, self.settings)
            logger.info("knowledge base %s: %d entries indexed", self.path, len(kb.entries))
            return self._index

    def _racy(self, st: os.stat_result) -> bool:
        """Whether the file may have changed without its stamp changing: it was read within a timestamp tick
        (taken as 2 s, coarse filesystems included) of its last change, so a same-size edit in that tick would
        keep the stamp. Such a file is checked by content, as git does for "racily clean" files."""
        return self._read_at_ns - st.st_mtime_ns < RACY_NS

    @property
    def knowledge_base(self) -> KnowledgeBase:
        """The knowledge base as the file holds it now."""
        return self._refresh().kb

    # ------------------------------------------------------------ answering
    def retrieve(self, question: str, exclude: Collection[str] = ()) -> list[Candidate]:
        """The ``top_k`` entries by TF-IDF, best first, each with the phrasings the cross-encoder scores.

        ``exclude`` are phrasings to leave out, as if the knowledge base did not
        have them (training leaves out the question itself).
        """
        index = self._refresh()
        scores, query = index.entry_scores(question, exclude)
        grams, unknown = index.question_grams(question, exclude)
        if not index.by_entry:
            out = self._retrieve_phrasings(index, scores)
        else:
            out = self._retrieve_entries(index, scores, query, exclude)
        position = {id(e): i for i, e in enumerate(index.kb.entries)}
        for c in out:
            c.coverage, c.unknown = index.coverage(grams, position[id(c.entry)], exclude), unknown
            c.question, c.left_out = question, frozenset(exclude)
        return out

    def _retrieve_entries(self, index: _Index, scores: np.ndarray, query: dict[int, float],
                          exclude: Collection[str]) -> list[Candidate]:
        out = []
        for e in np.argsort(-scores, kind="stable"):
            entry = index.kb.entries[int(e)]
            kept = [(q, v) for q, v in zip(entry.questions, index.phrasing_vectors[int(e)], strict=True)
                    if q not in exclude]
            if not kept:  # nothing for the cross-encoder to compare the question with
                continue
            best = sorted(range(len(kept)), key=lambda i: -index.tfidf.cosine(query, kept[i][1]))
            phrasings = [kept[i][0] for i in best[: self.settings.pairs_per_entry]]
            out.append(Candidate(entry, phrasings, float(max(scores[e], 0.0))))
            if len(out) == self.settings.top_k:
                break
        return out

    def _retrieve_phrasings(self, index: _Index, scores: np.ndarray) -> list[Candidate]:
        """Retrieval by best phrasing (``index_answers`` off), as adapters trained before it was added had it."""
        order = np.argsort(-scores, kind="stable")
        picked: dict[int, list[int]] = {}
        for j in order:
            if scores[j] < 0:
                break
            e = int(index.owner[j])
            if e not in picked and len(picked) == self.settings.top_k:
                continue
            if len(picked.setdefault(e, [])) < self.settings.pairs_per_entry:
                picked[e].append(int(j))
        return [Candidate(index.kb.entries[e], [index.phrasings[j] for j in js], float(max(scores[js[0]], 0.0)))
                for e, js in picked.items()]

    @staticmethod
    def pairs(question: str, candidates: Sequence[Candidate]) -> list[tuple[str, str]]:
        """The (user question, knowledge-base phrasing) pairs the cross-encoder scores."""
        return [(question, p) for c in candidates for p in c.phrasings]

    def confidence(self, relevance: float, retrieval: float) -> float:
        """Weighted geometric mean: an answer needs both the cross-encoder and retrieval to agree."""
        return confidence(relevance, retrieval, self.settings.relevance_weight)

    def features(self, candidates: Sequence[Candidate], logits: np.ndarray) -> dict[str, float]:
        """The no-answer decision's features (``kb/decision.py``) of one question's ranking."""
        return ranking_features(rank(candidates, logits, self.settings.relevance_weight), candidates,
                                decision_examples(self.settings), residual=decision_residual(self.settings))

    def decide(self, candidates: Sequence[Candidate], logits: np.ndarray) -> AnswerResult:
        """The result dict from the cross-encoder logits of ``pairs(question, candidates)`` (``decide``)."""
        return decide(candidates, logits, self.settings)

    def answer(self, question: str, score_pairs: ScorePairs) -> AnswerResult:
        """``{"answer", "kb_id", "confidence", "candidates"}``; ``answer`` is "" below the threshold."""
        candidates = self.retrieve(question)
        pairs = self.pairs(question, candidates)
        logits = score_pairs(pairs) if pairs else np.zeros((0,))
        return self.decide(candidates, logits)

    def manifest_info(self) -> dict:
        """What ``from_saved`` needs: the file, its hash and size, and the settings."""
        kb = self.knowledge_base
        return {"path": str(self.path.resolve()), "sha256": kb.sha256, "n_entries": len(kb.entries),
                **self.settings.to_dict()}


def confidence(relevance: float, retrieval: float, relevance_weight: float) -> float:
    """Weighted geometric mean: an answer needs both the cross-encoder and retrieval to agree."""
    return float(relevance ** relevance_weight * max(retrieval, 0.0) ** (1.0 - relevance_weight))


def rank(candidates: Sequence[Candidate], logits: np.ndarray, relevance_weight: float) -> list[dict]:
    """Candidates by confidence, best first: ``id``, ``question`` (best phrasing), ``score`` and the parts."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    ranked, pos = [], 0
    for c in candidates:
        own = logits[pos : pos + len(c.phrasings)]
        pos += len(c.phrasings)
        best = int(np.argmax(own))
        relevance = 1.0 / (1.0 + math.exp(-float(own[best])))
        exact = confidence(relevance, c.retrieval, relevance_weight)
        # The decision reads the unrounded confidence: a rounding step would move its probability by more.
        ranked.append({"id": c.entry.id, "question": c.phrasings[best], "score": round(exact, 6), "exact": exact,
                       "relevance": relevance, "retrieval": c.retrieval, "candidate": c})
    ranked.sort(key=lambda r: -r["score"])
    return ranked


def ranking_features(ranked: list[dict], candidates: Sequence[Candidate], examples: NoAnswerExamples | None = None,
                     exclude: Collection[str] = (), residual: tuple[dict, AnswerSettings] | None = None
                     ) -> dict[str, float]:
    """``decision_features`` of a ``rank`` result, ``no_answer_similarity`` to ``examples`` when given, and
    ``residual_answerable`` under ``residual`` (a saved residual model and the settings' analyzer) when given.

    An example that a retrieved entry holds as a phrasing, or that is in
    ``exclude`` (fitting leaves the question itself out), is not compared with.
    """
    top = ranked[0]["candidate"] if ranked else None
    features = decision_features(ranked, top.coverage if top else 0.0, candidates[0].unknown if candidates else 0.0)
    if examples is not None:
        answered_now = {p for c in candidates for p in c.entry.questions}
        question = candidates[0].question if candidates else ""
        features[EXAMPLE_FEATURE] = examples.similarity(question, answered_now | set(exclude))
    if residual is not None:
        model, settings = residual
        features[RESIDUAL_FEATURE] = residual_probability(model, left_over(ranked, candidates, settings, exclude))
    return features


def left_over(ranked: list[dict], candidates: Sequence[Candidate], settings: AnswerSettings,
              exclude: Collection[str] = ()) -> list[str]:
    """The question's n-grams that the top-ranked entry holds nowhere (``kb/residual.py``).

    The entry's phrasings that retrieval left out (a training question's own) count as absent, as in ``exclude``.
    """
    question = candidates[0].question if candidates else ""
    top = ranked[0]["candidate"] if ranked else None
    left_out = set(exclude) | (top.left_out if top is not None else set())
    return residual_grams(question, top.entry if top is not None else None, settings.analyzer,
                          tuple(settings.ngram_range), left_out)


def decision_examples(settings: AnswerSettings) -> NoAnswerExamples | None:
    """The examples ``settings.decision`` compares questions with; None for a decision fitted without them."""
    decision = settings.decision
    if not decision or EXAMPLE_FEATURE not in decision["features"]:
        return None
    return examples_for(decision["no_answer_examples"], settings)


def decision_residual(settings: AnswerSettings) -> tuple[dict, AnswerSettings] | None:
    """The residual model ``settings.decision`` reads, with the settings; None for a decision fitted without it."""
    decision = settings.decision
    if not decision or RESIDUAL_FEATURE not in decision["features"]:
        return None
    return decision["residual_model"], settings


def decide(candidates: Sequence[Candidate], logits: np.ndarray, settings: AnswerSettings) -> AnswerResult:
    """The answer, or none, from the cross-encoder logits of ``Answerer.pairs(question, candidates)``.

    With a fitted ``settings.decision`` the confidence is its probability that
    an entry answers, and the answer is given from its cut-off; without one
    (adapters saved before it) the confidence is the top candidate's, against ``settings.threshold``.
    """
    ranked = rank(candidates, logits, settings.relevance_weight)
    candidates_out = [{k: r[k] for k in ("id", "question", "score")} for r in ranked]
    if not ranked:
        return AnswerResult(answer="", kb_id=None, confidence=0.0, candidates=candidates_out)
    top = ranked[0]
    if settings.decision:
        features = ranking_features(ranked, candidates, decision_examples(settings),
                                    residual=decision_residual(settings))
        conf = round(answer_probability(settings.decision, features), 6)
        answered = conf >= settings.decision["cutoff"]
    else:
        conf = top["score"]
        answered = conf >= settings.threshold
    entry = top["candidate"].entry
    return AnswerResult(answer=entry.answer if answered else "", kb_id=top["id"] if answered else None,
                        confidence=conf, candidates=candidates_out)
