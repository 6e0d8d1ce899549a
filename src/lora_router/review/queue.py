"""The review queue: captured answers ranked by what most deserves a person's look.

A person has minutes, the service has thousands of answers. The queue puts
first what a correction is most likely to fix, in this order of weight:

1. **feedback that says wrong**: a thumbs down, or a correction (a route,
   a label, file names, an entry) that disagrees with the answer;
2. **contradictions between steps**, which need no person to spot but one
   to fix: routed ``task`` with no file name although the text holds a name
   with an extension; ``out_of_scope`` or ``general`` although it holds one
   (labelling guide §1: a question naming a platform file is a platform
   question); routed ``answer`` with no entry;
3. **uncertain stops**: a step below its threshold;
4. **low margins**: a step whose label beat the second best by less than
   ``low_margin`` (the closer, the higher).

Questions that differ only in case, width, spaces or punctuation are one
item with a count (a question asked often weighs more), so one correction
covers them. Nothing here reads files: records come from
``lora_router.capture.CaptureStore.records()`` (or any iterable of the same dicts).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

# What each kind of reason adds to an item's score; a reason's own weight may scale it (a lower margin, more).
WEIGHTS = {"feedback": 100.0, "contradiction": 40.0, "uncertain": 30.0, "low_margin": 20.0}
LOW_MARGIN = 0.2
# Extensions that make a run of text a file name for the contradiction checks (labelling guide §3 and a few more).
FILE_EXTENSIONS = frozenset(
    "csv tsv xlsx xlsm xls json jsonl parquet orc avro txt sql hql py sh ipynb pdf doc docx ppt pptx md "
    "zip gz tgz tar rar 7z log xml yaml yml html htm png jpg jpeg bak dat dmp".split())
_STOP = "\\s\"'“”‘’《》「」『』【】()（），,。；;：:!！?？、"
_NAME = re.compile(rf"[^{_STOP}]*?[^{_STOP}.]\.([A-Za-z0-9]{{1,10}})(?![A-Za-z0-9])")
# Words that lead into a file name in a request and begin none (as tasks.filename_rules has it): cut for display.
_LEAD_IN = re.compile(r"^.*[把将从和与及跟让是给被向]")
_FOLD = re.compile(r"[\s\W_]+", re.UNICODE)


@dataclass
class Reason:
    """Why an item is in the queue: ``kind`` (a key of ``WEIGHTS``), what a person reads, and its weight."""

    kind: str
    detail: str
    weight: float = 1.0
    step: str | None = None

    @property
    def score(self) -> float:
        return WEIGHTS[self.kind] * self.weight


@dataclass
class ReviewItem:
    """One question to look at: the latest capture of it, why, and how many captures it stands for."""

    id: str
    question: str
    answer: dict
    reasons: list[Reason]
    count: int = 1
    ids: list[str] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)
    time: str | None = None

    @property
    def score(self) -> float:
        """The reasons' sum, and a little more for a question asked often (log2 of the count)."""
        return round(sum(r.score for r in self.reasons) + 5.0 * math.log2(self.count), 3)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["score"] = self.score
        return out


def file_names_in(text: str) -> list[str]:
    """Runs of ``text`` that end in a known file extension (``sales_2024.csv``), model-free."""
    return [_LEAD_IN.sub("", m.group(0)) or m.group(0) for m in _NAME.finditer(text)
            if m.group(1).lower() in FILE_EXTENSIONS]


def fold(question: str) -> str:
    """The key near-duplicates share: NFKC, case-folded, without spaces and punctuation."""
    return _FOLD.sub("", unicodedata.normalize("NFKC", question).casefold())


def step_margins(answer: dict) -> list[tuple[str, float]]:
    """``(task, margin)`` of each step that has one: from the trace, else from the step's own probabilities."""
    trace = (answer.get("trace") or {}).get("steps")
    if trace:
        return [(s["task"], float(s["margin"])) for s in trace if s.get("margin") is not None]
    out = []
    for step in answer.get("steps", []):
        probabilities = sorted((step.get("result") or {}).get("probabilities", {}).values(), reverse=True)
        if len(probabilities) >= 2:
            out.append((step["task"], probabilities[0] - probabilities[1]))
    return out


def feedback_says_wrong(answer: dict, feedback: dict) -> str | None:
    """What a feedback line says is wrong with ``answer``, in words (its comment aside); None when it says nothing
    is."""
    said = ["thumbs down"] if feedback.get("verdict") == "down" else []
    if feedback.get("route") and feedback["route"] != answer.get("route"):
        said.append(f"route {feedback['route']}, not {answer.get('route')}")
    predicted = {s["task"]: (s.get("result") or {}).get("predicted_label") for s in answer.get("steps", [])}
    for task, label in (feedback.get("labels") or {}).items():
        if predicted.get(task) != label:
            said.append(f"{task} {label}")
    if feedback.get("file_names") is not None and list(feedback["file_names"]) != list(answer.get("file_names", [])):
        said.append("file names " + (", ".join(feedback["file_names"]) or "none"))
    if feedback.get("no_entry") and answer.get("answer"):
        said.append("no entry answers it")
    if feedback.get("kb_id") and feedback["kb_id"] != _kb_id(answer):
        said.append(f"entry {feedback['kb_id']}")
    return "; ".join(said) or None


def reasons_for(answer: dict, feedback: Iterable[dict] = (), low_margin: float = LOW_MARGIN) -> list[Reason]:
    """Every reason ``answer`` (with its feedback) deserves a look; empty when none."""
    reasons = []
    for line in feedback:
        said = feedback_says_wrong(answer, line)
        if said:
            reasons.append(Reason("feedback", f"feedback: {said}"))
    route, question = answer.get("route"), answer.get("question", "")
    names = file_names_in(question)
    if route == "task" and not answer.get("file_names") and names:
        reasons.append(Reason("contradiction", f"routed task with no file name, but the text holds {names[0]}"))
    if route in ("out_of_scope", "general") and names:
        reasons.append(Reason("contradiction", f"routed {route}, but the text names the file {names[0]}"))
    if route == "answer" and not answer.get("answer"):
        reasons.append(Reason("contradiction", "routed answer, but no knowledge-base entry answers it"))
    if route == "uncertain":
        step = answer.get("uncertain_step")
        reasons.append(Reason("uncertain", answer.get("note") or f"{step} was unsure", step=step))
    for task, margin in step_margins(answer):
        if margin < low_margin and task != answer.get("uncertain_step"):
            reasons.append(Reason("low_margin", f"{task}: margin {margin:.2f} to the second label",
                                  weight=round(1.0 - margin / low_margin, 3), step=task))
    return reasons


def review_queue(records: Iterable[dict], *, low_margin: float = LOW_MARGIN,
                 everything: bool = False) -> list[ReviewItem]:
    """The queue over captured ``records`` (oldest first, each with its ``feedback`` list), best first.

    Near-duplicates fold into one item shown with their latest capture; its
    reasons are those of every capture folded in (a step's doubt once, each
    feedback line and each contradiction once).
    ``everything`` keeps questions with no reason too, at the end.
    """
    groups: dict[str, ReviewItem] = {}
    for record in records:
        answer = record.get("answer") or {}
        question = record.get("question") or answer.get("question", "")
        feedback = list(record.get("feedback") or [])
        reasons = reasons_for(answer, feedback, low_margin)
        key = fold(question) or question
        item = groups.get(key)
        if item is None:
            groups[key] = ReviewItem(record["id"], question, answer, reasons, 1, [record["id"]], feedback,
                                     record.get("time"))
            continue
        item.count += 1
        item.ids.append(record["id"])
        item.feedback.extend(feedback)
        item.id, item.question, item.answer, item.time = record["id"], question, answer, record.get("time")
        seen = {_same(r) for r in item.reasons}
        item.reasons.extend(r for r in reasons if _same(r) not in seen)
    items = [i for i in groups.values() if everything or i.reasons]
    return sorted(items, key=lambda i: (-i.score, -(i.count), i.time or ""))


def _same(reason: Reason) -> tuple:
    """What makes two captures' reasons one: a step's doubt counts once, each feedback line on its own."""
    return (reason.kind, reason.step) if reason.step else (reason.kind, reason.detail)


def _kb_id(answer: dict) -> str | None:
    for step in answer.get("steps", []):
        if "kb_id" in (step.get("result") or {}):
            return step["result"]["kb_id"]
    return None
