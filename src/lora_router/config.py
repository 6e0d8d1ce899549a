"""Settings as dataclasses that check themselves and round-trip through JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

SEQUENCE_CLASSIFICATION = "sequence_classification"
SPAN_EXTRACTION = "span_extraction"
PAIR_RANKING = "pair_ranking"
TASK_KINDS = (SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, PAIR_RANKING)

_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
# Attribute names of PeftModel/LoraModel that PEFT refuses as adapter names
# (PEFT raises "attribute 'type' already exists"); task name = adapter name.
RESERVED_TASK_NAMES = frozenset(
    {"type", "base_model", "model", "default", "forward", "config", "peft_config", "active_adapter",
     "modules_to_save", "training", "device", "dtype", "all"}
)


class JsonSettings:
    """The JSON round trip of every settings dataclass: ``to_dict``/``from_dict``, ``to_json``/``from_json``, files.

    Unknown fields are refused with the valid ones named, so a typo in a
    settings file or a Ray config is an error, not a default.
    """

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", "utf-8")

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(json.loads(Path(path).read_text("utf-8")))


@dataclass
class LoraSettings(JsonSettings):
    """The LoRA adapter put on the base encoder (the original tool's defaults)."""

    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling factor."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    target_modules: tuple[str, ...] = field(
        default=("query", "value"), metadata={"help": "Modules of the encoder that get LoRA, comma-separated."}
    )
    layers: tuple[int, ...] = field(
        default=(), metadata={"help": "Encoder layers that get LoRA, e.g. 6-11 (empty: all): with every task on the "
                                      "same upper layers, `export --layout trunk` runs the lower layers once per "
                                      "question for the whole chain."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            self.target_modules = tuple(m.strip() for m in self.target_modules.split(",") if m.strip())
        self.target_modules = tuple(self.target_modules)
        self.layers = parse_layers(self.layers)
        if self.r < 1:
            raise ConfigError(f"lora r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("target modules must name at least one module, e.g. query,value")


def parse_layers(value: str | int | tuple | list | None) -> tuple[int, ...]:
    """``"6-11"``, ``"0,2,4"``, ``"all"``, a list of ints -> sorted layer indices (``()`` = all layers)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return ()
    parts = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else list(value)
    out: set[int] = set()
    for part in parts:
        text = str(part).strip()
        try:
            if isinstance(part, str) and "-" in text:
                low, high = (int(x) for x in text.split("-", 1))
                if low > high:
                    raise ValueError
                out.update(range(low, high + 1))
            else:
                out.add(int(text))
        except ValueError:
            raise ConfigError(f"lora layers {value!r} are not valid; give layer numbers like 6-11 or 0,2,4 "
                              "(counted from 0), or all") from None
    if any(i < 0 for i in out):
        raise ConfigError(f"lora layers {value!r} are not valid: layers are counted from 0")
    return tuple(sorted(out))


@dataclass
class TrainSettings(JsonSettings):
    """How one adapter is trained (the original tool's defaults)."""

    epochs: int = field(default=5, metadata={"help": "Passes over the training split."})
    batch_size: int = field(default=8, metadata={"help": "Examples per step."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW peak learning rate."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warm-up steps."})
    max_length: int = field(default=128, metadata={"help": "Longest input in tokens."})
    seed: int = field(default=42, metadata={"help": "Seed of shuffling and initialisation."})
    dynamic_padding: bool = field(
        default=True, metadata={"help": "Pad each batch to its longest input, not to max length (faster)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    patience: int = field(
        default=3, metadata={"help": "Stop when the held-out score has not improved for this many epochs "
                                     "(0: run every epoch); the best epoch is kept."})
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch inputs of similar length together, the batches in random order "
                                        "(faster: less padding)."})

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning rate must be in (0, 1), got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup steps must be >= 0, got {self.warmup_steps}")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"max length must be in [8, 512], got {self.max_length}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0 epochs (0: no early stopping), got {self.patience}")


@dataclass
class TaskSpec(JsonSettings):
    """What a task is: its name, the instruction that selects it, its kind and labels."""

    name: str
    instruction: str
    kind: str
    labels: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if not _TASK_NAME.match(self.name or ""):
            raise ConfigError(
                f"task name {self.name!r} is not valid; use lower-case letters, digits and '_' "
                "(2-64 characters, starting with a letter)"
            )
        if self.name in RESERVED_TASK_NAMES:
            raise ConfigError(
                f"task name {self.name!r} is reserved (PEFT uses it as an attribute); pick another"
            )
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task kind {self.kind!r} is not valid; valid: {', '.join(TASK_KINDS)}")
        if not self.instruction or not self.instruction.strip():
            raise ConfigError(f"task {self.name!r} needs an instruction string")
        if self.kind == SEQUENCE_CLASSIFICATION and len(self.labels) < 2:
            raise ConfigError(f"classification task {self.name!r} needs at least 2 labels")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"task {self.name!r} has duplicate labels: {list(self.labels)}")

    @property
    def num_outputs(self) -> int:
        """Width of the task's head."""
        if self.kind == SPAN_EXTRACTION:
            return len(BIO_LABELS)
        if self.kind == PAIR_RANKING:
            return 1
        return len(self.labels)


# Token labels of span extraction: B(egin) and I(nside) of a span, O(utside).
BIO_LABELS = ("O", "B", "I")
