"""The datasets that ship with lora-router, hand-written to docs/labelling-guide.md.

Each task has ``bundled/<task>/train.jsonl`` and ``test.jsonl`` (a fixed split
that training never sees); question_answer also has ``knowledge_base.jsonl``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import LoraRouterError
from .records import Record, read_records

SPLITS = ("train", "test")


def bundled_dir() -> Path:
    return Path(str(resources.files("lora_router.data") / "bundled"))


def bundled_tasks() -> list[str]:
    return sorted(p.name for p in bundled_dir().iterdir() if (p / "train.jsonl").is_file())


def bundled_path(task: str, split: str) -> Path:
    """Path of a bundled split; an error names the tasks and splits there are."""
    if split not in SPLITS:
        raise LoraRouterError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    path = bundled_dir() / task / f"{split}.jsonl"
    if not path.is_file():
        raise LoraRouterError(
            f"no bundled data for task {task!r}; bundled: {', '.join(bundled_tasks())}. "
            "Pass your own file with --data FILE."
        )
    return path


def load_bundled(task: str, split: str) -> list[Record]:
    return read_records(bundled_path(task, split))


def bundled_knowledge_base() -> Path:
    return bundled_dir() / "question_answer" / "knowledge_base.jsonl"
