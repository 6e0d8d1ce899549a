"""The ways of answering that the benchmark compares, each a ``core.TaskPredictor``.

Every contender answers ``predict_batch(task, texts)`` (one task), ``ask(text)``
(the chain) and ``predict_mixed(items)`` (a batch of ``(task, text)`` requests
for several tasks), and makes its results from logits in the core's one place
(``TaskPredictor.result``, temperature included): only the backends differ.
torch and onnxruntime are imported inside the functions, so a fresh process
measuring an ONNX contender never imports torch.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..core.chain import Chain
from ..core.options import PredictorOptions
from ..core.predictor import TaskPredictor

# key -> what the table calls it; the order of the tables and the chart.
CONTENDERS = {
    "a1": "(a1) one PeftModel per task, each with its own base",
    "a2": "(a2) PeftModel loaded when the step needs it",
    "b": "(b) Router, set_adapter per step",
    "c": "(c) PyTorch mixed batch (adapter_names)",
    "d": "(d) ONNX fp32",
    "e": "(e) ONNX int8",
    "f": "(f) ONNX int8, shared weights",
    "g": "(g) ONNX int8, the chain in one call",
    "h": "(h) ONNX int8, one call, shared trunk",
}
TORCH_KEYS = ("a1", "a2", "b", "c")
ONNX_KEYS = ("d", "e", "f", "g", "h")
# (layout, precision) of OnnxRouter for each ONNX contender.
ONNX_VARIANTS = {"d": ("merged", "fp32"), "e": ("merged", "int8"), "f": ("shared", "int8"), "g": ("multi", "int8"),
                 "h": ("trunk", "int8")}
# The one-call layouts (multi, trunk): ask runs every chain step in one onnxruntime call.
ONE_CALL_KEYS = ("g", "h")
# (h) needs adapters on the upper layers only: its own hub (fixture.trunk_hub), exported with layout trunk.
TRUNK_KEYS = ("h",)


class OnePerTask:
    """(a1) and (a2)'s backend: the original tool's unit per task, a base copy of its own with the task's
    PeftModel and head (a ``TorchPeftBackend`` of one task); ``units`` holds the units loaded."""

    chain_path = None

    def __init__(self, load, tasks: Sequence[str]):
        from ..tasks import get_task

        self.load = load
        self.specs = {t: get_task(t) for t in tasks}  # known before any unit is loaded: (a2) loads per step
        self.units: dict = {}
        self.source = "a base copy per task"

    @property
    def encoders(self) -> dict:
        return {t: unit.encoders[t] for t, unit in self.units.items()}

    @property
    def manifests(self) -> dict:
        return {t: unit.manifests[t] for t, unit in self.units.items()}

    def logits(self, task: str, encoded) -> np.ndarray:
        return self.units[task].logits(task, encoded)


class PerTaskModels(TaskPredictor):
    """(a1) one PeftModel per task held in memory, each with its own base; with ``keep=False``, (a2): the
    task's PeftModel (base + adapter) loaded from disk for every step, then dropped."""

    def __init__(self, backend: OnePerTask, chain: Chain, keep: bool):
        super().__init__(backend, chain=chain)
        self.keep = keep
        if keep:
            backend.units = {t: backend.load(t) for t in backend.specs}

    def predict_batch(self, task: str, texts: Sequence[str]) -> list:
        if self.keep:
            return super().predict_batch(task, texts)
        self.backend.units[task] = self.backend.load(task)
        try:
            return super().predict_batch(task, texts)
        finally:
            self.backend.units.clear()
            gc.collect()


class AdapterNames:
    """(c)'s backend: the Router's PeftModel run with PEFT ``adapter_names``, rows of several tasks in one pass.

    A mixed backend that speculates: ``ask`` runs every chain task on the
    question in one batch (computing steps the chain may not take), then walks
    the chain over those results.
    """

    runs_mixed = speculate_by_default = True

    def __init__(self, torch_backend):
        self.torch = b = torch_backend
        self.specs, self.encoders, self.manifests = b.specs, b.encoders, b.manifests
        self.source, self.chain_path, self.answerer = b.source, b.chain_path, b.answerer

    def logits(self, task: str, encoded) -> np.ndarray:
        return np.stack(self.mixed_logits([(task, e) for e in encoded]))

    def mixed_logits(self, rows) -> list[np.ndarray]:
        import torch

        b = self.torch
        names = [task for task, _ in rows]
        arrays = b.encoders[names[0]].pad([e for _, e in rows])
        out: list = [None] * len(rows)
        with b._lock, torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(b.device) for k, v in arrays.items()}
            hidden = b.model(**inputs, adapter_names=names)
            for task in dict.fromkeys(names):
                idx = [i for i, t in enumerate(names) if t == task]
                rows_of_task = SimpleNamespace(last_hidden_state=hidden.last_hidden_state[idx],
                                               pooler_output=hidden.pooler_output[idx])  # what a head reads
                for i, row in zip(idx, b.heads[task](rows_of_task).float().cpu().numpy(), strict=True):
                    out[i] = row
        return out


def _half(backend, fp16: bool):
    """A torch backend's model and heads in fp16 when ``fp16`` (the GPU runs)."""
    if fp16:
        backend.model.half()
        for head in backend.heads.values():
            head.half()
    return backend


def load_contender(key: str, *, base_dir: Path, hub_dir: Path, export_dir: Path | None, tasks: Sequence[str],
                   chain: Chain, device: str = "cpu", fp16: bool = False, threads: int | None = None,
                   router: TaskPredictor | None = None) -> TaskPredictor:
    """Load one contender; (c) reuses ``router``'s model ((b)'s) when given one.

    (b) is ``lora_router.Router``: one base, every adapter, ``set_adapter`` per
    step; (d) to (h) are ``OnnxRouter`` over the exported models, (g) and (h)
    answering ``ask`` with every chain step in one call and ``predict_mixed``
    with one call for rows of every task.
    """
    if key in ONNX_VARIANTS:
        from ..backends.onnx import OnnxRouter

        layout, precision = ONNX_VARIANTS[key]
        return OnnxRouter(str(export_dir), layout=layout, precision=precision, device=device, threads=threads,
                          tasks=list(tasks), chain=chain, speculate=True if key in ONE_CALL_KEYS else None)
    from ..backends.torch_peft import Router, TorchPeftBackend

    if key in ("a1", "a2"):
        def load(task: str) -> TorchPeftBackend:
            return _half(TorchPeftBackend(str(base_dir), hub_dir, PredictorOptions(tasks=[task], device=device)), fp16)

        return PerTaskModels(OnePerTask(load, tasks), chain, keep=key == "a1")
    if router is None:
        router = Router(str(base_dir), hub_dir, tasks=list(tasks), chain=chain, device=device)
        _half(router.backend, fp16)
    if key == "b":
        return router
    return TaskPredictor(AdapterNames(router.backend), chain=chain)
