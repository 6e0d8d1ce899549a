"""Feedback on a captured answer: what was right or wrong, checked against the answer it is about.

A feedback line names the capture id and says any of: thumbs up or down, the
right route, the right label of a classification task, the right file names
(each a substring of the question, as the labelling guide wants them), the
right knowledge-base entry or that none answers, and a comment. A label that
is not one of its task's labels, a file name the question does not hold, an
entry together with "no entry": each is an ``InputError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..config import SEQUENCE_CLASSIFICATION
from ..core.chain import ROUTES
from ..errors import InputError, UnknownTaskError
from ..tasks.registry import get_task
from .layout import LINE_VERSION, now

VERDICTS = ("up", "down")
MAX_COMMENT_CHARS = 10_000


def feedback_line(record: dict, *, verdict: str | None = None, route: str | None = None,
                  labels: Mapping[str, str] | None = None, file_names: Sequence[str] | None = None,
                  kb_id: str | None = None, no_entry: bool = False, comment: str = "",
                  label_sets: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The feedback line on ``record`` (a captured answer), or ``InputError`` naming the field at fault.

    ``label_sets`` are the labels of each classification task as the service
    loaded them; without it, a task's labels are those its captured step
    scored, else those of the task registry.
    """
    if verdict is not None and verdict not in VERDICTS:
        raise InputError(f"verdict must be 'up', 'down' or null, got {verdict!r}")
    if route is not None and route not in ROUTES:
        raise InputError(f"route {route!r} is not a route; routes: {', '.join(ROUTES)}")
    labels = dict(labels or {})
    for task, label in labels.items():
        allowed = _labels_of(task, record, label_sets)
        if label not in allowed:
            raise InputError(f"labels.{task}: {label!r} is not a label of {task}; its labels: {', '.join(allowed)}")
    question = str(record.get("question") or "")
    if file_names is not None:
        file_names = list(file_names)
        for i, name in enumerate(file_names):
            if not isinstance(name, str) or not name.strip() or name not in question:
                raise InputError(f"file_names[{i}]: {name!r} is not written in the question; a file name is "
                                 "copied from the question exactly as written")
    if kb_id is not None and (not isinstance(kb_id, str) or not kb_id):
        raise InputError(f"kb_id must be a knowledge-base entry id (a string), got {kb_id!r}")
    if kb_id is not None and no_entry:
        raise InputError("give kb_id (the entry that answers) or no_entry (none does), not both")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"comment must be text of at most {MAX_COMMENT_CHARS} characters")
    if not (verdict or route or labels or file_names is not None or kb_id or no_entry or comment.strip()):
        raise InputError("the feedback says nothing; give a verdict, a route, labels, file_names, kb_id, "
                         "no_entry or a comment")
    return {"v": LINE_VERSION, "id": record["id"], "time": now(), "verdict": verdict, "route": route,
            "labels": labels, "file_names": file_names, "kb_id": kb_id, "no_entry": bool(no_entry),
            "comment": comment}


def _labels_of(task: str, record: dict, label_sets: Mapping[str, Sequence[str]] | None) -> list[str]:
    if label_sets is not None:
        if task not in label_sets:
            raise InputError(f"labels: {task!r} is not a classification task of these models; "
                             f"they have: {', '.join(label_sets) or 'none'}")
        return list(label_sets[task])
    for step in (record.get("answer") or {}).get("steps", []):
        probabilities = step.get("result", {}).get("probabilities")
        if step.get("task") == task and probabilities:
            return list(probabilities)
    try:
        spec = get_task(task)
    except UnknownTaskError as exc:
        raise InputError(f"labels: {exc}") from None
    if spec.kind != SEQUENCE_CLASSIFICATION:
        raise InputError(f"labels: {task} is not a classification task; it has no labels")
    return list(spec.labels)
