"""``PredictorOptions``: how a predictor answers, one object for every backend and every caller.

The CLI, the service's ``ModelSource``, the Ray app builder and both backends
take this one object whole (as PEFT's configs and Ray Serve's typed app
builders travel), so an option is declared, checked and serialised once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import JsonSettings
from ..errors import ConfigError

LAYOUTS = ("trunk", "multi", "shared", "merged")
PRECISIONS = ("int8", "fp32")


@dataclass
class PredictorOptions(JsonSettings):
    """What a predictor loads and how it answers; every field has a default that suits most users."""

    knowledge_base: str | None = field(
        default=None, metadata={"help": "knowledge-base JSONL for question_answer [default: the one trained with]"})
    thresholds: dict[str, float] = field(
        default_factory=dict, metadata={"help": "TASK=VALUE: confidence a chain step needs (below: uncertain)"})
    chain: str | None = field(
        default=None, metadata={"help": "Run this chain spec (JSON) instead of the one shipped with the models."})
    tasks: list[str] | None = field(default=None, metadata={"help": "tasks to load [default: all]"})
    device: str = field(default="cpu", metadata={"help": "Where the models run: cpu or cuda."})
    precision: str | None = field(default=None, metadata={
        "help": "Export precision [default: int8 when exported]. Static int8 (export's default) and fp32 answers "
                "never depend on what else is in the batch; an export made with --int8-scheme dynamic moves int8 "
                "scores slightly with it."})
    layout: str | None = field(default=None, metadata={
        "help": "Export layout: trunk, multi, shared or merged [default: the first of these the export has]."})
    threads: int | None = field(default=None, metadata={"help": "ONNX: threads per session [default: physical cores]"})
    speculate: bool | None = field(
        default=None, metadata={"help": "ONNX one-call layouts: ask runs every step in one call "
                                        "[default: on with trunk, off with multi]"})
    verify: bool = field(default=True, metadata={"help": "ONNX: check every file against the manifest's sha256"})
    spinning: bool = field(default=False, metadata={"help": "ONNX: let idle onnxruntime threads spin"})
    cascade: bool = field(default=False, metadata={
        "help": "ONNX exports made with --cascade: a character n-gram model decides each classification step "
                "when it is sure (the threshold fitted at export); the adapter runs for the rest."})

    def __post_init__(self) -> None:
        for name in ("knowledge_base", "chain"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(Path(value).expanduser()))
        self.thresholds = {str(k): _threshold(k, v) for k, v in dict(self.thresholds or {}).items()}
        if self.tasks is not None:
            self.tasks = [self.tasks] if isinstance(self.tasks, str) else list(self.tasks)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}; valid: {', '.join(LAYOUTS)}")
        # device and threads are checked by the backend that uses them: it knows what this machine has

    def replace(self, **changes) -> PredictorOptions:
        """A copy with ``changes`` (None values leave a field as it is), checked again."""
        return type(self).from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


def _threshold(task, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold for {task!r} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold for {task!r} must be in [0, 1], got {value}")
    return value
