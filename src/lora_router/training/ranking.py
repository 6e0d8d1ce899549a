"""``RankingTask``: question_answer's training pairs and evaluation.

The adapter is a cross-encoder over (user question, knowledge-base phrasing).
Positives pair a question with the other phrasings of its entry (and with
itself, as an in-KB question is asked verbatim); hard negatives are the
phrasings of other entries that TF-IDF retrieves first; a question with no
answer makes every retrieved phrasing a negative. Evaluation runs the same
``Answerer`` logic as inference.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from ..config import TaskSpec
from ..data import Record
from ..encoding import TextEncoder
from ..errors import DataError
from ..kb import Answerer, AnswerSettings, Candidate
from .examples import Example
from .metrics import ranking_metrics

logger = logging.getLogger(__name__)


class RankingTask:
    """Pairs to train a pair-ranking adapter on, and its ranking metrics."""

    def __init__(self, spec: TaskSpec, kb_path: Path, train_records: Sequence[Record],
                 test_records: Sequence[Record], encoder: TextEncoder, seed: int,
                 settings: AnswerSettings | None = None, hard_negatives: int = 4, random_negatives: int = 1):
        self.spec = spec
        self.encoder = encoder
        self.seed = seed
        self.hard_negatives = hard_negatives
        self.random_negatives = random_negatives
        self.answerer = Answerer(kb_path, settings)
        kb = self.answerer.knowledge_base
        self.train = list(train_records)
        self.test = list(test_records)
        self._gold_train = self._gold_ids(self.train, "training")
        self._gold_test = self._gold_ids(self.test, "test")
        self._eval: tuple[list[list[Candidate]], list[Example]] | None = None
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
    def _eval_inputs(self) -> tuple[list[list[Candidate]], list[Example]]:
        """Candidates and encoded pairs of the test split (retrieval does not change while training)."""
        if self._eval is None:
            candidates = [self.answerer.retrieve(r.input) for r in self.test]
            pairs = [p for r, c in zip(self.test, candidates, strict=True) for p in Answerer.pairs(r.input, c)]
            encoded = (self.encoder.encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False)
                       if pairs else [])
            self._eval = (candidates, [Example(e, 0.0) for e in encoded])
        return self._eval

    def predict(self, model, head) -> list[dict]:
        """The answerer's result for every test record, with ``model`` as the cross-encoder."""
        from .loop import predict_logits

        candidates, examples = self._eval_inputs()
        logits = predict_logits(model, head, examples, self.encoder) if examples else []
        results, pos = [], 0
        for cands in candidates:
            n = sum(len(c.phrasings) for c in cands)
            results.append(self.answerer.decide(cands, [float(x[0]) for x in logits[pos : pos + n]]))
            pos += n
        return results

    def evaluate(self, model, head) -> dict:
        """Top-1, MRR, no-answer precision/recall and answer accuracy on the test split."""
        results = self.predict(model, head)
        return score_results(results, self._gold_test, self.answerer.settings.threshold)

    def manifest_info(self) -> dict:
        """The knowledge base and answer settings, for ``Answerer.from_manifest``."""
        return self.answerer.manifest_info()


def score_results(results: Sequence[dict], gold: Sequence[str | None], threshold: float) -> dict:
    """Ranking metrics of answerer results against gold entry ids (None = no answer)."""
    ranks, top1 = [], []
    for res, g in zip(results, gold, strict=True):
        ids = [c["id"] for c in res["candidates"]]
        ranks.append(ids.index(g) + 1 if g in ids else None)
        top1.append(bool(ids) and ids[0] == g)
    metrics = ranking_metrics(ranks, [g is None for g in gold], [r["answer"] == "" for r in results], top1)
    metrics["threshold"] = threshold
    return metrics
