"""``Backend``: what a predictor needs from a model runtime, and nothing more.

A backend loads a set of tasks and gives head logits for encoded inputs (as
text-embeddings-inference's ``backends/core`` gives ``embed``/``predict`` over
typed batches). Everything after the forward pass (results, temperature,
knowledge-base answers, the chain) is ``core.TaskPredictor``'s, once, for
every backend: ``backends.torch_peft`` (PyTorch + PEFT) and ``backends.onnx``
(onnxruntime, four layouts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..adapters.manifest import TaskManifest
from ..config import TaskSpec
from ..encoding import Encoded, TextEncoder


@runtime_checkable
class Backend(Protocol):
    """The loaded tasks of one model source and their forward pass."""

    specs: dict[str, TaskSpec]  # the loaded tasks, in order
    encoders: dict[str, TextEncoder]  # per task: how its inputs are tokenised
    manifests: dict[str, TaskManifest]  # per task: its task.json (training settings, calibration, knowledge base)
    source: str  # where the models come from, for messages ("export DIR", "hub DIR")
    chain_path: Path | None  # the chain this source ships with; None: the built-in chain

    # Optional: ``cascades: dict[str, core.cascade.CascadeStep]``, the n-gram first pass per classification task
    # (an ONNX export made with --cascade, opened with PredictorOptions.cascade); a backend without it has none.

    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits of ``task`` for one padded batch of encoded inputs."""
        ...

    def answerer(self, task: str, knowledge_base: Path | None):
        """The knowledge-base ``Answerer`` of a pair-ranking task (``knowledge_base`` overrides the shipped one)."""
        ...


@runtime_checkable
class MixedBackend(Backend, Protocol):
    """A backend that can run rows of several tasks in one forward pass (the one-call layouts)."""

    runs_mixed: bool  # whether this instance does (an onnx export opened in the merged layout does not)
    speculate_by_default: bool  # whether ask runs the chain's steps in one call unless told otherwise

    def mixed_logits(self, rows: Sequence[tuple[str, Encoded]]) -> list[np.ndarray]:
        """Head logits per ``(task, input)`` row, all rows in one call."""
        ...
