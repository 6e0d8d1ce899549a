"""Two routers on the same questions: every metric side by side, with evidence that a difference is real.

``lora-router eval --compare OLD NEW`` (two hubs, two versions of a hub, or
two exports). Each router answers the same questions; per question we keep
what it said and whether that was right. From these:

* every metric of the kind, OLD beside NEW, their difference and a paired
  bootstrap interval for it (significance.paired_bootstrap, the same
  resampled questions for both routers and for every metric);
* McNemar's test on the headline, a per-question accuracy (classification:
  accuracy; extraction: whole-record match; ranking: answer accuracy, the
  right entry or rightly none; chain: end to end), which decides the verdict:
  ``worse`` when NEW loses significantly (p < alpha), ``better`` when it wins;
* the questions that went right -> wrong and wrong -> right, to read.

Backend-neutral and torch-free: it needs only what ``evaluate`` needs of a predictor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from ..data import Record
from ..encoding import char_spans
from ..errors import LoraRouterError
from .chain import ChainCase, chain_rows
from .significance import ALPHA, RESAMPLES, mcnemar, paired_bootstrap
from .tasks import task_logits

NO_ANSWER = "(no answer)"
WORSE, BETTER, SAME = "worse", "better", "no significant difference"
Columns = dict[str, np.ndarray]
Metric = Callable[[Columns, np.ndarray], float]


def compare_task(old, new, task: str, records: Sequence[Record], *, alpha: float = ALPHA,
                 resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Compare two predictors on ``task`` over ``records`` (instruction format, gold outputs)."""
    spec = old.specs[task]
    if new.specs[task].kind != spec.kind or tuple(new.specs[task].labels) != tuple(spec.labels):
        raise LoraRouterError(f"the two {task} adapters are not comparable: OLD is {spec.kind} with labels "
                              f"{list(spec.labels)}, NEW is {new.specs[task].kind} with {list(new.specs[task].labels)}")
    answers = _ANSWERS[spec.kind]
    sides = [answers(router, task, records) for router in (old, new)]
    questions = [{"line": r.line, "question": r.input} for r in records]
    report = _compare(spec.kind, sides, questions, alpha=alpha, resamples=resamples, seed=seed)
    return {"task": task, **report}


def compare_chain(old, new, cases: Sequence[ChainCase], *, alpha: float = ALPHA, resamples: int = RESAMPLES,
                  seed: int = 0) -> dict:
    """Compare two predictors' whole chains on chain test cases (evaluation/chain.py's format)."""
    sides = [_chain_answers(chain_rows(router, cases)) for router in (old, new)]
    questions = [{"line": c.line, "question": c.question} for c in cases]
    return {"task": "chain", **_compare("chain", sides, questions, alpha=alpha, resamples=resamples, seed=seed)}


def _compare(kind: str, sides: list[tuple[Columns, list, list]], questions: list[dict], *, alpha: float,
             resamples: int, seed: int) -> dict:
    (old_cols, old_said, gold), (new_cols, new_said, _) = sides
    n = len(questions)
    if not n:
        raise LoraRouterError("no questions to compare on")
    figures = []
    for key, name, metric in METRICS[kind]:
        interval = paired_bootstrap(lambda idx, m=metric: (m(old_cols, idx), m(new_cols, idx)), n,
                                    resamples=resamples, confidence=1 - alpha, seed=seed)
        every = np.arange(n)
        figures.append({"metric": key, "name": name, "old": _round(metric(old_cols, every)),
                        "new": _round(metric(new_cols, every)), "difference": _round(interval.difference),
                        "ci_low": _round(interval.low), "ci_high": _round(interval.high),
                        "interval_excludes_zero": interval.excludes_zero()})
    old_right, new_right = old_cols["right"], new_cols["right"]
    test = mcnemar(old_right, new_right)
    significant = test.p_value < alpha and test.right_to_wrong != test.wrong_to_right
    verdict = SAME if not significant else (WORSE if test.right_to_wrong > test.wrong_to_right else BETTER)

    def flips(before: bool) -> list[dict]:
        return [{**q, "gold": gold[i], "old": old_said[i], "new": new_said[i]}
                for i, q in enumerate(questions) if old_right[i] == before and new_right[i] != before]

    return {"kind": kind, "n": n, "headline": METRICS[kind][0][0], "alpha": alpha, "confidence": 1 - alpha,
            "resamples": resamples, "metrics": figures, "mcnemar": test.to_dict(), "verdict": verdict,
            "right_to_wrong": flips(True), "wrong_to_right": flips(False)}


def _round(x: float) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


# What each router said per question, as columns of numbers (for the metrics) and as text (for the flips).

def _classification(router, task: str, records: Sequence[Record]) -> tuple[Columns, list, list]:
    labels = list(router.specs[task].labels)
    pred = task_logits(router, task, [r.input for r in records]).argmax(-1)
    gold = np.array([labels.index(r.output) for r in records])
    return ({"right": pred == gold, "pred": pred, "gold": gold, "n_labels": np.array(len(labels))},
            [labels[p] for p in pred], [r.output for r in records])


def _extraction(router, task: str, records: Sequence[Record]) -> tuple[Columns, list, list]:
    results = []
    for i in range(0, len(records), 32):
        results += router.predict_batch(task, [r.input for r in records[i : i + 32]])
    tp, n_pred, n_gold, said = [], [], [], []
    for r, res in zip(records, results, strict=True):
        gold, pred = set(char_spans(r.input, r.output)), {(s["start"], s["end"]) for s in res["spans"]}
        tp.append(len(gold & pred))
        n_pred.append(len(pred))
        n_gold.append(len(gold))
        said.append([s["text"] for s in res["spans"]])
    tp_, n_pred_, n_gold_ = np.array(tp), np.array(n_pred), np.array(n_gold)
    return ({"right": (tp_ == n_pred_) & (tp_ == n_gold_), "tp": tp_, "n_pred": n_pred_, "n_gold": n_gold_},
            said, [list(r.output) for r in records])


def _ranking(router, task: str, records: Sequence[Record]) -> tuple[Columns, list, list]:
    by_answer = router.answerer(task).knowledge_base.by_answer()
    gold = [by_answer[r.output].id if r.output in by_answer else None for r in records]
    results = router.predict_batch(task, [r.input for r in records])
    rr, top1, declined, right, said = [], [], [], [], []
    for g, res in zip(gold, results, strict=True):
        ids = [c["id"] for c in res["candidates"]]
        rr.append(1.0 / (ids.index(g) + 1) if g in ids else 0.0)
        top1.append(bool(ids) and ids[0] == g)
        declined.append(res["answer"] == "")
        right.append(declined[-1] if g is None else (not declined[-1] and top1[-1]))
        said.append(NO_ANSWER if declined[-1] else (ids[0] if ids else NO_ANSWER))
    return ({"right": np.array(right), "rr": np.array(rr), "top1": np.array(top1), "declined": np.array(declined),
             "unanswerable": np.array([g is None for g in gold])}, said, [g or NO_ANSWER for g in gold])


def _chain_answers(rows: list[dict]) -> tuple[Columns, list, list]:
    def applicable(key: str) -> np.ndarray:
        return np.array([float(r[key]) if key in r else np.nan for r in rows])

    said = [r["route"] + (f" ({r['reason']} at {r['wrong_at']})" if "wrong_at" in r else "") for r in rows]
    return ({"right": np.array(["wrong_at" not in r for r in rows]),
             "route_right": np.array([r["route"] == r["gold_route"] for r in rows]),
             "files_right": applicable("file_names_right"), "answer_right": applicable("answer_right")},
            said, [r["gold_route"] for r in rows])


_ANSWERS = {SEQUENCE_CLASSIFICATION: _classification, SPAN_EXTRACTION: _extraction, PAIR_RANKING: _ranking}


# The metrics of each kind, computed on any resample of the questions; the first is the headline.

def _mean(key: str) -> Metric:
    return lambda c, idx: float(np.mean(c[key][idx]))


def _mean_where(key: str, where: Callable[[Columns], np.ndarray]) -> Metric:
    def metric(c: Columns, idx: np.ndarray) -> float:
        chosen = idx[where(c)[idx]]
        return float(np.mean(c[key][chosen])) if chosen.size else float("nan")
    return metric


def _nanmean(key: str) -> Metric:
    def metric(c: Columns, idx: np.ndarray) -> float:
        values = c[key][idx]
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float("nan")
    return metric


def _macro_f1(c: Columns, idx: np.ndarray) -> float:
    n = int(c["n_labels"])
    cm = np.bincount(c["gold"][idx] * n + c["pred"][idx], minlength=n * n).reshape(n, n)
    tp, total = np.diag(cm), cm.sum(0) + cm.sum(1)
    return float(np.mean(np.divide(2 * tp, total, out=np.zeros(n), where=total > 0)))


def _span_figures(c: Columns, idx: np.ndarray) -> tuple[float, float]:
    tp, n_pred, n_gold = c["tp"][idx].sum(), c["n_pred"][idx].sum(), c["n_gold"][idx].sum()
    precision = tp / n_pred if n_pred else (1.0 if not n_gold else 0.0)  # as metrics.span_metrics
    recall = tp / n_gold if n_gold else 1.0
    return float(precision), float(recall)


def _span_f1(c: Columns, idx: np.ndarray) -> float:
    p, r = _span_figures(c, idx)
    return 2 * p * r / (p + r) if p + r else 0.0


def _no_answer(c: Columns, idx: np.ndarray, of: str) -> float:
    gold, pred = c["unanswerable"][idx], c["declined"][idx]
    total = (pred if of == "precision" else gold).sum()
    return float((gold & pred).sum() / total) if total else 0.0


METRICS: dict[str, list[tuple[str, str, Metric]]] = {
    SEQUENCE_CLASSIFICATION: [("accuracy", "accuracy", _mean("right")), ("macro_f1", "macro-F1", _macro_f1)],
    SPAN_EXTRACTION: [("exact_match", "whole-record match", _mean("right")),
                      ("precision", "exact-span precision", lambda c, i: _span_figures(c, i)[0]),
                      ("recall", "exact-span recall", lambda c, i: _span_figures(c, i)[1]),
                      ("f1", "exact-span F1", _span_f1)],
    PAIR_RANKING: [("answer_accuracy", "answer accuracy", _mean("right")),
                   ("top1", "top-1", _mean_where("top1", lambda c: ~c["unanswerable"])),
                   ("mrr", "MRR", _mean_where("rr", lambda c: ~c["unanswerable"])),
                   ("no_answer_precision", "no-answer precision", lambda c, i: _no_answer(c, i, "precision")),
                   ("no_answer_recall", "no-answer recall", lambda c, i: _no_answer(c, i, "recall"))],
    "chain": [("end_to_end_accuracy", "end to end", _mean("right")),
              ("route_accuracy", "route accuracy", _mean("route_right")),
              ("file_names", "file names, exact set", _nanmean("files_right")),
              ("answers", "answers", _nanmean("answer_right"))],
}
