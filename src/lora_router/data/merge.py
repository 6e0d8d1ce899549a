"""Several instruction-format files as one training set: exact duplicates folded, conflicting labels refused.

Corrections from review arrive as their own file beside the data a task was
first trained on (``lora-router train --data bundled --data labels.jsonl``).
The same question may then appear twice: with the same output it is one
example (folded, so it does not weigh double); with another output two people
disagree, and training on both would teach noise. A conflict names both lines
(``file:line``) and is refused, unless ``prefer_last``: the later file's label
wins (a correction given after the data it corrects).

What each file gave (``DataFile``) goes into the adapter's ``task.json``, so
the adapter says which files, and how many lines of each, it was trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TaskSpec
from ..errors import DataError, LabelConflictError
from .bundled import bundled_path
from .records import Record, _read_lines, check_lines, records_for

BUNDLED = "bundled"  # the name that stands for the task's bundled train split among data files


@dataclass(frozen=True)
class Conflict:
    """One input given two different outputs: the line kept first and the line that disagrees."""

    first: Record
    second: Record

    def describe(self) -> str:
        a, b = self.first, self.second
        return (f"{a.source}:{a.line} says {_shown(a.output)} but {b.source}:{b.line} says {_shown(b.output)} "
                f"for input {a.input!r}")


@dataclass
class DataFile:
    """What one data file gave a merged training set."""

    file: str  # a path, or "bundled"
    lines: int  # records of the task in the file
    sha256: str  # of the file's bytes, so a changed file is noticed
    used: int = 0  # records kept (duplicates folded, conflicts resolved); set again after a hold-out

    def to_dict(self) -> dict:
        return {"file": self.file, "lines": self.lines, "used": self.used, "sha256": self.sha256}


@dataclass
class MergedData:
    records: list[Record]
    files: list[DataFile]
    duplicates: int = 0  # exact repeats folded into one record
    resolved: list[Conflict] = field(default_factory=list)  # conflicts prefer_last settled

    def count_used(self, kept: Sequence[Record]) -> None:
        """Set each file's ``used`` to how many of ``kept`` (e.g. the training part of a split) came from it."""
        for f in self.files:
            f.used = sum(r.source == f.file for r in kept)


def merge_data(sources: Sequence[str | Path], spec: TaskSpec, *, prefer_last: bool = False) -> MergedData:
    """The task's records of every file in ``sources`` (``"bundled"``: its bundled train split), merged in order.

    Raises ``DataError`` for a bad line or a file with no record of the task,
    and ``LabelConflictError`` naming both lines of every conflict unless ``prefer_last``.
    """
    if not sources:
        raise DataError("--data", [(0, "no data files given")])
    files: list[DataFile] = []
    kept: dict[tuple[str, str], Record] = {}
    conflicts: list[Conflict] = []
    duplicates = 0
    for source in sources:
        records, data_file = _read(source, spec)
        files.append(data_file)
        for r in records:
            key = (r.instruction, r.input)
            have = kept.get(key)
            if have is None:
                kept[key] = r
            elif have.output == r.output:
                duplicates += 1
            else:
                conflicts.append(Conflict(have, r))
                if prefer_last:
                    kept[key] = r  # keeps the first one's place in the order
    if conflicts and not prefer_last:
        raise LabelConflictError([c.describe() for c in conflicts])
    merged = MergedData(list(kept.values()), files, duplicates, conflicts)
    merged.count_used(merged.records)
    return merged


def _read(source: str | Path, spec: TaskSpec) -> tuple[list[Record], DataFile]:
    name = str(source)
    path = bundled_path(spec.name, "train") if name == BUNDLED else Path(source)
    records, problems = check_lines(_read_lines(path), extra_tasks=[spec], source=name, keep_conflicts=True)
    if problems:
        raise DataError(name, problems)
    records = records_for(records, spec)
    if not records:
        raise DataError(name, [(0, f"no records with instruction {spec.instruction!r} ({spec.name})")])
    return records, DataFile(name, len(records), hashlib.sha256(path.read_bytes()).hexdigest())


def _shown(output) -> str:
    return repr(list(output)) if isinstance(output, tuple) else repr(output)

