"""A person's corrections as training data: ``DIR/labels/<task>.jsonl`` in the labelling guide's format.

A correction says what is right about one question: the route, a task's
label (the scene of ``question_classifier``, the type of
``question_type_classifier``), the file names, the knowledge-base entry or
that none answers it. It teaches every task whose answer it fixes, one
instruction line per task: a route teaches each classification step on the
chain's way to it (``task`` teaches 数据平台相关问题 and 任务处理), a type
teaches the scene that leads to it too, file names teach ``file_name_pick``,
an entry teaches ``question_answer`` its answer text ("" for no entry).

Every line is checked as ``lora-router data check`` checks it before it is
written. The last word wins: a new correction of the same task and question
replaces the earlier line (so the file never holds one question with two
outputs, which ``data check`` refuses). Writes hold a lock on the folder and
are atomic: an added line is one ``write`` on an append-only file, a
replaced one a new file renamed over the old.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, TaskSpec
from ..core.chain import ROUTE_PREFIX, Chain
from ..data.records import Record, _read_lines, check_lines
from ..errors import InputError, UnknownTaskError
from ..tasks import get_task

LABELS_DIR = "labels"
ROUTES_TAUGHT = ("answer", "task", "general", "out_of_scope")


@dataclass
class Correction:
    """What a person says is right about ``question``; every field left None says nothing."""

    question: str
    route: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    file_names: list[str] | None = None
    kb_id: str | None = None
    no_entry: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> Correction:
        if not isinstance(data, dict) or not isinstance(data.get("question"), str) or not data["question"].strip():
            raise InputError("a correction needs 'question', the text it corrects")
        unknown = set(data) - {"question", "route", "labels", "file_names", "kb_id", "no_entry"}
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; a correction has question, route, "
                             "labels, file_names, kb_id, no_entry")
        labels = data.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise InputError("'labels' must map a task to one of its labels, "
                             "e.g. {\"question_classifier\": \"通用问题\"}")
        names = data.get("file_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise InputError("'file_names' must be a list of strings ([] for none)")
        return cls(data["question"], data.get("route"), dict(labels), names, data.get("kb_id"),
                   bool(data.get("no_entry")))


class Teacher:
    """Turns corrections into instruction lines, by the chain's routes and the tasks' labels."""

    def __init__(self, chain: Chain | None = None, knowledge_base=None):
        self.chain = chain or Chain.load()
        self.knowledge_base = knowledge_base  # kb.file.KnowledgeBase, to write an entry's answer text

    def routes(self) -> list[str]:
        """The routes a person can choose: those the chain ends on, but ``uncertain``."""
        ends = {t[len(ROUTE_PREFIX):] for s in self.chain.steps.values() for t in s.on.values()
                if t.startswith(ROUTE_PREFIX)}
        ends |= {s.route for s in self.chain.steps.values() if s.route}
        return [r for r in ROUTES_TAUGHT if r in ends] + sorted(ends - set(ROUTES_TAUGHT) - {"uncertain"})

    def path_to(self, route: str | None = None, step: str | None = None) -> list[tuple[str, str]]:
        """``(task, label)`` of each classification step on the chain's way to ``route`` (or to ``step``)."""
        def walk(task: str, seen: tuple[str, ...]) -> list[tuple[str, str]] | None:
            s = self.chain.steps[task]
            if task == step or (route is not None and not s.on and s.route == route):
                return []
            for label, target in s.on.items():
                if target == f"{ROUTE_PREFIX}{route}":
                    return [(task, label)]
                if not target.startswith(ROUTE_PREFIX) and target not in seen:
                    rest = walk(target, (*seen, target))
                    if rest is not None:
                        return [(task, label), *rest]
            return None

        found = walk(self.chain.start, (self.chain.start,))
        if found is None:
            where = f"route {route!r}" if route else f"step {step!r}"
            raise InputError(f"the chain has no way to {where}; routes: {', '.join(self.routes())}")
        return found

    def lines(self, correction: Correction) -> dict[str, dict]:
        """The instruction line each task learns from ``correction``, by task name (checked like ``data check``)."""
        text = correction.question
        labels: dict[str, str] = {}

        def teach(task: str, label: str, why: str) -> None:
            if labels.get(task, label) != label:
                raise InputError(f"{why} says {task} is {label!r}, but the correction also says {labels[task]!r}")
            labels[task] = label

        if correction.route is not None:
            if correction.route not in self.routes():
                raise InputError(f"route {correction.route!r} is not one a person can choose; "
                                 f"valid: {', '.join(self.routes())}")
            for task, label in self.path_to(route=correction.route):
                teach(task, label, f"route {correction.route}")
        for task, label in correction.labels.items():
            spec = _spec(task)
            if spec.kind != SEQUENCE_CLASSIFICATION:
                raise InputError(f"{task} is not a classification task; give its answer as file_names or kb_id")
            if label not in spec.labels:
                raise InputError(f"label {label!r} is not a label of {task}; valid: {', '.join(spec.labels)}")
            if task in self.chain.steps:
                for before, via in self.path_to(step=task):
                    teach(before, via, f"{task} {label}")
            teach(task, label, "the label")
        out = {task: {"instruction": _spec(task).instruction, "input": text, "output": label}
               for task, label in labels.items()}
        if correction.file_names is not None:
            task = self._task_of_kind(SPAN_EXTRACTION)
            names = sorted(correction.file_names, key=lambda n: _position(text, n))
            out[task] = Record(_spec(task).instruction, text, tuple(names)).to_json()
        if correction.kb_id is not None or correction.no_entry:
            if correction.kb_id is not None and correction.no_entry:
                raise InputError("give kb_id or no_entry, not both")
            task = self._task_of_kind(PAIR_RANKING)
            out[task] = {"instruction": _spec(task).instruction, "input": text,
                         "output": "" if correction.no_entry else self._answer_of(correction.kb_id)}
        if not out:
            raise InputError("the correction says nothing: give a route, labels, file_names, kb_id or no_entry")
        for task, line in out.items():
            _, problems = check_lines([json.dumps(line, ensure_ascii=False)])
            if problems:
                raise InputError(f"{task}: {problems[0][1]}")
        return out

    def entry_of(self, labelled: dict[str, object]) -> str | None:
        """The entry id a question's saved ``question_answer`` line names: None when none is saved, "" for no
        entry (and for an answer no entry of the knowledge base holds any more)."""
        try:
            task = self._task_of_kind(PAIR_RANKING)
        except InputError:
            return None
        if task not in labelled:
            return None
        answer = labelled[task]
        if not answer or self.knowledge_base is None:
            return ""
        entry = self.knowledge_base.by_answer().get(answer)
        return entry.id if entry else ""

    def _task_of_kind(self, kind: str) -> str:
        for task in self.chain.steps:
            if _spec(task).kind == kind:
                return task
        raise InputError(f"the chain has no {kind} step to teach")

    def _answer_of(self, kb_id: str) -> str:
        if self.knowledge_base is None:
            raise InputError("no knowledge base is known here, so an entry cannot be written (give --kb FILE)")
        for entry in self.knowledge_base.entries:
            if entry.id == kb_id:
                return entry.answer
        raise InputError(f"no entry {kb_id!r} in the knowledge base {self.knowledge_base.path}")


class LabelsWriter:
    """``DIR/labels/<task>.jsonl``: save corrections at once, read them back, one line per task and question."""

    def __init__(self, capture_dir: str | Path):
        self.folder = Path(capture_dir) / LABELS_DIR

    def path(self, task: str) -> Path:
        return self.folder / f"{task}.jsonl"

    def save(self, lines: dict[str, dict]) -> dict[str, str]:
        """Write each task's line; per task ``added``, ``replaced`` (an earlier output of that question) or
        ``unchanged``."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        done = {}
        with self._locked():
            for task, line in lines.items():
                done[task] = self._save_one(self.path(task), line)
        return done

    def _save_one(self, path: Path, line: dict) -> str:
        encoded = json.dumps(line, ensure_ascii=False) + "\n"
        kept, replaced = [], False
        for raw in _existing(path):
            try:
                old = json.loads(raw)
            except json.JSONDecodeError:
                kept.append(raw)
                continue
            if isinstance(old, dict) and (old.get("instruction"), old.get("input")) == (line["instruction"],
                                                                                       line["input"]):
                if old.get("output") == line["output"]:
                    return "unchanged"
                replaced = True
                continue
            kept.append(raw)
        if not replaced:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, encoded.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            return "added"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{k}\n" for k in kept) + encoded)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return "replaced"

    def labelled(self) -> dict[str, dict[str, object]]:
        """What is saved, by question: ``{question: {task: output}}``."""
        out: dict[str, dict[str, object]] = {}
        for path in sorted(self.folder.glob("*.jsonl")):
            for raw in _existing(path):
                try:
                    line = json.loads(raw)
                    out.setdefault(line["input"], {})[path.stem] = line["output"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        return out

    def counts(self) -> dict[str, int]:
        return {p.stem: sum(1 for _ in _existing(p)) for p in sorted(self.folder.glob("*.jsonl"))}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def export_labels(capture_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write every task's labels to ``out_dir/<task>.jsonl``, checked as ``data check`` does; lines by task.

    A file with a bad line raises ``DataError`` naming it and writes nothing.
    """
    from ..data.records import read_records

    writer = LabelsWriter(capture_dir)
    files = sorted(writer.folder.glob("*.jsonl"))
    records = {p.stem: read_records(p) for p in files}  # every file checked before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for task, rows in records.items():
        target = out / f"{task}.jsonl"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows), "utf-8")
        os.replace(tmp, target)
    return {task: len(rows) for task, rows in records.items()}


def _existing(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [raw for raw in _read_lines(path) if raw.strip()]


def _spec(task: str) -> TaskSpec:
    try:
        return get_task(task)
    except UnknownTaskError as exc:
        raise InputError(str(exc).strip('"')) from None


def _position(text: str, name: str) -> int:
    found = text.find(name)
    if found < 0:
        raise InputError(f"file name {name!r} is not in the question; select it in the text as written")
    return found
