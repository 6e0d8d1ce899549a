"""``ModelSource``: where a predictor's models come from, and the one function that opens a predictor.

An export folder (``onnx``: the onnxruntime backend, no torch) or, for
development, a hub and a base (the PyTorch backend), with the
``PredictorOptions`` that say how to answer. The CLI, the service (which
sends it as JSON to uvicorn workers) and Ray replicas all open predictors
through ``ModelSource.load``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import JsonSettings
from ..core.options import PredictorOptions
from ..errors import ConfigError

BASE_ENV = "LORA_ROUTER_BASE_MODEL"


@dataclass
class ModelSource(JsonSettings):
    """An export folder (``onnx``) or a hub (``hub``, with ``base_model``), and how to answer from it."""

    onnx: str | None = None
    hub: str | None = None
    base_model: str | None = None
    options: PredictorOptions = field(default_factory=PredictorOptions)

    def __post_init__(self) -> None:
        if (self.onnx is None) == (self.hub is None):
            raise ConfigError("serve needs exactly one model source: --onnx DIR (an export) or --hub DIR "
                              "(a hub, with the PyTorch router, for development)")
        for name in ("onnx", "hub"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(Path(value).expanduser()))
        if isinstance(self.options, dict):
            self.options = PredictorOptions.from_dict(self.options)

    @property
    def kind(self) -> str:
        return "onnx" if self.onnx else "hub"

    @property
    def path(self) -> str:
        return self.onnx or self.hub or ""

    def load(self):
        """A fresh predictor from this source (``OnnxRouter`` or ``Router``); raises the library's errors."""
        if self.onnx:
            from .onnx import OnnxRouter

            return OnnxRouter(self.onnx, options=self.options)
        from ..modeling.base import DEFAULT_BASE_MODEL
        from .torch_peft import Router

        return Router(self.base_model or os.environ.get(BASE_ENV, DEFAULT_BASE_MODEL), self.hub, options=self.options)
