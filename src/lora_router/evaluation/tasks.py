"""Score a trained adapter on any file, through the router's own predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..adapters.manifest import TaskManifest
from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from ..data import BUNDLED, Record, data_hash, load_bundled, merge_data, split_data
from ..encoding import char_spans
from ..errors import LoraRouterError, require
from .calibration import calibration_report
from .metrics import classification_metrics, score_results, span_metrics


def evaluate(router, task: str, records: Sequence[Record], batch_size: int = 32) -> dict:
    """Metrics of ``task`` on ``records`` (classification, extraction or ranking)."""
    spec = router.specs[task]
    if spec.kind == PAIR_RANKING:
        answerer = router.answerer(task)
        by_answer = answerer.knowledge_base.by_answer()
        gold = [by_answer[r.output].id if r.output in by_answer else None for r in records]
        results = router.predict_batch(task, [r.input for r in records])
        return score_results(results, gold, answerer.settings.threshold)
    if spec.kind == SEQUENCE_CLASSIFICATION:
        logits = task_logits(router, task, [r.input for r in records], batch_size)
        gold = [spec.labels.index(r.output) for r in records]
        # The label is the argmax, which the temperature does not change.
        metrics = classification_metrics(gold, logits.argmax(-1).tolist(), spec.labels)
        metrics["calibration"] = calibration_figures(router, task, logits, gold, records)
        return metrics
    results = []
    for i in range(0, len(records), batch_size):
        results += router.predict_batch(task, [r.input for r in records[i : i + batch_size]])
    gold_spans = [char_spans(r.input, r.output) for r in records]
    pred_spans = [[(s["start"], s["end"]) for s in res["spans"]] for res in results]
    return span_metrics(gold_spans, pred_spans)


def task_logits(router, task: str, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Raw head logits (before the temperature) of a classification task, for any router."""
    encoder = router.encoders[task]
    return np.concatenate([np.asarray(router.logits(task, encoder.encode_batch(texts[i : i + batch_size])),
                                      dtype=np.float64) for i in range(0, len(texts), batch_size)])


def calibration_figures(router, task: str, logits: np.ndarray, gold: Sequence[int], records: Sequence[Record]) -> dict:
    """ECE before and after the adapter's temperature on these records, and where it was fitted."""
    manifest = router.manifests.get(task)
    saved = (manifest.calibration if manifest else None) or {}
    figures = calibration_report(logits, gold, router.temperature(task))
    figures["fitted_on"] = saved.get("fitted_on")  # None: trained before calibration, so T = 1
    # Fitted on these very records: the ECE after is in-sample, and so optimistic.
    figures["fitted_on_this_data"] = bool(saved) and data_hash(records) == manifest.data.get("test_hash")
    if figures["fitted_on_this_data"]:
        from .calibration import cross_fitted_ece

        figures["ece_after_cross_fitted"] = cross_fitted_ece(logits, gold)
    return figures


def plot_confusion(metrics: dict, path: str, title: str = "") -> None:
    """A confusion-matrix picture: counts per gold (rows) and predicted (columns) label, named as in the data.

    The labels are drawn in a font that has their glyphs (lora_router.evaluation.plots);
    where no installed font has them, as L0, L1 ... with an ASCII legend.
    """
    from .plots import drawable_labels, drawable_text

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


def baseline(router, task: str, records: Sequence[Record]) -> dict:
    """The task's simple baseline (evaluation/baselines.py), fitted on the adapter's own training split.

    ``{"name", "metrics", "trained_on"}``, or ``{"name": None, "reason"}`` when
    there is none or the training split cannot be found again.
    """
    from .baselines import baseline_for

    spec = router.specs[task]
    none = {"name": None, "reason": f"no simple baseline for a {spec.kind} task like {task}"}
    if spec.kind == SPAN_EXTRACTION:  # nothing to fit: the file-name regex
        return baseline_for(spec, [], records) or none
    manifest = router.manifests.get(task)
    train, where = training_split(spec, manifest)
    if train is None:
        return {"name": None, "reason": where}
    answerer = router.answerer(task) if spec.kind == PAIR_RANKING else None
    seed = int(manifest.training.get("seed", 0)) if manifest else 0
    found = baseline_for(spec, train, records, answerer=answerer, seed=seed)
    return {**found, "trained_on": where} if found is not None else none


def training_split(spec, manifest: TaskManifest | None) -> tuple[list[Record] | None, str]:
    """The records the adapter was trained on, found again from its manifest, and where they came from."""
    data = manifest.data if manifest else {}
    source, wanted = data.get("source"), data.get("train_hash")
    if source == BUNDLED:
        try:
            train = load_bundled(spec.name, "train")
        except LoraRouterError as exc:
            return None, str(exc)
        changed = " (changed since the adapter was trained)" if wanted and data_hash(train) != wanted else ""
        return train, "the bundled train split" + changed
    files = [f["file"] for f in data.get("files", [])] or ([source] if source else [])
    gone = [f for f in files if f != BUNDLED and not Path(f).is_file()]
    if not files or gone:
        return None, f"the training data ({', '.join(gone) or source or 'not recorded'}) is not there any more"
    seed, prefer_last = int(manifest.training.get("seed", 42)), bool(data.get("conflicts_resolved"))
    try:
        held_out = split_data(spec, files, None, seed, prefer_last=prefer_last).train
        everything = merge_data(files, spec, prefer_last=prefer_last).records
    except LoraRouterError as exc:
        return None, f"the training data {source} no longer reads: {exc}"
    for train, what in ((held_out, "the training part of"), (everything, "all of")):
        if data_hash(train) == wanted:
            return train, f"{what} {source}"
    return None, f"the training data {source} changed since the adapter was trained"


def plot_reliability(calibration: dict, path: str, title: str = "") -> None:
    """A reliability diagram: accuracy against confidence per bin, before and after the temperature."""
    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = calibration["temperature"]
    after = f"ECE {calibration['ece_after']:.3f}"
    if "ece_after_cross_fitted" in calibration:
        after += f" (cross-fitted {calibration['ece_after_cross_fitted']:.3f})"
    panels = [("before: raw softmax (T = 1)", calibration["bins_before"], f"ECE {calibration['ece_before']:.3f}"),
              (f"after: temperature T = {t:.3g}", calibration["bins_after"], after)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), sharey=True)
    for ax, (name, bins, ece) in zip(axes, panels):
        width = bins[0]["high"] - bins[0]["low"]
        filled = [b for b in bins if b["n"]]
        centres = [b["low"] + width / 2 for b in filled]
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
        acc = [b["accuracy"] for b in filled]
        gap = [b["confidence"] - b["accuracy"] for b in filled]
        ax.bar(centres, acc, width=width * 0.92, color="#4c72b0", edgecolor="white", label="accuracy in the bin")
        ax.bar(centres, gap, bottom=acc, width=width * 0.92, color="#c44e52", alpha=0.35, hatch="//",
               edgecolor="#c44e52", label="gap to the bin's mean confidence")
        for c, b in zip(centres, filled):
            top = max(b["accuracy"], b["confidence"])
            ax.text(c, top + 0.015, f"n={b['n']}", ha="center", va="bottom", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_xlabel("confidence (top-label probability)")
        ax.set_title(f"{name}\n{ece}", fontsize=10)
    axes[0].set_ylabel("accuracy")
    # One legend for both panels, below them, where it covers no bar.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    note = f"{calibration['n']} examples, {len(calibration['bins_before'])} bins"
    if calibration.get("fitted_on_this_data"):
        note += "; T was fitted on these same examples, so 'after' is optimistic"
    fig.suptitle((title + "  -  " if title else "") + "reliability diagram\n" + note, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reliability_path(confusion_path: str) -> str:
    """Where ``--plot cm.png`` puts the reliability diagram: ``cm.reliability.png``."""
    p = Path(confusion_path)
    return str(p.with_name(f"{p.stem}.reliability{p.suffix or '.png'}"))
