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
    """A confusion-matrix picture: counts per gold (rows) and predicted (columns) label, named as in the data.

    The labels are drawn in a font that has their glyphs (lora_router.plotting);
    where no installed font has them, as L0, L1 ... with an ASCII legend.
    """
    from ..errors import require
    from ..plotting import drawable_labels, drawable_text

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, cm = metrics["labels"], metrics["confusion_matrix"]
    drawn = drawable_labels(labels)
    heading, heading_font = drawable_text(f"{title}: confusion matrix" if title else "confusion matrix")
    n = len(labels)
    label_in = max((len(t) for t in drawn.texts), default=1) * 0.14  # a CJK character at 9 pt is about 1/8 inch
    legend_in = 0.13 * len(drawn.legend.splitlines())
    fig, ax = plt.subplots(figsize=(2.2 + label_in + 0.8 * n, 1.6 + label_in * 0.6 + legend_in + 0.8 * n))
    ax.imshow(cm, cmap="Blues", vmin=0)
    ticks = range(n)
    slant = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if label_in > 0.8 * 0.9 else {}
    ax.set_xticks(ticks, drawn.texts, fontproperties=drawn.font, fontsize=9, **slant)
    ax.set_yticks(ticks, drawn.texts, fontproperties=drawn.font, fontsize=9)
    peak = max((max(row) for row in cm if row), default=0) or 1
    for i, row in enumerate(cm):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=10,
                    color="white" if value > peak * 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(heading, fontproperties=heading_font, fontsize=10)
    bottom = 0.0
    if drawn.legend:
        legend = "labels no installed font draws:\n" + drawn.legend
        fig.text(0.02, 0.02, legend, fontsize=7, family="monospace", va="bottom")
        bottom = (legend_in + 0.2) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
