"""The parity gate: every exported model against the PyTorch router (adapters unmerged).

Bounds (per task, per layout, per precision):

* fp32: max |delta logit| <= 1e-4, and 100% agreement (labels, exact spans,
  chosen knowledge-base entry).
* int8: the task's own metric on the held-out split (accuracy, exact-span F1,
  top-1) at most ``int8_max_drop`` points (default 1) below PyTorch's
  (``lora_router.evaluation.comparison``). Label
  agreement and the number of near-ties (top-2 probability gap < 0.05) are
  reported beside it: a weakly trained model's near-ties flip under int8
  while what users get barely moves. Without gold labels (a task with no
  held-out split of its own) int8 needs >= 99% agreement instead.
* one-call layouts (multi, trunk), fp32, also: max |delta logit| <= 1e-5
  against the merged models (when exported), and rows of several tasks in one
  call within 1e-5 of each task's own batch (``one_call_parity``).

The ONNX side is ``lora_router.backends.onnx.OnnxRouter`` itself, so the gate checks
the code a deployment runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from ..core.results import extraction_result
from ..data import Record
from ..encoding import char_spans, softmax
from ..errors import ExportError
from ..evaluation.comparison import INT8_MAX_DROP_POINTS, METRIC_NAMES, compare_metric, metric_drop

FP32_MAX_LOGIT_DIFF = 1e-4
# One-call layouts (multi, trunk), fp32: against the merged models, and mixed-task rows against single-task batches.
ONE_CALL_MAX_LOGIT_DIFF = 1e-5
MIXED_ROWS_PER_TASK = 8
INT8_MIN_AGREEMENT = 0.99  # only where there are no gold labels to score the task's metric
NEAR_TIE_GAP = 0.05
BATCH = 32


def task_parity(torch_router, onnx_router, task: str, records: Sequence[Record]) -> dict:
    """Figures of one task: ONNX (``onnx_router``'s layout and precision) against PyTorch."""
    spec = onnx_router.specs[task]
    if spec.kind == PAIR_RANKING:
        return _pair_parity(torch_router, onnx_router, task, records)
    texts = [r.input for r in records]
    max_diff, agree, pred_t, pred_o = 0.0, 0, [], []
    near_ties = near_tie_disagreements = n_tokens = 0
    for i in range(0, len(texts), BATCH):
        chunk = texts[i : i + BATCH]
        enc = onnx_router.encoders[task].encode_batch(chunk, warn=False)
        ref = torch_router.encoders[task].encode_batch(chunk, warn=False)
        if [e.input_ids for e in enc] != [e.input_ids for e in ref]:
            raise ExportError(f"parity gate, task {task!r}: the exported tokenizer encodes differently from the "
                              "PyTorch router's; export again from the same base model")
        lt = np.asarray(torch_router.logits(task, ref), dtype=np.float64)
        lo = np.asarray(onnx_router.logits(task, enc), dtype=np.float64)
        max_diff = max(max_diff, _max_diff(lt, lo, enc))
        if spec.kind == SPAN_EXTRACTION:
            for j, (text, e) in enumerate(zip(chunk, enc)):
                n = len(e.input_ids)
                st = [(s["start"], s["end"]) for s in extraction_result(text, e, lt[j])["spans"]]
                so = [(s["start"], s["end"]) for s in extraction_result(text, e, lo[j])["spans"]]
                agree += st == so
                pred_t.append(st)
                pred_o.append(so)
                near_ties += int((_top2_gap(softmax(lt[j, :n])) < NEAR_TIE_GAP).sum())
                n_tokens += n
        else:
            same = lt.argmax(-1) == lo.argmax(-1)
            tie = _top2_gap(softmax(lt / torch_router.temperature(task))) < NEAR_TIE_GAP
            agree += int(same.sum())
            near_ties += int(tie.sum())
            near_tie_disagreements += int((tie & ~same).sum())
            pred_t += lt.argmax(-1).tolist()
            pred_o += lo.argmax(-1).tolist()
    figures: dict = {"n": len(texts), "max_abs_logit_diff": float(f"{max_diff:.3g}")}
    if spec.kind == SPAN_EXTRACTION:
        figures.update(span_agreement=round(agree / len(texts), 4), near_tie_tokens=near_ties, n_tokens=n_tokens)
        if all(isinstance(r.output, tuple) for r in records):
            gold = [char_spans(r.input, r.output) for r in records]  # type: ignore[arg-type]
            figures.update(compare_metric(spec.kind, gold, pred_t, pred_o))
    else:
        figures.update(label_agreement=round(agree / len(texts), 4), near_ties=near_ties,
                       near_tie_disagreements=near_tie_disagreements)
        if all(r.output in spec.labels for r in records):
            figures.update(compare_metric(spec.kind, [spec.labels.index(r.output) for r in records], pred_t, pred_o))
    return figures


def _top2_gap(probs: np.ndarray) -> np.ndarray:
    """Highest minus second-highest probability, per row."""
    top2 = np.sort(np.atleast_2d(probs), axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _pair_parity(torch_router, onnx_router, task: str, records: Sequence[Record]) -> dict:
    """Same candidates (the exported knowledge base) scored by both; then the answerer decides."""
    answerer = onnx_router.answerer(task)
    questions = [r.input for r in records]
    candidates = [answerer.retrieve(q) for q in questions]
    pairs = [p for q, c in zip(questions, candidates) for p in answerer.pairs(q, c)]
    lt, lo = (np.concatenate([router.score_pairs(task, pairs[i : i + BATCH]) for i in range(0, len(pairs), BATCH)]
                             or [np.zeros(0)]).astype(np.float64) for router in (torch_router, onnx_router))
    agree, pos, near_ties, res_t, res_o = 0, 0, 0, [], []
    threshold = answerer.settings.threshold
    for c in candidates:
        n = sum(len(x.phrasings) for x in c)
        dt, do = answerer.decide(c, lt[pos : pos + n]), answerer.decide(c, lo[pos : pos + n])
        agree += dt["kb_id"] == do["kb_id"]
        scores = [x["score"] for x in dt["candidates"]]
        # Close to flipping: two entries nearly level, or the best nearly at the no-answer threshold.
        near_ties += bool(scores) and (abs(scores[0] - threshold) < NEAR_TIE_GAP
                                       or (len(scores) > 1 and scores[0] - scores[1] < NEAR_TIE_GAP))
        res_t.append(dt)
        res_o.append(do)
        pos += n
    figures = {"n": len(questions), "n_pairs": len(pairs),
               "max_abs_logit_diff": float(f"{float(np.abs(lt - lo).max()) if len(pairs) else 0.0:.3g}"),
               "answer_agreement": round(agree / max(1, len(questions)), 4), "near_ties": int(near_ties)}
    by_answer = answerer.knowledge_base.by_answer()
    if records and all(r.output == "" or r.output in by_answer for r in records):
        gold = [by_answer[r.output].id if r.output else None for r in records]
        figures.update(compare_metric(PAIR_RANKING, gold, res_t, res_o, threshold))
    return figures


def parity_problems(task: str, layout: str, precision: str, figures: dict,
                    int8_max_drop: float = INT8_MAX_DROP_POINTS) -> list[str]:
    """What in ``figures`` misses its bound (empty when the gate passes)."""
    where = f"task {task!r} ({layout} {precision})"
    problems = []
    agreement_key = next((k for k in ("label_agreement", "answer_agreement", "span_agreement") if k in figures), None)
    if precision == "fp32":
        if figures["max_abs_logit_diff"] > FP32_MAX_LOGIT_DIFF:
            problems.append(f"{where}: max |delta logit| {figures['max_abs_logit_diff']:.3g} > {FP32_MAX_LOGIT_DIFF:g}")
        if agreement_key and figures[agreement_key] < 1.0:
            problems.append(f"{where}: {agreement_key.replace('_', ' ')} {figures[agreement_key]:.2%} < 100%")
        for key in ("max_abs_logit_diff_vs_merged", "mixed_max_abs_logit_diff"):
            if key in figures and figures[key] > ONE_CALL_MAX_LOGIT_DIFF:
                problems.append(f"{where}: {key.replace('_', ' ')} {figures[key]:.3g} > {ONE_CALL_MAX_LOGIT_DIFF:g}")
    elif "metric_drop_points" in figures:
        if drop := metric_drop(figures, agreement_key, int8_max_drop):
            problems.append(f"{where}: {drop}")
    elif agreement_key and figures[agreement_key] < INT8_MIN_AGREEMENT:
        problems.append(f"{where}: {agreement_key.replace('_', ' ')} {figures[agreement_key]:.2%} < "
                        f"{INT8_MIN_AGREEMENT:.0%} (no gold labels to score {task}'s own metric)")
    return problems


def parity_bounds(int8_max_drop: float = INT8_MAX_DROP_POINTS) -> dict:
    """The bounds the gate applies, for the export manifest; ``ExportError`` for a drop that makes no sense."""
    if not 0.0 <= float(int8_max_drop) <= 100.0:
        raise ExportError(f"int8 max drop must be in [0, 100] points, got {int8_max_drop}")
    return {"fp32_max_abs_logit_diff": FP32_MAX_LOGIT_DIFF, "fp32_agreement": 1.0,
            "int8_max_metric_drop_points": float(int8_max_drop), "int8_metric": METRIC_NAMES,
            "int8_min_agreement_without_gold": INT8_MIN_AGREEMENT, "near_tie_gap": NEAR_TIE_GAP}


def check_parity(report: dict, int8_max_drop: float = INT8_MAX_DROP_POINTS) -> None:
    """Raise ``ExportError`` naming every task and figure of ``report`` that misses its bound.

    ``report`` is ``{task: {layout: {precision: figures}}}`` (the manifest's ``parity``).
    """
    problems = [p for task, layouts in report.items() for layout, precisions in layouts.items()
                for precision, figures in precisions.items()
                for p in parity_problems(task, layout, precision, figures, int8_max_drop)]
    if problems:
        raise ExportError(
            "parity gate missed:\n  " + "\n  ".join(problems) + "\nNothing was written. If only int8 misses, export "
            "with quantize='none' (fp32) or allow a larger drop (--int8-max-drop POINTS); if fp32 misses, the "
            "export is wrong: please report it with these figures."
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
            chunks = [encoded[i : i + BATCH] for i in range(0, len(encoded), BATCH)]
            diff = max((_max_diff(onnx_router.logits(task, c), merged_router.logits(task, c), c) for c in chunks),
                       default=0.0)
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
