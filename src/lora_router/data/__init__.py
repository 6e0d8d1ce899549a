"""Instruction-format data: reading, validation, shuffling, the bundled datasets."""

from .bundled import bundled_knowledge_base, bundled_path, bundled_tasks, load_bundled
from .records import (
    Record,
    check_lines,
    data_hash,
    infer_task_spec,
    read_records,
    records_for,
    shuffle_records,
)

__all__ = [
    "Record",
    "bundled_knowledge_base",
    "bundled_path",
    "bundled_tasks",
    "check_lines",
    "data_hash",
    "infer_task_spec",
    "load_bundled",
    "read_records",
    "records_for",
    "shuffle_records",
]
