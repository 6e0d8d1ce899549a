"""The weekly loop in one call: reviewed corrections -> new adapter versions -> compared -> exported, or refused.

``lora-router improve`` runs, with the functions each step's own command runs:

1. **labels**: ``review.export_labels`` writes the corrections people made in
   ``lora-router review`` (``CAPTURE/labels/``) to one file per task;
2. **train**: ``training.train`` trains each corrected task again on its data
   (the bundled train split by default) plus its labels, the labels winning
   where they contradict the data (they were given later, by a person); the
   hub keeps a new version, the previous one stays loadable;
3. **compare**: ``evaluation.compare.compare_task`` scores the previous and the
   new version on the corrections and on the task's test split;
4. **export**: only when, for every task trained, the new version is not
   significantly worse on the test split and gets more of the corrections
   right than the previous one, ``export.export_hub`` writes the export
   (beside the folder, behind the parity gate, swapped in at once).

Otherwise nothing is exported and the report says why: the comparison of each
task, the questions that flipped. The export in service is untouched, and so
is what the hub serves: every version the run trained is rejected
(``AdapterHub.reject``), the previous one current again, so a later plain
``lora-router export`` ships what it shipped before. The rejected versions stay
in the hub, numbered, with the reasons (``hub versions TASK``), loadable as
``--hub HUB@TASK=vN``. A run that stops on an error after training (or is
interrupted) rejects what it trained the same way, the error as the reason.
Everything a run decided is written to ``WORK/report.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters import AdapterHub
from .config import LoraSettings, TrainSettings
from .data import BUNDLED, load_bundled, read_records, records_for
from .errors import LoraRouterError

logger = logging.getLogger(__name__)

STAGES = ("labels", "train", "compare", "export")
REPORT_FILE = "report.json"

Stage = Callable[[str, dict], None]  # (stage, what it did) after each step, for the CLI to print


@dataclass
class ImproveReport:
    """What one run of the loop did: labels per task, versions trained, comparisons, the decision, the export."""

    work_dir: str
    labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why its labels were not trained on
    trained: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> {"old": vN, "new": vM}
    comparisons: dict[str, dict[str, dict]] = field(default_factory=dict)  # task -> {"labels"|"test": report}
    promoted: bool = False
    reasons: list[str] = field(default_factory=list)  # why not promoted (empty when promoted)
    export: dict[str, Any] | None = None  # the new export's manifest, when promoted
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> {"rejected": vN, "current": vK}

    def to_dict(self) -> dict:
        return {"work_dir": self.work_dir, "labels": self.labels, "skipped": self.skipped, "trained": self.trained,
                "comparisons": self.comparisons, "promoted": self.promoted, "reasons": self.reasons,
                "export": self.export, "rejected": self.rejected}


def improve(
    capture_dir: str | Path,
    hub: str | Path,
    base_model: str,
    export_to: str | Path,
    *,
    work_dir: str | Path | None = None,
    data: Sequence[str | Path] = (BUNDLED,),
    test_data: str | Path | None = None,
    settings: TrainSettings | None = None,
    lora: LoraSettings | None = None,
    alpha: float | None = None,
    layout: str = "all",
    quantize: str = "int8",
    version: str | None = None,
    knowledge_base: str | Path | None = None,
    progress: bool = False,
    on_stage: Stage | None = None,
) -> ImproveReport:
    """Run the loop once (see the module's docstring); return what it did. ``report.promoted`` says if it exported.

    ``data``: what each corrected task trains on besides its labels (files or
    ``"bundled"``); ``test_data``: the held-out file training scores epochs on
    and the comparison uses [default: the task's bundled test split]; ``lora``:
    [default: the settings the previous version was trained with].
    """
    from .evaluation.significance import ALPHA
    from .review import export_labels

    alpha = ALPHA if alpha is None else alpha
    tell = on_stage or (lambda stage, info: None)
    store = AdapterHub(hub)
    if store.pinned:
        raise LoraRouterError(f"improve trains new versions into {hub}; give the hub folder without a version selector")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    work = Path(work_dir) if work_dir else Path(capture_dir) / "improve" / stamp
    report = ImproveReport(work_dir=str(work))

    report.labels = export_labels(capture_dir, work / "labels")
    if not report.labels:
        raise LoraRouterError(f"no labels in {Path(capture_dir) / 'labels'} yet: correct some answers with "
                              "`lora-router review --capture DIR` first")
    for task in report.labels:
        if not store.has(task):
            report.skipped[task] = f"hub {store.root} has no {task} adapter to improve"
    tasks = [t for t in report.labels if t not in report.skipped]
    if not tasks:
        raise LoraRouterError("none of the labelled tasks (" + ", ".join(report.labels) + f") is in hub {store.root}")
    tell("labels", {"labels": report.labels, "skipped": report.skipped, "out": str(work / "labels")})

    try:
        _train_compare_export(report, store, tasks, work, base_model, export_to, data=data, test_data=test_data,
                              settings=settings, lora=lora, alpha=alpha, layout=layout, quantize=quantize,
                              version=version, knowledge_base=knowledge_base, progress=progress, tell=tell)
    except BaseException as exc:  # trained but neither compared nor exported: not what the hub should serve
        report.promoted = False
        if report.trained:
            logger.error("improve stopped after training (%r); rejecting the versions it trained", exc)
            try:
                _reject_trained(report, store, [f"the improve run stopped before it could export them: {exc!r}"])
                _write_report(work / REPORT_FILE, {**report.to_dict(), "error": repr(exc)})
            except Exception:  # noqa: BLE001 - the first error is the one to report
                logger.exception("could not reject the versions trained by the stopped run")
        raise
    if not report.promoted:
        _reject_trained(report, store, report.reasons)
    tell("export", {"promoted": report.promoted, "reasons": report.reasons, "export": report.export,
                    "rejected": report.rejected})
    _write_report(work / REPORT_FILE, report.to_dict())
    return report


def _train_compare_export(report: ImproveReport, store: AdapterHub, tasks: list[str], work: Path, base_model: str,
                          export_to, *, data, test_data, settings, lora, alpha, layout, quantize, version,
                          knowledge_base, progress, tell: Stage) -> None:
    """Steps 2-4 of ``improve``, filling ``report`` as they go."""
    from .evaluation.compare import compare_task
    from .training import train

    for task in tasks:
        old = store.latest_version(task)
        labels = work / "labels" / f"{task}.jsonl"
        same_lora = lora or LoraSettings.from_dict(store.manifest(task).lora or {})  # trunk layers stay as they were
        manifest = train(_spec(task, store), base_model=base_model,
                         hub=store, data=[*map(str, data), str(labels)], test_data=test_data, prefer_last=True,
                         lora=same_lora, settings=settings, knowledge_base=knowledge_base, progress=progress)
        report.trained[task] = {"old": old, "new": manifest.version}
        tell("train", {"task": task, "old": old, "new": manifest.version, "metrics": manifest.metrics})

    for task, versions in report.trained.items():
        old_router = _router(base_model, f"{store.root}@{task}=v{versions['old']}", task)
        new_router = _router(base_model, str(store.root), task)
        spec = new_router.specs[task]
        corrections = records_for(read_records(work / "labels" / f"{task}.jsonl", extra_tasks=[spec]), spec)
        held_out = (records_for(read_records(test_data, extra_tasks=[spec]), spec) if test_data
                    else load_bundled(task, "test"))
        where = {"labels": str(work / "labels" / f"{task}.jsonl"),
                 "test": str(test_data) if test_data else "the bundled test split"}
        report.comparisons[task] = {
            name: {"old": f"v{versions['old']}", "new": f"v{versions['new']}", "data": where[name],
                   **compare_task(old_router, new_router, task, records, alpha=alpha)}
            for name, records in (("labels", corrections), ("test", held_out))}
        on_labels, on_test = report.comparisons[task]["labels"], report.comparisons[task]["test"]
        report.reasons += refusals(task, versions, on_labels, on_test)
        tell("compare", {"task": task, "labels": on_labels, "test": on_test})

    report.promoted = not report.reasons
    if report.promoted:
        from .export import export_hub

        manifest = export_hub(base_model, store, export_to, layout=layout, quantize=quantize, version=version,
                              knowledge_base=knowledge_base, progress=progress)
        report.export = {"out": str(Path(export_to)), "id": manifest.id, "version": manifest.version,
                         "tasks": list(manifest.tasks), "parity": manifest.parity}


def _reject_trained(report: ImproveReport, store: AdapterHub, reasons: list[str]) -> None:
    """Reject every version the run trained, each task's previous version current again (``AdapterHub.reject``).

    All of them, not only those that failed the gate: the run promotes its versions together or not at all, so
    the hub serves what the export in service was made from. A task's own reasons come first in its record."""
    for task, versions in report.trained.items():
        if store.latest_version(task) != versions["new"]:
            continue  # already put aside
        own = [r for r in reasons if r.startswith(f"{task} ")]
        why = own + [r for r in reasons if r not in own]
        summary = {name: {"verdict": c.get("verdict"), "headline": _headline(c)}
                   for name, c in report.comparisons.get(task, {}).items()}
        store.reject(task, why, restore=versions["old"], by="lora-router improve",
                     report=str(Path(report.work_dir) / REPORT_FILE), comparison=summary)
        report.rejected[task] = {"rejected": versions["new"], "current": versions["old"]}


def refusals(task: str, versions: dict[str, int], on_labels: dict, on_test: dict) -> list[str]:
    """Why the new version of ``task`` may not be exported (empty: it may), from ``compare_task``'s two reports.

    Refused when it is significantly worse on the test split (McNemar at the
    comparison's alpha), or when it does not get more corrections right than
    the previous version (wrong -> right flips no more than right -> wrong).
    """
    from .evaluation.compare import WORSE

    old, new = f"v{versions['old']}", f"v{versions['new']}"
    reasons = []
    if on_test["verdict"] == WORSE:
        reasons.append(f"{task} {new} is significantly worse than {old} on {on_test['data']} ({_headline(on_test)})")
    flips = on_labels["mcnemar"]
    if flips["wrong_to_right"] <= flips["right_to_wrong"]:
        reasons.append(f"{task} {new} is not better than {old} on the corrections ({_headline(on_labels)})")
    return reasons


def _spec(task: str, store: AdapterHub):
    """The registered task (its instruction and labels as the code declares them), else the hub's own spec."""
    from .errors import UnknownTaskError
    from .tasks import get_task

    try:
        return get_task(task)
    except UnknownTaskError:
        return store.spec(task)


def _router(base_model: str, hub: str, task: str):
    from .backends.torch_peft import Router
    from .core.options import PredictorOptions

    return Router(base_model, hub, options=PredictorOptions(tasks=[task]))


def _headline(c: dict) -> str:
    m = next(m for m in c["metrics"] if m["metric"] == c["headline"])
    t = c["mcnemar"]
    return (f"{m['name']} {m['old']} -> {m['new']}, {t['right_to_wrong']} right -> wrong, "
            f"{t['wrong_to_right']} wrong -> right, p = {t['p_value']:.3g}, n = {c['n']}")


def _write_report(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")
    os.replace(tmp, path)
