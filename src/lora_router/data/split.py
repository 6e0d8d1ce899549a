"""A task's train and test splits: the bundled ones, or user files merged (data/merge.py) and held out."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TaskSpec
from .bundled import load_bundled
from .merge import BUNDLED, merge_data
from .records import Record, read_records, records_for, shuffle_records

DataSources = str | Path | Sequence[str | Path] | None


@dataclass
class TrainData:
    train: list[Record]
    test: list[Record]
    source: str  # "bundled", one file's path, or the files joined by " + "
    files: list[dict] = field(default_factory=list)  # DataFile.to_dict() of each file: lines read, lines trained on
    duplicates: int = 0
    conflicts_resolved: int = 0


def data_sources(data: DataSources) -> list[str]:
    """``--data`` as a list of names: None is the bundled data, one path is a list of one."""
    if data is None:
        return [BUNDLED]
    if isinstance(data, (str, Path)):
        return [str(data)]
    return [str(d) for d in data]


def split_data(spec: TaskSpec, data: DataSources, test_data: str | Path | None, seed: int, *,
               prefer_last: bool = False) -> TrainData:
    """The training and test records of ``spec`` from ``data`` (one file, several, or ``"bundled"`` among them).

    The test split is ``test_data`` when given; else the bundled test split
    when the bundled data is among ``data``; else a seeded 20% hold-out of the merged records.
    """
    sources = data_sources(data)
    merged = merge_data(sources, spec, prefer_last=prefer_last)
    train = merged.records
    if test_data is not None:
        test = records_for(read_records(test_data, extra_tasks=[spec]), spec)
    elif BUNDLED in sources:
        test = load_bundled(spec.name, "test")
    else:
        shuffled = shuffle_records(train, seed)
        n_test = max(1, len(shuffled) // 5)
        train, test = shuffled[n_test:], shuffled[:n_test]
    merged.count_used(train)
    _warn_on_leaks(train, test)
    return TrainData(train, test, " + ".join(sources), [f.to_dict() for f in merged.files],
                     merged.duplicates, len(merged.resolved))


def _warn_on_leaks(train: list[Record], test: list[Record]) -> None:
    """A test question also trained on makes the test figures optimistic: say so (e.g. a correction of a test line)."""
    seen = {r.input for r in train}
    leaked = [r for r in test if r.input in seen]
    if leaked and leaked != test:  # all of them: test_data is the training file itself, on purpose
        warnings.warn(f"{len(leaked)} of {len(test)} test questions are also in the training data "
                      f"(e.g. {leaked[0].input!r}); the test figures will be optimistic", stacklevel=3)
