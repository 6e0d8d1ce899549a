"""The adapter hub: one folder per task, saved atomically.

Layout of ``<hub>/<task>/``::

    adapter_config.json          PEFT's files, exactly as PEFT writes them, so
    adapter_model.safetensors    plain PeftModel.from_pretrained loads them
    head.safetensors             the task head (classifier.weight / .bias)
    task.json                    spec, labels, base id + fingerprint, settings,
                                 encoding (how the text was normalised, e.g.
                                 lower-cased), data hash, metrics, versions, time

plus ``<hub>/logs/<task>-<time>.jsonl`` for every training run. Only
safetensors are read or written. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from ..config import TaskSpec
from ..errors import AdapterMismatchError, AdapterNotFoundError, LoraRouterError
from .manifest import TaskManifest

HUB_ENV = "LORA_ROUTER_HUB"
TASK_FILE = "task.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "head.safetensors", TASK_FILE)
WEIGHT_FILES = ADAPTER_FILES[:3]  # what the adapter's content hash covers: what it computes with


def default_hub() -> Path:
    """``$LORA_ROUTER_HUB``, else ``~/.lora-router/hub``."""
    return Path(os.environ.get(HUB_ENV) or Path.home() / ".lora-router" / "hub")


def adapter_sha256(folder: str | Path) -> str:
    """The content hash of an adapter folder's weights, LoRA config and head: the same adapter, the same hash,
    wherever it is copied (a hub, an export's task.json)."""
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        h.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


class AdapterHub:
    """Adapters of one or more tasks trained on one base model."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_hub()
        self._recover()

    def __repr__(self) -> str:
        return f"AdapterHub({str(self.root)!r})"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def task_dir(self, task: str) -> Path:
        return self.root / task

    def has(self, task: str) -> bool:
        return (self.task_dir(task) / TASK_FILE).is_file()

    def tasks(self) -> list[str]:
        """Tasks with a complete adapter, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and self.has(p.name))

    def manifest(self, task: str) -> TaskManifest:
        """The task's ``task.json``; an error lists what the hub has."""
        if not self.has(task):
            have = ", ".join(self.tasks()) or "none"
            raise AdapterNotFoundError(
                f"no adapter for task {task!r} in hub {self.root} (it has: {have}); "
                f"train one: lora-router train --task {task} --hub {self.root}"
            )
        path = self.task_dir(task) / TASK_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LoraRouterError(f"{path} is damaged: {exc}") from None
        return TaskManifest.from_dict(data, str(path))

    def adapter_sha256(self, task: str) -> str:
        """The adapter's content hash, as its task.json records it (computed for adapters saved before)."""
        return self.manifest(task).adapter_sha256 or adapter_sha256(self.task_dir(task))

    def spec(self, task: str) -> TaskSpec:
        return self.manifest(task).task

    def specs(self) -> list[TaskSpec]:
        return [self.spec(t) for t in self.tasks()]

    def check_base(self, task: str, base_fingerprint: str, base_name: str) -> None:
        """Refuse an adapter trained on another base than the one loaded."""
        info = self.manifest(task).base_model
        if info.get("fingerprint") != base_fingerprint:
            raise AdapterMismatchError(
                f"adapter {task!r} in {self.root} was trained on base {info.get('name')!r} "
                f"(fingerprint {info.get('fingerprint')}), but the loaded base is {base_name!r} "
                f"(fingerprint {base_fingerprint}); load that base with --base-model, or retrain"
            )

    def save(self, task: str, write: Callable[[Path], None]) -> Path:
        """Write a task's folder atomically.

        ``write(folder)`` fills a temporary folder; only when it returns is the
        folder renamed into place. An interrupted or failed run leaves the
        previous adapter as it was.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        tmp = self.root / f".tmp-{task}-{tag}"
        old = self.root / f".old-{task}-{tag}"
        tmp.mkdir()
        try:
            write(tmp)
            missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
            if missing:
                raise LoraRouterError(f"adapter for {task!r} was not saved whole; missing {missing}")
            final = self.task_dir(task)
            if final.exists():
                final.rename(old)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not self.task_dir(task).exists():
                old.rename(self.task_dir(task))
            raise
        shutil.rmtree(old, ignore_errors=True)
        return final

    def remove(self, task: str) -> None:
        if not self.task_dir(task).exists():
            raise AdapterNotFoundError(f"no adapter for task {task!r} in hub {self.root}")
        trash = self.root / f".old-{task}-{uuid.uuid4().hex[:8]}"
        self.task_dir(task).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _recover(self) -> None:
        """Finish what a crash between two renames left: put back an orphaned old adapter."""
        if not self.root.is_dir():
            return
        for p in self.root.glob(".old-*"):
            task = p.name[len(".old-"):].rsplit("-", 1)[0]
            if not self.task_dir(task).exists() and (p / TASK_FILE).is_file():
                p.rename(self.task_dir(task))
            else:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

