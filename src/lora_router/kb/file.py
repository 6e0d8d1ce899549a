"""The knowledge-base file: JSONL entries ``{"id", "question" | "questions", "answer"}``.

One entry per line; ``question`` is one phrasing, ``questions`` a list of
phrasings of the same question. Validation names every bad line, like
``data/records.py`` does for instruction data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..data.records import field_problem, json_objects
from ..errors import DataError
from .index import normalize_text


@dataclass(frozen=True)
class Entry:
    """One knowledge-base entry: its id, every phrasing of its question, the answer."""

    id: str
    questions: tuple[str, ...]
    answer: str
    line: int = 0


@dataclass(frozen=True)
class KnowledgeBase:
    """A validated knowledge-base file."""

    path: Path
    entries: tuple[Entry, ...]
    sha256: str

    def by_answer(self) -> dict[str, Entry]:
        """Entries keyed by answer text (instruction data names an entry by its answer)."""
        out: dict[str, Entry] = {}
        for e in self.entries:
            out.setdefault(e.answer, e)
        return out


def _questions(obj: dict) -> tuple[list[str] | None, str | None]:
    """The phrasings of an entry object, or a problem."""
    if "question" in obj and "questions" in obj:
        return None, "give either 'question' (one string) or 'questions' (a list), not both"
    if "question" in obj:
        q = obj["question"]
        if not isinstance(q, str):
            return None, f"field 'question' must be a string, got {type(q).__name__}"
        items = [q]
    elif "questions" in obj:
        items = obj["questions"]
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            return None, "field 'questions' must be a list of strings"
        if not items:
            return None, "field 'questions' is an empty list; give at least one phrasing"
    else:
        return None, "missing field 'question' (a string) or 'questions' (a list of strings)"
    if any(not x.strip() for x in items):
        return None, "a question is empty or only whitespace"
    return items, None


def check_kb_lines(lines: Iterable[str]) -> tuple[list[Entry], list[tuple[int, str]]]:
    """Validate knowledge-base JSONL lines; return the good entries and every ``(line, problem)``."""
    entries: list[Entry] = []
    problems: list[tuple[int, str]] = []
    ids: dict[str, int] = {}
    phrasings: dict[str, tuple[int, str]] = {}  # normalised phrasing -> (line, entry id)
    for n, obj in json_objects(lines, problems):
        problem = field_problem(obj, ("id", "answer"), strings=("id", "answer"))
        if problem:
            problems.append((n, problem))
            continue
        entry_id, answer = obj["id"].strip(), obj["answer"]
        if not entry_id:
            problems.append((n, "field 'id' is empty"))
            continue
        if not answer.strip():
            problems.append((n, f"entry {entry_id!r} has an empty answer"))
            continue
        questions, problem = _questions(obj)
        if problem:
            problems.append((n, f"entry {entry_id!r}: {problem}"))
            continue
        if entry_id in ids:
            problems.append((n, f"duplicate id {entry_id!r} (first on line {ids[entry_id]}); ids must be unique"))
            continue
        clash = None
        own: set[str] = set()
        for q in questions:  # type: ignore[union-attr]
            key = normalize_text(q).strip()
            if key in own:
                clash = f"entry {entry_id!r} lists the phrasing {q!r} twice"
            elif key in phrasings:
                line, other = phrasings[key]
                clash = (f"phrasing {q!r} is also a phrasing of entry {other!r} (line {line}); "
                         "one question must lead to one answer")
            if clash:
                break
            own.add(key)
        if clash:
            problems.append((n, clash))
            continue
        ids[entry_id] = n
        phrasings.update({k: (n, entry_id) for k in own})
        entries.append(Entry(entry_id, tuple(questions), answer, n))  # type: ignore[arg-type]
    return entries, problems


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), [(0, f"cannot read knowledge base: {exc.strerror or exc}")]) from None


def _lines(path: Path, data: bytes) -> list[str]:
    try:
        # Split on "\n" only: U+2028 inside a string is a valid JSON character.
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), [(0, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None


def check_knowledge_base(path: str | Path) -> list[tuple[int, str]]:
    """Every ``(line, problem)`` of a knowledge-base file (empty when it is valid)."""
    try:
        read_knowledge_base(path)
    except DataError as exc:
        return exc.problems
    return []


def read_knowledge_base(path: str | Path) -> KnowledgeBase:
    """Read and validate a knowledge-base file; raise ``DataError`` naming every bad line."""
    path = Path(path)
    data = _read(path)
    entries, problems = check_kb_lines(_lines(path, data))
    if problems:
        raise DataError(str(path), problems)
    if not entries:
        raise DataError(str(path), [(0, "no entries in file; each line is {\"id\", \"questions\": [...], \"answer\"}")])
    return KnowledgeBase(path, tuple(entries), hashlib.sha256(data).hexdigest())


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(_read(Path(path))).hexdigest()
