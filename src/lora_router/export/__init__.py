"""Export: merge each adapter -> ONNX (Optimum) -> int8 -> parity gate; or one shared encoder.

``export_hub`` needs the ``train`` extra (torch, transformers, peft, optimum);
the folder it writes runs with ``lora_router.backends.onnx.OnnxRouter`` alone.
Importing this package imports none of them.
"""

from __future__ import annotations

__all__ = ["check_parity", "export_hub", "task_parity"]


def __getattr__(name: str):
    if name == "export_hub":
        from .folder import export_hub

        return export_hub
    if name in ("check_parity", "task_parity"):
        from . import parity

        return getattr(parity, name)
    raise AttributeError(f"module 'lora_router.export' has no attribute {name!r}")
