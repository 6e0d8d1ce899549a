"""A task's train and test splits: the bundled ones, or a user file's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import TaskSpec
from ..errors import DataError
from .bundled import load_bundled
from .records import Record, read_records, records_for, shuffle_records


@dataclass
class TrainData:
    train: list[Record]
    test: list[Record]
    source: str


def split_data(spec: TaskSpec, data: str | Path | None, test_data: str | Path | None, seed: int) -> TrainData:
    """Bundled train/test splits, or a user file (its own test file, or a seeded 20% hold-out)."""
    if data is None:
        return TrainData(load_bundled(spec.name, "train"), load_bundled(spec.name, "test"), "bundled")
    records = records_for(read_records(data, extra_tasks=[spec]), spec)
    if not records:
        raise DataError(str(data), [(0, f"no records with instruction {spec.instruction!r} ({spec.name})")])
    if test_data is not None:
        test = records_for(read_records(test_data, extra_tasks=[spec]), spec)
        return TrainData(records, test, str(data))
    shuffled = shuffle_records(records, seed)
    n_test = max(1, len(shuffled) // 5)
    return TrainData(shuffled[n_test:], shuffled[:n_test], str(data))
