"""``TaskManifest``: an adapter's ``task.json``, typed.

What the task is (its ``TaskSpec``), the base it was trained on, the LoRA and
training settings, how its text was encoded, the data (hashes and counts),
the metrics of its best epoch, its calibration and baseline, the package
versions and time, and the adapter's own version number in its hub. ``data``
holds, when trained on files, each file's name, its lines of the task and how
many of them training used (``data["files"]``). ``to_dict`` writes exactly the document ``from_dict`` reads; keys this
version does not know are kept as they were (``extra``), so a newer tool's
fields survive a round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import TaskSpec
from ..errors import ConfigError

TASK_FORMAT = 1


@dataclass
class TaskManifest:
    task: TaskSpec
    base_model: dict[str, Any]  # name, fingerprint, hidden_size, random
    lora: dict[str, Any] = field(default_factory=dict)  # LoraSettings
    training: dict[str, Any] = field(default_factory=dict)  # TrainSettings
    encoding: dict[str, Any] | None = None  # None: saved before encodings were recorded (no lower-casing)
    data: dict[str, Any] = field(default_factory=dict)  # source, hashes and sizes of the splits
    metrics: dict[str, Any] = field(default_factory=dict)  # of the best epoch, on the test split
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    early_stop: dict[str, Any] | None = None  # when training stopped before its last epoch: after which, and why
    train_samples_per_second: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    log: str = ""
    knowledge_base: dict[str, Any] | None = None  # question_answer: the file and the answer settings
    calibration: dict[str, Any] | None = None  # classification: the fitted temperature and ECE
    baseline: dict[str, Any] | None = None
    adapter_sha256: str | None = None  # of the adapter's weights, config and head: which adapter decided
    version: int = 1  # the adapter's number in its hub (adapters/hub.py); saved before versions: 1
    format: int = TASK_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def max_length(self) -> int:
        return int(self.training["max_length"])

    @property
    def temperature(self) -> float:
        """What a classification task's logits are divided by: fitted at training, 1.0 before that."""
        return float((self.calibration or {}).get("temperature", 1.0))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "task.json") -> TaskManifest:
        if not isinstance(data, dict) or not isinstance(data.get("task"), dict):
            raise ConfigError(f"{where} is not an adapter's task.json (no 'task'); retrain the adapter")
        version = data.get("format", TASK_FORMAT)
        if not isinstance(version, int) or version > TASK_FORMAT:
            raise ConfigError(f"{where} has format {version!r}, newer than this lora-router reads "
                              f"(format {TASK_FORMAT}); upgrade: pip install -U lora-router")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["task"] = TaskSpec.from_dict(data["task"])
        values.setdefault("base_model", {})
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "task": self.task.to_dict()}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("format", "task", "extra") or (value is None and f.name in _OPTIONAL):
                continue
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def load(cls, path: str | Path) -> TaskManifest:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is damaged ({exc}); retrain the adapter or export again") from None
        return cls.from_dict(data, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", "utf-8")


# Written only when they hold something (an adapter of another kind has none).
_OPTIONAL = ("encoding", "knowledge_base", "calibration", "baseline", "adapter_sha256", "early_stop")
