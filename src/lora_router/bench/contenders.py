"""The ways of answering that the benchmark compares, behind one small interface.

Every contender answers ``predict_batch(task, texts)`` (one task), ``ask(text)``
(the chain) and ``mixed(items)`` (a batch of ``(task, text)`` requests for
several tasks). torch and onnxruntime are imported inside the classes, so a
fresh process measuring an ONNX contender never imports torch.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from ..config import SPAN_EXTRACTION, TaskSpec
from ..core.chain import Chain, run_chain

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
# (h) needs adapters on the upper layers only: its own hub (fixture.trunk_hub), exported with layout trunk.
TRUNK_KEYS = ("h",)


class Contender:
    """A loaded way of answering; ``close`` drops its models."""

    key = ""
    tasks: tuple[str, ...] = ()

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        raise NotImplementedError

    def ask(self, text: str) -> dict:
        return run_chain(self.chain, [text], self.predict_batch, set(self.tasks))[0]

    def mixed(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        """Requests for several tasks: grouped by task, one batch per task."""
        out: list[dict | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(items):
            groups.setdefault(task, []).append(i)
        for task, idx in groups.items():
            for i, result in zip(idx, self.predict_batch(task, [items[i][1] for i in idx]), strict=True):
                out[i] = result
        return out  # type: ignore[return-value]

    def close(self) -> None:
        gc.collect()


def _decode(spec: TaskSpec, texts: Sequence[str], encoded, logits) -> list[dict]:
    """Logits to results: the one place the torch contenders do it (without the calibration temperature,
    as the original tool did); ``core.TaskPredictor`` is to take its place."""
    from ..core.results import classification_result, extraction_result

    if spec.kind == SPAN_EXTRACTION:
        return [extraction_result(t, e, lg) for t, e, lg in zip(texts, encoded, logits, strict=True)]
    return [classification_result(lg, spec.labels) for lg in logits]


def _prepare(model, device: str, fp16: bool):
    model = model.to(device).eval()
    return model.half() if fp16 else model


class TaskModel:
    """The original tool's unit: its own base copy, one task's PeftModel and head."""

    def __init__(self, base_dir: Path, hub_dir: Path, task: str, device: str = "cpu", fp16: bool = False):
        from peft import PeftModel

        from ..adapters import AdapterHub
        from ..encoding import TextEncoder
        from ..modeling.base import load_base
        from ..modeling.heads import TaskHead

        hub = AdapterHub(hub_dir)
        manifest = hub.manifest(task)
        self.spec = TaskSpec.from_dict(manifest["task"])
        base, tokenizer = load_base(str(base_dir))
        folder = str(hub.task_dir(task))
        self.device = device
        self.model = _prepare(PeftModel.from_pretrained(base, folder), device, fp16)
        self.head = _prepare(TaskHead(self.spec, base.config.hidden_size, 0.0).load(folder), device, fp16)
        self.encoder = TextEncoder.for_adapter(tokenizer, manifest["training"]["max_length"], manifest)

    def predict_batch(self, texts: Sequence[str]) -> list[dict]:
        import torch

        encoded = self.encoder.encode_batch(list(texts))
        arrays = self.encoder.pad(encoded)
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
            logits = self.head(self.model(**inputs)).float().cpu().numpy()
        return _decode(self.spec, texts, encoded, logits)


class LoadPerStep(Contender):
    """(a2) the task's PeftModel (base + adapter) loaded from disk for every step, then dropped."""

    key = "a2"

    def __init__(self, base_dir: Path, hub_dir: Path, tasks: Sequence[str], chain: Chain, device: str = "cpu",
                 fp16: bool = False):
        self.tasks = tuple(tasks)
        self.chain = chain
        self._load = partial(TaskModel, base_dir, hub_dir, device=device, fp16=fp16)

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        model = self._load(task)
        try:
            return model.predict_batch(texts)
        finally:
            del model
            gc.collect()


class PerTaskModels(LoadPerStep):
    """(a1) one PeftModel per task held in memory, each with its own base: (a2) with every task loaded once."""

    key = "a1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.models = {t: self._load(t) for t in self.tasks}

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        return self.models[task].predict_batch(texts)

    def close(self) -> None:
        self.models.clear()
        super().close()


class RouterContender(Contender):
    """(b) ``lora_router.Router``: one base, every adapter, ``set_adapter`` per step."""

    key = "b"

    def __init__(self, base_dir: Path, hub_dir: Path, tasks: Sequence[str], chain: Chain, device: str = "cpu",
                 fp16: bool = False):
        from ..backends.torch_peft import Router

        self.router = Router(str(base_dir), hub_dir, tasks=list(tasks), chain=chain, device=device)
        if fp16:
            self.router.model.half()
            for head in self.router.heads.values():
                head.half()
        self.tasks = tuple(tasks)
        self.chain = chain

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        return self.router.predict_batch(task, texts)

    def ask(self, text: str) -> dict:
        return self.router.ask(text)

    def set_adapter(self, task: str) -> None:
        self.router.set_adapter(task)

    def close(self) -> None:
        self.router = None  # type: ignore[assignment]
        super().close()


class MixedBatch(Contender):
    """(c) the Router's PeftModel run with PEFT ``adapter_names``: several tasks in one pass.

    ``ask`` runs every chain task on the question in one batch (speculatively:
    it computes steps the chain may not take), then walks the chain over those
    results.
    """

    key = "c"

    def __init__(self, router: RouterContender):
        self.router = router.router
        self.tasks = router.tasks
        self.chain = router.chain

    def _pass(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        import torch

        r = self.router
        texts = [t for _, t in items]
        names = [task for task, _ in items]
        encoder = r.encoders[names[0]]
        encoded = encoder.encode_batch(texts)
        arrays = encoder.pad(encoded)
        with r.backend._lock, torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(r.device) for k, v in arrays.items()}
            hidden = r.model(**inputs, adapter_names=names)
            groups: dict[str, list[int]] = {}
            for i, task in enumerate(names):
                groups.setdefault(task, []).append(i)
            out: list[dict | None] = [None] * len(items)
            for task, idx in groups.items():
                logits = r.heads[task](_Rows(hidden, idx)).float().cpu().numpy()
                results = _decode(r.specs[task], [texts[i] for i in idx], [encoded[i] for i in idx], logits)
                for i, result in zip(idx, results, strict=True):
                    out[i] = result
        return out  # type: ignore[return-value]

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        return self._pass([(task, t) for t in texts])

    def mixed(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        return self._pass(items)

    def ask(self, text: str) -> dict:
        tasks = [t for t in self.chain.tasks() if t in self.tasks]
        done = dict(zip(tasks, self._pass([(t, text) for t in tasks]), strict=True))
        return run_chain(self.chain, [text], lambda task, _texts: [done[task]], set(self.tasks))[0]


class _Rows:
    """Some rows of an encoder output, in the shape a head reads."""

    def __init__(self, output, rows: list[int]):
        self.last_hidden_state = output.last_hidden_state[rows]
        self.pooler_output = output.pooler_output[rows]


class OnnxContender(Contender):
    """(d) to (h): ``lora_router.backends.onnx.OnnxRouter`` over the exported models.

    (g) and (h) answer ``ask`` with every chain step in one call and ``mixed``
    with one call for rows of every task (``OnnxRouter.predict_mixed``).
    """

    def __init__(self, key: str, export_dir: Path, tasks: Sequence[str], chain: Chain, device: str = "cpu",
                 threads: int | None = None):
        from ..backends.onnx import OnnxRouter

        layout, precision = ONNX_VARIANTS[key]
        self.key = key
        self.router = OnnxRouter(str(export_dir), layout=layout, precision=precision, device=device,
                                 threads=threads, tasks=list(tasks), chain=chain,
                                 speculate=True if layout in ("multi", "trunk") else None)
        self.chain = chain
        self.tasks = tuple(self.router.tasks)

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        return self.router.predict_batch(task, list(texts))

    def ask(self, text: str) -> dict:
        return self.router.ask(text)

    def mixed(self, items: Sequence[tuple[str, str]]) -> list[dict]:
        if self.router.mixed is not None:
            return self.router.predict_mixed(items)
        return super().mixed(items)

    def close(self) -> None:
        self.router = None
        super().close()


def load_contender(key: str, *, base_dir: Path, hub_dir: Path, export_dir: Path | None, tasks: Sequence[str],
                   chain: Chain, device: str = "cpu", fp16: bool = False, threads: int | None = None,
                   router: RouterContender | None = None) -> Contender:
    """Load one contender; (c) reuses ``router``'s model when given one."""
    if key == "a1":
        return PerTaskModels(base_dir, hub_dir, tasks, chain, device, fp16)
    if key == "a2":
        return LoadPerStep(base_dir, hub_dir, tasks, chain, device, fp16)
    if key == "b":
        return RouterContender(base_dir, hub_dir, tasks, chain, device, fp16)
    if key == "c":
        return MixedBatch(router or RouterContender(base_dir, hub_dir, tasks, chain, device, fp16))
    if key in ONNX_VARIANTS:
        if export_dir is None:
            raise ValueError("ONNX contenders need an export folder")
        return OnnxContender(key, export_dir, tasks, chain, device, threads)
    raise KeyError(key)
