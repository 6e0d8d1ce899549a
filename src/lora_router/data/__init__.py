"""Instruction-format data: reading, validation, shuffling, splitting, the bundled datasets."""

from .bundled import bundled_knowledge_base, bundled_path, bundled_tasks, load_bundled
from .records import Record, check_lines, data_hash, infer_task_spec, read_records, records_for, shuffle_records
from .split import TrainData, split_data

__all__ = ["Record", "TrainData", "bundled_knowledge_base", "bundled_path", "bundled_tasks", "check_lines",
           "data_hash", "infer_task_spec", "load_bundled", "read_records", "records_for", "shuffle_records",
           "split_data"]
