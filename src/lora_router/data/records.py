"""Instruction-format JSONL: read, validate with line numbers, shuffle, hash.

Every record is ``{"instruction", "input", "output"}``. The instruction picks
the task; the output is a label (classification), a file name, a list of file
names or ``[]`` (extraction), or an answer string, ``""`` for none (question
answering).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, TaskSpec
from ..errors import DataError, UnknownTaskError
from ..tasks import task_for_instruction

FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Record:
    """One validated example; ``output`` is a label, an answer, or a tuple of spans."""

    instruction: str
    input: str
    output: str | tuple[str, ...]
    line: int = 0
    source: str = field(default="", compare=False)  # the file it was read from (merge names both lines of a conflict)

    def to_json(self) -> dict:
        out = list(self.output) if isinstance(self.output, tuple) else self.output
        if isinstance(out, list) and len(out) == 1:
            out = out[0]  # docs/labelling-guide.md §3: one file is written as a plain string
        return {"instruction": self.instruction, "input": self.input, "output": out}


def _output_problem(spec: TaskSpec, output) -> tuple[str | None, object]:
    """Check an output against its task; return (problem, normalised output)."""
    if spec.kind == SPAN_EXTRACTION:
        items = [output] if isinstance(output, str) else output
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            return "field 'output' must be a string or a list of strings for " + spec.name, None
        if any(not x.strip() for x in items):
            return "field 'output' has an empty file name", None
        return None, tuple(items)
    if not isinstance(output, str):
        return f"field 'output' must be a string, got {type(output).__name__}", None
    if spec.kind == SEQUENCE_CLASSIFICATION and output not in spec.labels:
        return f"label {output!r} is not a label of {spec.name}; valid: {', '.join(spec.labels)}", None
    return None, output


def _span_problem(text: str, spans: tuple[str, ...]) -> str | None:
    pos = 0
    for span in spans:
        found = text.find(span, pos)
        if found < 0:
            where = "a substring of the input" if span not in text else "in input order"
            return f"extraction output {span!r} is not {where}"
        pos = found + len(span)
    return None


def json_objects(lines: Iterable[str], problems: list[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    """Non-blank JSONL lines as ``(line number, object)``; invalid JSON and non-objects go to ``problems``."""
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append((n, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((n, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        yield n, obj


def field_problem(obj: dict, required: Sequence[str], strings: Sequence[str]) -> str | None:
    """What is wrong with an object's fields: a missing one, or one in ``strings`` that is not a string."""
    missing = [f for f in required if f not in obj]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    bad = [f for f in strings if not isinstance(obj[f], str)]
    if bad:
        return f"field '{bad[0]}' must be a string, got {type(obj[bad[0]]).__name__}"
    return None


def check_lines(lines: Iterable[str], *, extra_tasks: Iterable[TaskSpec] = (), source: str = "",
                keep_conflicts: bool = False) -> tuple[list[Record], list[tuple[int, str]]]:
    """Validate JSONL lines; return the good records and every ``(line, problem)``.

    ``extra_tasks`` are tasks known besides the registry (a hub's custom tasks).
    An input given twice with different outputs is a problem, unless
    ``keep_conflicts`` (``merge_data`` then reports or resolves it across files).
    """
    extra = {t.instruction: t for t in extra_tasks}
    records: list[Record] = []
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], tuple[int, object]] = {}
    for n, obj in json_objects(lines, problems):
        problem = field_problem(obj, FIELDS, strings=("instruction", "input"))
        if problem:
            problems.append((n, problem))
            continue
        instruction, text = obj["instruction"], obj["input"]
        if not text.strip():
            problems.append((n, "field 'input' is empty"))
            continue
        try:
            spec = extra.get(instruction) or task_for_instruction(instruction)
        except UnknownTaskError as exc:
            problems.append((n, str(exc)))
            continue
        problem, output = _output_problem(spec, obj["output"])
        if problem is None and spec.kind == SPAN_EXTRACTION:
            problem = _span_problem(text, output)  # type: ignore[arg-type]
        if problem:
            problems.append((n, problem))
            continue
        key = (instruction, text)
        if key in seen and seen[key][1] != output and not keep_conflicts:
            first, other = seen[key]
            problems.append((n, f"input duplicates line {first} with a different output ({other!r} vs {output!r})"))
            continue
        seen.setdefault(key, (n, output))
        records.append(Record(instruction, text, output, n, source))  # type: ignore[arg-type]
    return records, problems


def _read_lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as fh:
            # Split on "\n" only: U+2028 inside a string is a valid JSON character.
            yield from fh.read().split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), [(0, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise DataError(str(path), [(0, f"cannot read file: {exc.strerror or exc}")]) from None


def read_records(path: str | Path, *, extra_tasks: Iterable[TaskSpec] = (),
                 keep_conflicts: bool = False) -> list[Record]:
    """Read and validate a whole file; raise ``DataError`` naming every bad line."""
    path = Path(path)
    records, problems = check_lines(_read_lines(path), extra_tasks=extra_tasks, source=str(path),
                                    keep_conflicts=keep_conflicts)
    if problems:
        raise DataError(str(path), problems)
    if not records:
        raise DataError(str(path), [(0, "no records in file")])
    return records


def records_for(records: Iterable[Record], spec: TaskSpec) -> list[Record]:
    """The records whose instruction selects ``spec``."""
    return [r for r in records if r.instruction == spec.instruction]


def infer_task_spec(name: str, path: str | Path, description: str = "") -> TaskSpec:
    """A new classification task from a data file: its instruction and labels come from the data."""
    path = Path(path)
    problems: list[tuple[int, str]] = []
    instructions: dict[str, int] = {}
    labels: set[str] = set()
    for n, obj in json_objects(_read_lines(path), problems):
        if not all(isinstance(obj.get(f), str) for f in FIELDS):
            problems.append((n, "needs string fields instruction, input and output"))
            continue
        instructions.setdefault(obj["instruction"], n)
        labels.add(obj["output"])
    if problems:
        raise DataError(str(path), problems)
    if len(instructions) != 1:
        found = ", ".join(f"{i!r} (line {n})" for i, n in instructions.items()) or "none"
        raise DataError(str(path), [(0, f"a new task's file must use one instruction; found {found}")])
    return TaskSpec(
        name=name,
        instruction=next(iter(instructions)),
        kind=SEQUENCE_CLASSIFICATION,
        labels=tuple(sorted(labels)),
        description=description or f"custom classification task from {path.name}",
    )


def shuffle_records(records: list[Record], seed: int) -> list[Record]:
    """A shuffled copy; the same seed gives the same order."""
    out = list(records)
    random.Random(seed).shuffle(out)
    return out


def data_hash(records: Iterable[Record]) -> str:
    """sha256 of the records' content, independent of file formatting."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
