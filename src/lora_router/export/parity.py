"""The parity gate: every exported model against the PyTorch router (adapters unmerged).

Bounds (per task, per layout, per precision):

* fp32: max |delta logit| <= 1e-4, and 100% agreement (labels, exact spans,
  chosen knowledge-base entry).
* int8: >= 99% label / answer agreement; span extraction's exact-span F1
  against the gold spans within 1 point of PyTorch's.
* one-call layouts (multi, trunk), fp32, also: max |delta logit| <= 1e-5
  against the merged models (when exported), and rows of several tasks in one
  call within 1e-5 of each task's own batch (``one_call_parity``).

The ONNX side is ``lora_router.runtime.OnnxRouter`` itself, so the gate checks
the code a deployment runs. (STYLE.md lists export above runtime; export
using runtime keeps the graph acyclic, runtime imports nothing of export.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from ..data import Record
from ..encoding import char_spans
from ..errors import ExportError
from ..results import extraction_result

FP32_MAX_LOGIT_DIFF = 1e-4
# One-call layouts (multi, trunk), fp32: against the merged models, and mixed-task rows against single-task batches.
ONE_CALL_MAX_LOGIT_DIFF = 1e-5
MIXED_ROWS_PER_TASK = 8
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_F1_DROP_POINTS = 1.0
BATCH = 32


def task_parity(torch_router, onnx_router, task: str, records: Sequence[Record]) -> dict:
    """Figures of one task: ONNX (``onnx_router``'s layout and precision) against PyTorch."""
    spec = onnx_router.specs[task]
    if spec.kind == PAIR_RANKING:
        return _pair_parity(torch_router, onnx_router, task, records)
    texts = [r.input for r in records]
    max_diff, agree, gold, pred_t, pred_o = 0.0, 0, [], [], []
    for i in range(0, len(texts), BATCH):
        chunk = texts[i : i + BATCH]
        enc = onnx_router.encoders[task].encode_batch(chunk, warn=False)
        ref = torch_router.encoders[task].encode_batch(chunk, warn=False)
        if [e.input_ids for e in enc] != [e.input_ids for e in ref]:
            raise ExportError(f"parity gate, task {task!r}: the exported tokenizer encodes differently from the "
                              "PyTorch router's; export again from the same base model")
        lt = np.asarray(torch_router.logits(task, ref), dtype=np.float64)
        lo = np.asarray(onnx_router.logits(task, enc), dtype=np.float64)
        if spec.kind == SPAN_EXTRACTION:
            for j, (text, e) in enumerate(zip(chunk, enc)):
                n = len(e.input_ids)
                max_diff = max(max_diff, float(np.abs(lt[j, :n] - lo[j, :n]).max()))
                st = [(s["start"], s["end"]) for s in extraction_result(text, e, lt[j])["spans"]]
                so = [(s["start"], s["end"]) for s in extraction_result(text, e, lo[j])["spans"]]
                agree += st == so
                pred_t.append(st)
                pred_o.append(so)
        else:
            max_diff = max(max_diff, float(np.abs(lt - lo).max()))
            agree += int((lt.argmax(-1) == lo.argmax(-1)).sum())
    figures = {"n": len(texts), "max_abs_logit_diff": float(f"{max_diff:.3g}")}
    if spec.kind == SPAN_EXTRACTION:
        from ..training.metrics import span_metrics

        have_gold = all(isinstance(r.output, tuple) for r in records)
        figures["span_agreement"] = round(agree / len(texts), 4)
        if have_gold:
            gold = [char_spans(r.input, r.output) for r in records]  # type: ignore[arg-type]
            f1_t = span_metrics(gold, pred_t)["f1"] * 100
            f1_o = span_metrics(gold, pred_o)["f1"] * 100
            figures.update(f1_pytorch=round(f1_t, 2), f1_onnx=round(f1_o, 2), f1_delta_points=round(f1_o - f1_t, 2))
    else:
        figures["label_agreement"] = round(agree / len(texts), 4)
    return figures


def _pair_parity(torch_router, onnx_router, task: str, records: Sequence[Record]) -> dict:
    """Same candidates (the exported knowledge base) scored by both; then the answerer decides."""
    answerer = onnx_router.answerer(task)
    questions = [r.input for r in records]
    candidates = [answerer.retrieve(q) for q in questions]
    pairs = [p for q, c in zip(questions, candidates) for p in answerer.pairs(q, c)]
    lt = np.concatenate([torch_router.score_pairs(task, pairs[i : i + BATCH]) for i in range(0, len(pairs), BATCH)]
                        or [np.zeros(0)]).astype(np.float64)
    lo = np.concatenate([onnx_router.score_pairs(task, pairs[i : i + BATCH]) for i in range(0, len(pairs), BATCH)]
                        or [np.zeros(0)]).astype(np.float64)
    agree, pos = 0, 0
    for c in candidates:
        n = sum(len(x.phrasings) for x in c)
        agree += answerer.decide(c, lt[pos : pos + n])["kb_id"] == answerer.decide(c, lo[pos : pos + n])["kb_id"]
        pos += n
    return {"n": len(questions), "n_pairs": len(pairs),
            "max_abs_logit_diff": float(f"{float(np.abs(lt - lo).max()) if len(pairs) else 0.0:.3g}"),
            "answer_agreement": round(agree / max(1, len(questions)), 4)}


def parity_problems(task: str, layout: str, precision: str, figures: dict) -> list[str]:
    """What in ``figures`` misses its bound (empty when the gate passes)."""
    where = f"task {task!r} ({layout} {precision})"
    problems = []
    agreement = next((figures[k] for k in ("label_agreement", "answer_agreement") if k in figures), None)
    if precision == "fp32":
        if figures["max_abs_logit_diff"] > FP32_MAX_LOGIT_DIFF:
            problems.append(f"{where}: max |delta logit| {figures['max_abs_logit_diff']:.3g} > {FP32_MAX_LOGIT_DIFF:g}")
        for key in ("label_agreement", "answer_agreement", "span_agreement"):
            if key in figures and figures[key] < 1.0:
                problems.append(f"{where}: {key.replace('_', ' ')} {figures[key]:.2%} < 100%")
        for key in ("max_abs_logit_diff_vs_merged", "mixed_max_abs_logit_diff"):
            if key in figures and figures[key] > ONE_CALL_MAX_LOGIT_DIFF:
                problems.append(f"{where}: {key.replace('_', ' ')} {figures[key]:.3g} > {ONE_CALL_MAX_LOGIT_DIFF:g}")
    else:
        if agreement is not None and agreement < INT8_MIN_AGREEMENT:
            name = "label agreement" if "label_agreement" in figures else "answer agreement"
            problems.append(f"{where}: {name} {agreement:.2%} < {INT8_MIN_AGREEMENT:.0%}")
        if "f1_delta_points" in figures and abs(figures["f1_delta_points"]) > INT8_MAX_F1_DROP_POINTS:
            problems.append(f"{where}: exact-span F1 {figures['f1_onnx']:.2f} vs PyTorch {figures['f1_pytorch']:.2f} "
                            f"(delta {figures['f1_delta_points']:+.2f} points, bound {INT8_MAX_F1_DROP_POINTS:g})")
        if "span_agreement" in figures and "f1_delta_points" not in figures \
                and figures["span_agreement"] < INT8_MIN_AGREEMENT:
            problems.append(f"{where}: span agreement {figures['span_agreement']:.2%} < {INT8_MIN_AGREEMENT:.0%} "
                            "(no gold spans to compare F1)")
    return problems


def check_parity(report: dict) -> None:
    """Raise ``ExportError`` naming every task and figure of ``report`` that misses its bound.

    ``report`` is ``{task: {layout: {precision: figures}}}`` (the manifest's ``parity``).
    """
    problems = [p for task, layouts in report.items() for layout, precisions in layouts.items()
                for precision, figures in precisions.items() for p in parity_problems(task, layout, precision, figures)]
    if problems:
        raise ExportError(
            "parity gate missed:\n  " + "\n  ".join(problems) + "\nNothing was written. If only int8 misses, export "
            "with quantize='none' (fp32); if fp32 misses, the export is wrong: please report it with these figures."
        )


def parity_records(task: str, kind: str, given: dict[str, Sequence[Record]] | None) -> list[Record]:
    """The held-out records of ``task``: given, else the bundled test split.

    A classification task without either is checked on the inputs of every
    bundled test split (agreement needs no gold labels).
    """
    from ..data import bundled_tasks, load_bundled

    if given and task in given:
        return list(given[task])
    if task in bundled_tasks():
        return load_bundled(task, "test")
    if kind == SEQUENCE_CLASSIFICATION:
        return [Record("", r.input, "") for t in bundled_tasks() for r in load_bundled(t, "test")]
    raise ExportError(
        f"parity gate: no held-out records for task {task!r} (it has no bundled test split); pass them "
        f"with parity_records={{{task!r}: records}}, or export with parity=False"
    )


def one_call_parity(onnx_router, merged_router, held_out: dict[str, Sequence[Record]]) -> dict[str, dict]:
    """What a one-call layout adds to ``task_parity``, per task.

    ``max_abs_logit_diff_vs_merged``: against ``merged_router`` (the merged
    models at the same precision; None skips it). ``mixed_max_abs_logit_diff``:
    the first ``MIXED_ROWS_PER_TASK`` inputs of every task as rows of one call,
    against the same inputs in each task's own batch.
    """
    rows: dict[str, list] = {}
    out: dict[str, dict] = {t: {} for t in onnx_router.tasks}
    for task in onnx_router.tasks:
        encoded = _encoded_inputs(onnx_router, task, held_out[task])
        rows[task] = encoded[:MIXED_ROWS_PER_TASK]
        if merged_router is not None:
            diff = 0.0
            for i in range(0, len(encoded), BATCH):
                chunk = encoded[i : i + BATCH]
                diff = max(diff, _max_diff(onnx_router.logits(task, chunk), merged_router.logits(task, chunk), chunk))
            out[task]["max_abs_logit_diff_vs_merged"] = float(f"{diff:.3g}")
    mixed = [(t, rows[t][i]) for i in range(MIXED_ROWS_PER_TASK) for t in rows if i < len(rows[t])]
    together = onnx_router.mixed_logits(mixed) if mixed else []
    for (task, e), logits in zip(mixed, together):
        alone = onnx_router.logits(task, [e])[0]
        before = out[task].get("mixed_max_abs_logit_diff", 0.0)
        out[task]["mixed_max_abs_logit_diff"] = float(f"{max(before, _max_diff([logits], [alone], [e])):.3g}")
    return out


def _encoded_inputs(router, task: str, records: Sequence[Record]) -> list:
    """The model inputs of ``records``: the texts, or for pair ranking the (question, candidate) pairs."""
    encoder = router.encoders[task]
    if router.specs[task].kind != PAIR_RANKING:
        return encoder.encode_batch([r.input for r in records], warn=False)
    answerer = router.answerer(task)
    pairs = [p for r in records for p in answerer.pairs(r.input, answerer.retrieve(r.input))]
    return encoder.encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False) if pairs else []


def _max_diff(a, b, encoded) -> float:
    """Max |a - b| over the real (unpadded) positions of each row."""
    diff = 0.0
    for x, y, e in zip(a, b, encoded):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim == 2:  # per-token logits
            x, y = x[: len(e.input_ids)], y[: len(e.input_ids)]
        diff = max(diff, float(np.abs(x - y).max()) if x.size else 0.0)
    return diff
