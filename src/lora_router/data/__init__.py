"""Instruction-format data: reading, validation, shuffling, splitting, the bundled datasets."""

from .bundled import bundled_knowledge_base, bundled_path, bundled_tasks, load_bundled
from .merge import BUNDLED, Conflict, DataFile, MergedData, merge_data
from .records import Record, check_lines, data_hash, infer_task_spec, read_records, records_for, shuffle_records
from .split import DataSources, TrainData, data_sources, split_data

__all__ = ["BUNDLED", "Conflict", "DataFile", "DataSources", "MergedData", "Record", "TrainData",
           "bundled_knowledge_base", "bundled_path", "bundled_tasks", "check_lines", "data_hash", "data_sources",
           "infer_task_spec", "load_bundled", "merge_data", "read_records", "records_for", "shuffle_records",
           "split_data"]
