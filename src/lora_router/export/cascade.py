"""``export --cascade``: each classification task's n-gram first pass, fitted and written into the export.

Fitted at export, not at training, because the threshold is only as good as
the adapter scores it is fitted against: here they are the exported models'
own (every layout and precision written, int8 included), the ones a
deployment runs, and an export can gain a cascade without retraining.

Per classification task: the character n-gram baseline of ``eval``
(``evaluation.baselines.TextClassifierBaseline``) is fitted on the adapter's
own training split, its numpy form (``core.cascade.NgramModel``, what runs)
and each exported model score the task's held-out split, and
``evaluation.cascade.fit_threshold`` picks the confidence above which the
n-gram model decides alone. Files (paths inside the export folder, listed in
the manifest with the others)::

    cascade/<task>.json   the n-gram vocabulary and settings
    cascade/<task>.npz    idf, coefficients, intercepts (plain arrays)

and ``manifest.json`` gains ``"cascade": {"max_drop", "tasks": {task:
{"model", "weights", "threshold", "trained_on", "held_out": figures}}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..adapters import TaskManifest
from ..backends.onnx import export_layout
from ..config import SEQUENCE_CLASSIFICATION, TaskSpec
from ..data import Record, data_hash, load_bundled, split_data
from ..errors import ExportError, LoraRouterError
from ..evaluation.cascade import MAX_DROP_POINTS, fit_threshold

logger = logging.getLogger(__name__)


def write_cascade(root: Path, layouts: Sequence[str], precisions: Sequence[str], specs: dict[str, TaskSpec],
                  task_manifests: dict[str, TaskManifest], records: dict[str, Sequence[Record]] | None = None,
                  max_drop: float = MAX_DROP_POINTS) -> dict:
    """Fit and write the first pass of every classification task exported into ``root``; the manifest section.

    ``records``: held-out records per task (else the bundled test split, or
    the seeded hold-out of the user's training file). ``ExportError`` when a
    task's training or held-out split cannot be found again.
    """
    from ..backends.onnx import OnnxRouter
    from ..evaluation.baselines import TextClassifierBaseline
    from ..evaluation.tasks import training_split

    tasks = [t for t, spec in specs.items() if spec.kind == SEQUENCE_CLASSIFICATION]
    splits = {t: _splits(specs[t], task_manifests[t], records, training_split) for t in tasks}
    routers = [(f"{lay}/{prec}", OnnxRouter(root, layout=lay, precision=prec, tasks=tasks, verify=False))
               for lay in layouts for prec in precisions] if tasks else []
    section: dict = {"max_drop": max_drop, "tasks": {}}
    for t in tasks:
        spec, (train, held_out, where) = specs[t], splits[t]
        seed = int(task_manifests[t].training.get("seed", 0))
        model = TextClassifierBaseline(spec, seed).fit(train).ngram_model()
        texts = [r.input for r in held_out]
        gold = [spec.labels.index(r.output) for r in held_out]
        adapter = {run: [spec.labels.index(r["predicted_label"]) for r in router.predict_batch(t, texts)]
                   for run, router in routers}
        fit = fit_threshold(model.probabilities(texts), adapter, gold, max_drop)
        rel_model, rel_weights = export_layout.cascade_model_file(t), export_layout.cascade_weights_file(t)
        model.save(root / rel_model, root / rel_weights)
        section["tasks"][t] = {"model": rel_model, "weights": rel_weights, "threshold": fit.pop("threshold"),
                               "trained_on": where, "held_out": fit}
        logger.info("cascade %s: threshold %s, n-gram decides %s of the held-out split", t,
                    section["tasks"][t]["threshold"], {r: f["ngram_share"] for r, f in fit["runs"].items()})
    return section


def _splits(spec: TaskSpec, manifest: TaskManifest, given, training_split) -> tuple[list[Record], list[Record], str]:
    """The task's training records, its held-out records, and where the training records came from."""
    train, where = training_split(spec, manifest)
    if train is None:
        raise ExportError(f"--cascade: cannot fit the n-gram model of task {spec.name!r}: {where}; export without "
                          "--cascade, or retrain the adapter from data that is still there")
    source = manifest.data.get("source")
    if given and spec.name in given:
        held_out = list(given[spec.name])
    elif source == "bundled":
        held_out = load_bundled(spec.name, "test")
    else:
        try:
            held_out = split_data(spec, source, None, int(manifest.training.get("seed", 42))).test
        except (LoraRouterError, TypeError, OSError) as exc:
            raise ExportError(f"--cascade: cannot find the held-out split of task {spec.name!r} ({exc})") from None
        wanted = manifest.data.get("test_hash")
        if wanted and data_hash(held_out) != wanted:  # e.g. trained with --test-data: the 20% were trained on
            raise ExportError(f"--cascade: the held-out split of task {spec.name!r} is not the one its adapter was "
                              "scored on; give it: export_hub(..., parity_records={task: records})")
    unknown = sorted({r.output for r in held_out} - set(spec.labels))
    if not held_out or unknown:
        raise ExportError(f"--cascade: the held-out split of task {spec.name!r} "
                          + (f"has labels the task does not know: {unknown}" if unknown else "is empty")
                          + "; give held-out records with labels of the task")
    return train, held_out, where
