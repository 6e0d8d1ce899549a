"""The original tool's inference API, kept for its users.

``PeftLoraInference(bert_model_path, lora_path).predict("问题场景分类", "数据清洗流程是什么？")``
returns the result dict of the task the instruction string names.
"""

from __future__ import annotations

from pathlib import Path

from .backends.torch_peft import Router
from .tasks import task_for_instruction


class PeftLoraInference:
    """Answer instruction-format requests with every adapter in ``lora_path``."""

    def __init__(self, bert_model_path: str, lora_path: str | Path, **router_options):
        self.router = Router(bert_model_path, lora_path, **router_options)

    def predict(self, instruction: str, text: str) -> dict:
        """The result of the task whose instruction is ``instruction``."""
        return self.router.predict(task_for_instruction(instruction).name, text)

    def ask(self, text: str) -> dict:
        return self.router.ask(text)
