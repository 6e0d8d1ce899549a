"""Torch-free predictor over an export folder: onnxruntime + tokenizers + numpy.

Nothing under ``lora_router.backends.onnx`` may import torch, transformers, peft,
optimum or scikit-learn (tests/test_runtime.py checks it in a fresh process).
"""

from .backend import OnnxBackend, OnnxRouter
from .export_layout import EXPORT_KIND, FORMAT_VERSION, LAYOUTS, MANIFEST_FILE, PRECISIONS, read_manifest, verify_files
from .sessions import physical_cores, providers_for, session_options

__all__ = [
    "EXPORT_KIND",
    "FORMAT_VERSION",
    "LAYOUTS",
    "MANIFEST_FILE",
    "PRECISIONS",
    "OnnxBackend",
    "OnnxRouter",
    "physical_cores",
    "providers_for",
    "read_manifest",
    "session_options",
    "verify_files",
]
