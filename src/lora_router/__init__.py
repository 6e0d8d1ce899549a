"""lora-router: one bert-base-chinese encoder, a LoRA adapter per task, a router.

Heavy pieces (torch, transformers, peft) are imported only when used, so the
ONNX runtime (``lora_router.backends.onnx``) runs on a machine without PyTorch.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Router": ("lora_router.backends.torch_peft", "Router"),
    "PeftLoraTrainer": ("lora_router.training.legacy", "PeftLoraTrainer"),
    "PeftLoraInference": ("lora_router.legacy", "PeftLoraInference"),
    "AdapterHub": ("lora_router.adapters", "AdapterHub"),
    "LoraSettings": ("lora_router.config", "LoraSettings"),
    "TrainSettings": ("lora_router.config", "TrainSettings"),
    "TaskSpec": ("lora_router.config", "TaskSpec"),
    "train": ("lora_router.training", "train"),
    "OnnxRouter": ("lora_router.backends.onnx", "OnnxRouter"),
    "PredictorOptions": ("lora_router.core.options", "PredictorOptions"),
    "TaskPredictor": ("lora_router.core.predictor", "TaskPredictor"),
    "Client": ("lora_router.client", "Client"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lora_router' has no attribute {name!r}")


__all__ = list(_LAZY)
