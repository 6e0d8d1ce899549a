"""Score a trained adapter on any file, through the router's own predictions."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION
from ..data import Record
from ..encoding import char_spans
from ..training.metrics import classification_metrics, span_metrics


def evaluate(router, task: str, records: Sequence[Record], batch_size: int = 32) -> dict:
    """Metrics of ``task`` on ``records`` (classification, extraction or ranking)."""
    spec = router.specs[task]
    if spec.kind == PAIR_RANKING:
        from ..training.ranking import score_results

        answerer = router.answerer(task)
        by_answer = answerer.knowledge_base.by_answer()
        gold = [by_answer[r.output].id if r.output in by_answer else None for r in records]
        results = router.predict_batch(task, [r.input for r in records])
        return score_results(results, gold, answerer.settings.threshold)
    results = []
    for i in range(0, len(records), batch_size):
        results += router.predict_batch(task, [r.input for r in records[i : i + batch_size]])
    if spec.kind == SEQUENCE_CLASSIFICATION:
        gold = [spec.labels.index(r.output) for r in records]
        pred = [spec.labels.index(res["predicted_label"]) for res in results]
        return classification_metrics(gold, pred, spec.labels)
    gold_spans = [char_spans(r.input, r.output) for r in records]
    pred_spans = [[(s["start"], s["end"]) for s in res["spans"]] for res in results]
    return span_metrics(gold_spans, pred_spans)


def plot_confusion(metrics: dict, path: str, title: str = "") -> None:
    """A confusion-matrix picture (matplotlib)."""
    from ..errors import require

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, cm = metrics["labels"], metrics["confusion_matrix"]
    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "SimHei", "DejaVu Sans"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(labels), 1.2 + 1.2 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, [f"{i}" for i in ticks])
    ax.set_yticks(ticks, [f"{i}" for i in ticks])
    for i, row in enumerate(cm):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    legend = "  ".join(f"{i}={label}" for i, label in enumerate(labels))
    ax.set_title((title + "\n" if title else "") + legend, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
