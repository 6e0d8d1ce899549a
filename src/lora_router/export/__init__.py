"""Export: merge each adapter -> ONNX (Optimum) -> int8 -> parity gate; or one shared encoder.

``export_hub`` needs the ``train`` extra (torch, transformers, peft, optimum);
the folder it writes runs with ``lora_router.backends.onnx.OnnxRouter`` alone.
Importing this package imports none of them.
"""

from __future__ import annotations

_LAZY = {"export_hub": ".folder", "check_parity": ".parity", "task_parity": ".parity"}
__all__ = ["check_parity", "export_hub", "task_parity"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'lora_router.export' has no attribute {name!r}")
