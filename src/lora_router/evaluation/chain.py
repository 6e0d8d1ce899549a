"""Score the whole chain ``ask`` runs on questions with their expected route, file names and answer.

A chain test file is JSONL, one question a line::

    {"question": "帮我把sales_2024.csv导入到ODS层", "route": "task", "file_names": ["sales_2024.csv"], "kb_id": null}

``route`` is answer, task, general or out_of_scope; ``file_names`` are the
names a task request holds (``[]`` otherwise); ``kb_id`` is the id of the
knowledge-base entry that answers an answer-route question, or null when no
entry does. Backend-neutral: it needs only a predictor's ``ask_batch``,
``chain`` and ``answerer`` (the PyTorch ``Router`` or the ONNX ``OnnxRouter``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import PAIR_RANKING
from ..core.chain import ROUTE_PREFIX, Chain
from ..data.records import field_problem, json_objects
from ..errors import DataError
from ..kb import KnowledgeBase

GOLD_ROUTES = ("answer", "task", "general", "out_of_scope")
UNCERTAIN = "uncertain"
FIELDS = ("question", "route", "file_names", "kb_id")


@dataclass(frozen=True)
class ChainCase:
    """One question of a chain test file and what the chain should do with it."""

    question: str
    route: str
    file_names: tuple[str, ...] = ()
    kb_id: str | None = None
    line: int = 0


def bundled_chain_cases() -> Path:
    """The bundled, hand-written chain test set."""
    from ..data.bundled import bundled_dir

    return bundled_dir() / "chain" / "test.jsonl"


def read_chain_cases(path: str | Path) -> list[ChainCase]:
    """The cases of a chain test file; ``DataError`` names every bad line."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), [(0, f"cannot read it ({exc})")]) from None
    problems: list[tuple[int, str]] = []
    cases = []
    for n, obj in json_objects(lines, problems):
        problem = field_problem(obj, ("question", "route"), strings=("question", "route"))
        names, kb_id = obj.get("file_names", []), obj.get("kb_id")
        if problem is None and not obj["question"].strip():
            problem = "field 'question' is empty"
        if problem is None and obj["route"] not in GOLD_ROUTES:
            problem = f"route {obj['route']!r} is not valid; valid: {', '.join(GOLD_ROUTES)}"
        if problem is None and (not isinstance(names, list) or not all(isinstance(x, str) and x for x in names)):
            problem = "field 'file_names' must be a list of file names ([] for none)"
        if problem is None and kb_id is not None and not isinstance(kb_id, str):
            problem = f"field 'kb_id' must be an entry id or null, got {type(kb_id).__name__}"
        if problem:
            problems.append((n, problem))
            continue
        cases.append(ChainCase(obj["question"], obj["route"], tuple(names), kb_id, n))
    if not cases and not problems:
        problems.append((0, "no questions in the file"))
    if problems:
        raise DataError(str(path), problems)
    return cases


def evaluate_chain(predictor, cases: Sequence[ChainCase], batch_size: int = 64) -> dict:
    """Route accuracy, per-route precision/recall, file-name and answer accuracy, and where errors start.

    File names are scored on task questions the chain routed to ``task``
    (exact set of names); answers on answer questions it routed to
    ``answer`` (the right entry, or no answer when none is right).
    """
    kb = _knowledge_base(predictor, predictor.chain)
    rows = chain_rows(predictor, cases, batch_size)
    return _summary(predictor.chain, rows, len(kb.entries) if kb is not None else None)


def chain_rows(predictor, cases: Sequence[ChainCase], batch_size: int = 64) -> list[dict]:
    """One row per case: the route given, and, where something is wrong, the step and reason (``wrong_at``)."""
    chain: Chain = predictor.chain
    kb = _knowledge_base(predictor, chain)
    if kb is not None:
        _check_kb_ids(kb, cases)
    answer_ids = {answer: e.id for answer, e in kb.by_answer().items()} if kb is not None else {}
    outs: list[dict] = []
    for i in range(0, len(cases), batch_size):
        outs += predictor.ask_batch([c.question for c in cases[i : i + batch_size]])
    rows = []
    for case, out in zip(cases, outs, strict=True):
        route = out.get("route") or UNCERTAIN
        row = {"line": case.line, "question": case.question, "gold_route": case.route, "route": route}
        if route != case.route:
            row.update(_first_wrong_step(chain, out, case.route))
        elif case.route == "task":
            row["file_names_right"] = set(out.get("file_names") or []) == set(case.file_names)
            if not row["file_names_right"]:
                row.update(wrong_at=chain_step_for(chain, "task"), reason="file names",
                           gold=list(case.file_names), got=list(out.get("file_names") or []))
        elif case.route == "answer":
            kb_id = _kb_id(out)
            if kb_id is False:  # the step result has no id: map the answer text back to its entry
                kb_id = answer_ids.get(out.get("answer") or "")
            row["answer_right"] = kb_id == case.kb_id
            if not row["answer_right"]:
                row.update(wrong_at=chain_step_for(chain, "answer"), reason="answer", gold=case.kb_id, got=kb_id)
        rows.append(row)
    return rows


def chain_step_for(chain: Chain, route: str) -> str | None:
    """The end step of the chain whose route is ``route`` (file_name_pick for task, question_answer for answer)."""
    return next((s.task for s in chain.steps.values() if not s.on and s.route == route), None)


def _routes_from(chain: Chain, target: str, seen: frozenset = frozenset()) -> set[str]:
    """Every route the chain can still end in once it goes to ``target``."""
    if target.startswith(ROUTE_PREFIX):
        return {target[len(ROUTE_PREFIX):]}
    step = chain.steps.get(target)
    if step is None or target in seen:
        return set()
    if not step.on:
        return {step.route} if step.route else set()
    return set().union(*(_routes_from(chain, t, seen | {target}) for t in step.on.values()))


def _first_wrong_step(chain: Chain, out: dict, gold: str) -> dict:
    """The first step whose decision can no longer lead to ``gold``, and why."""
    last_target = chain.start
    for step_out in out.get("steps", []):
        task, result = step_out["task"], step_out["result"]
        step = chain.steps.get(task)
        if step is None or not step.on:
            continue
        label, confidence = result.get("predicted_label"), result.get("confidence")
        if out.get("uncertain_step") == task:
            return {"wrong_at": task, "reason": "below threshold", "label": label, "confidence": confidence}
        last_target = step.on.get(label, "")
        if gold not in _routes_from(chain, last_target):
            return {"wrong_at": task, "reason": "label", "label": label, "confidence": confidence}
    # No step decided wrong: the chain stopped at a step that has no model.
    return {"wrong_at": last_target if last_target in chain.steps else None, "reason": "not trained"}


def _kb_id(out: dict):
    """The entry id the chain answered with; False when its result names none."""
    for step_out in out.get("steps", []):
        if "kb_id" in step_out["result"]:
            return step_out["result"]["kb_id"]
    return None if not out.get("answer") else False


def _knowledge_base(predictor, chain: Chain) -> KnowledgeBase | None:
    """The knowledge base the chain's answer step answers from; None when no ranking model is there."""
    task = chain_step_for(chain, "answer")
    if task and task in predictor.specs and predictor.specs[task].kind == PAIR_RANKING:
        return predictor.answerer(task).knowledge_base
    return None


def _check_kb_ids(kb: KnowledgeBase, cases: Sequence[ChainCase]) -> None:
    """Every gold ``kb_id`` must be an entry of the knowledge base the router answers from."""
    ids = {e.id for e in kb.entries}
    problems = [(c.line, f"kb_id {c.kb_id!r} is not an entry of {kb.path}; answer from the knowledge base this "
                 "file was written for (--kb FILE)") for c in cases if c.kb_id is not None and c.kb_id not in ids]
    if problems:
        raise DataError("chain test file", problems[:20])


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _summary(chain: Chain, rows: list[dict], kb_entries: int | None) -> dict:
    n = len(rows)
    routes = [*GOLD_ROUTES, UNCERTAIN]
    confusion = {g: {p: 0 for p in routes} for g in GOLD_ROUTES}
    for r in rows:
        confusion[r["gold_route"]][r["route"] if r["route"] in routes else UNCERTAIN] += 1
    per_route = {}
    for route in GOLD_ROUTES:
        tp = confusion[route][route]
        predicted = sum(confusion[g][route] for g in GOLD_ROUTES)
        support = sum(confusion[route].values())
        per_route[route] = {"precision": _ratio(tp, predicted), "recall": _ratio(tp, support),
                            "support": support, "predicted": predicted}
    files = [r["file_names_right"] for r in rows if "file_names_right" in r]
    answers = [r["answer_right"] for r in rows if "answer_right" in r]
    wrong = [r for r in rows if "wrong_at" in r]
    wrong_at: dict[str, dict[str, int]] = {}
    for r in wrong:
        where = wrong_at.setdefault(str(r["wrong_at"]), {})
        where[r["reason"]] = where.get(r["reason"], 0) + 1
    route_right = sum(r["route"] == r["gold_route"] for r in rows)
    return {
        "n": n,
        "route_accuracy": _ratio(route_right, n),
        "end_to_end_accuracy": _ratio(n - len(wrong), n),
        "routes": per_route,
        "route_confusion": {"labels": routes, "rows": list(GOLD_ROUTES),
                            "matrix": [[confusion[g][p] for p in routes] for g in GOLD_ROUTES]},
        "uncertain": sum(r["route"] == UNCERTAIN for r in rows),
        "file_names": {"exact_set_accuracy": _ratio(sum(files), len(files)), "n": len(files)},
        "answers": {"accuracy": _ratio(sum(answers), len(answers)), "n": len(answers),
                    "knowledge_base_entries": kb_entries},
        "wrong_at": {k: wrong_at[k] for k in [*chain.steps, *sorted(set(wrong_at) - set(chain.steps))]
                     if k in wrong_at},
        "thresholds": {s.task: s.threshold for s in chain.steps.values() if s.on},
        "errors": wrong,
    }
