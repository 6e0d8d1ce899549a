"""The original tool's training API, kept for its users.

``PeftLoraTrainer(bert_model_path, lora_path, task_type="question_classifier",
lora_r=16, lora_alpha=32, lora_dropout=0.1).train(epochs=5, batch_size=8,
learning_rate=2e-4)`` trains on the bundled data into the hub ``lora_path``.
"""

from __future__ import annotations

from pathlib import Path

from ..adapters import AdapterHub
from ..config import LoraSettings, TrainSettings
from ..tasks import get_task
from .trainer import train


class PeftLoraTrainer:
    def __init__(self, bert_model_path: str, lora_path: str | Path, task_type: str = "question_classifier",
                 lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.1,
                 target_modules: tuple[str, ...] = ("query", "value")):
        self.spec = get_task(task_type)
        self.base_model = str(bert_model_path)
        self.hub = AdapterHub(lora_path)
        self.lora = LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=target_modules)

    def train(self, epochs: int = 5, batch_size: int = 8, learning_rate: float = 2e-4, warmup_steps: int = 50,
              max_length: int = 128, seed: int = 42, data: str | Path | None = None, progress: bool = True) -> dict:
        """Train and save the adapter; returns its ``task.json`` (metrics included)."""
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                 warmup_steps=warmup_steps, max_length=max_length, seed=seed)
        return train(self.spec, base_model=self.base_model, hub=self.hub, data=data, lora=self.lora,
                     settings=settings, progress=progress).to_dict()
