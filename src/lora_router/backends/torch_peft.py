"""The PyTorch backend: one loaded base, every adapter of the hub, ``set_adapter`` per task; and ``Router``.

The base is loaded once; each task's adapter is loaded into one PeftModel
under the task's name, and each task keeps its own head (PEFT cannot hold
heads of different shapes: peft issues #2136, #854). ``set_adapter`` changes
model-wide state, so a lock makes set-adapter + forward one step: threads
never mix tasks. ``core.TaskPredictor`` turns the logits into results.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..adapters import AdapterHub, TaskManifest
from ..capture import CaptureWriter
from ..config import TaskSpec
from ..core.chain import Chain
from ..core.options import PredictorOptions
from ..core.predictor import TaskPredictor, backend_attribute, split_options
from ..core.trace import ID_CHARS
from ..encoding import Encoded, TextEncoder
from ..errors import require
from ..modeling.base import DEFAULT_BASE_MODEL

logger = logging.getLogger(__name__)


class TorchPeftBackend:
    """Every task of a hub on one base model in PyTorch: logits with the task's adapter active."""

    chain_path = None  # a hub ships no chain: the built-in one

    def __init__(self, base_model: str, hub: str | Path | AdapterHub | None, options: PredictorOptions):
        require("torch")
        from peft import PeftModel

        from ..modeling.base import fingerprint, load_base
        from ..modeling.heads import TaskHead

        self.hub = hub if isinstance(hub, AdapterHub) else AdapterHub(hub)
        self.base_model = str(base_model)
        self.device = _check_device(options.device)
        base, tokenizer = load_base(self.base_model)
        self.base_fingerprint = fingerprint(base)
        names = list(options.tasks) if options.tasks is not None else self.hub.tasks()
        self.specs: dict[str, TaskSpec] = {}
        self.encoders: dict[str, TextEncoder] = {}
        self.heads: dict = {}
        self.manifests: dict[str, TaskManifest] = {}
        model = None
        for name in names:
            self.hub.check_base(name, self.base_fingerprint, self.base_model)
            manifest = self.hub.manifest(name)
            spec = manifest.task
            folder = str(self.hub.task_dir(name))
            if model is None:
                model = PeftModel.from_pretrained(base, folder, adapter_name=name)
            else:
                model.load_adapter(folder, adapter_name=name)
            head = TaskHead(spec, base.config.hidden_size, 0.0).load(folder)
            self.heads[name] = head.to(self.device).eval()
            self.specs[name] = spec
            self.manifests[name] = manifest
            self.encoders[name] = TextEncoder.for_adapter(tokenizer, manifest.max_length, manifest.encoding)
        self.model = (model if model is not None else base).to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = f"hub {self.hub.location}"  # with the version selector it was opened at
        # From a hub there is no export: an adapter is named by its content hash and its version in the hub.
        self.identities = {name: {"task": name, "adapter": self.hub.adapter_sha256(name)[:ID_CHARS], "export": None,
                                  "version": _hub_version(manifest)} for name, manifest in self.manifests.items()}
        self._lock = threading.RLock()
        self._active: str | None = None
        logger.info("torch backend: base %s, tasks %s", self.base_model, ", ".join(self.specs) or "none")

    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits for encoded inputs, with ``task``'s adapter active."""
        import torch

        arrays = self.encoders[task].pad(encoded)
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with self._lock, torch.inference_mode():
            self.activate(task)
            out = self.heads[task](self.model(**inputs))
        return out.float().cpu().numpy()

    def activate(self, task: str, force: bool = False) -> None:
        """Make ``task``'s adapter the active one."""
        # PEFT's set_adapter walks every module (about 1.6 ms on bert-base): skip it when already active.
        with self._lock:
            if (force or self._active != task) and hasattr(self.model, "set_adapter"):
                self.model.set_adapter(task)
                self._active = task

    def answerer(self, task: str, knowledge_base: Path | None):
        from ..kb import Answerer

        return Answerer.from_saved(self.manifests[task].knowledge_base, self.hub.task_dir(task), knowledge_base)


class Router(TaskPredictor):
    """Answer every task of a hub with one base model: a ``TaskPredictor`` over a ``TorchPeftBackend``.

    >>> router = Router("bert-base-chinese", "~/.lora-router/hub")
    >>> router.predict("question_classifier", "数据清洗流程是什么？")["predicted_label"]
    >>> router.ask("帮我把sales_2024.csv导入到ODS层")["route"]

    Options: a ``PredictorOptions`` as ``options=`` or field by field
    (``tasks``, ``chain`` (also a ``Chain``), ``thresholds``, ``knowledge_base``, ``device``).
    ``capture``: a folder (or a ``CaptureWriter``) that keeps every answer ``ask`` gives.
    """

    def __init__(self, base_model: str = DEFAULT_BASE_MODEL, hub: str | Path | AdapterHub | None = None, *,
                 options: PredictorOptions | None = None, chain: Chain | str | Path | None = None,
                 capture: str | Path | CaptureWriter | None = None, **fields):
        options, chain_object = split_options(options, chain, fields)
        super().__init__(TorchPeftBackend(base_model, hub, options), options, chain=chain_object,
                         capture=CaptureWriter.of(capture))

    def set_adapter(self, task: str) -> None:
        """Make ``task``'s adapter the active one (what every ``predict`` does)."""
        self._spec(task)
        self.backend.activate(task, force=True)

    model = backend_attribute("model")  # the PeftModel holding every adapter
    heads = backend_attribute("heads")  # dict[str, TaskHead]
    hub = backend_attribute("hub")  # AdapterHub
    device = backend_attribute("device")  # str
    tokenizer = backend_attribute("tokenizer")


def _hub_version(manifest: TaskManifest) -> str | None:
    """``v<N>`` where the hub numbers its adapters' versions (task.json's ``version``), else when it was trained."""
    number = getattr(manifest, "version", None) or manifest.extra.get("version")
    return f"v{number}" if isinstance(number, int) else (manifest.created or None)


def _check_device(device: str) -> str:
    import torch

    from ..errors import DeviceError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"unknown device {device!r}; valid: cpu, cuda")
    return device
