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

Versions: ``<hub>/<task>/`` always holds the task's current adapter, so PEFT
and older lora-router releases load it as they did. Each save numbers the new
adapter one above the highest kept (``task.json``'s ``version``; a task.json
without one is version 1) and moves the one it replaces, whole, to
``<hub>/.versions/<task>/v<N>/``, where it stays loadable: open the hub as
``AdapterHub("hub@v1")`` (version 1 of every task loaded) or
``AdapterHub("hub@question_classifier=v1")`` (that task at v1, the others at
their current one), the same string ``--hub`` takes.

Rejected versions: ``reject`` takes the current version out of service (a
refused ``lora-router improve`` does, so a later plain ``export`` cannot ship
it) and puts an earlier one back. The rejected one is kept under
``.versions/`` with ``rejected.json`` (why, and when), still loadable by its
number. Writing that file into the current folder is the commit point; the
two renames after it are finished by the next ``AdapterHub`` opened on the
hub if the process dies between them, so the hub is never left without a
current adapter, nor with a rejected one in service. ``use`` makes any kept
version current again (``lora-router hub use TASK vN``), a rejected one
included: a person's decision, recorded by renaming its ``rejected.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config import TaskSpec
from ..errors import AdapterMismatchError, AdapterNotFoundError, LoraRouterError
from .manifest import TaskManifest

HUB_ENV = "LORA_ROUTER_HUB"
TASK_FILE = "task.json"
REJECTED_FILE = "rejected.json"  # in a version's folder: it was taken out of service, and why
LIFTED_FILE = "rejected.lifted.json"  # a rejected version a person put back in service (``use``)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "head.safetensors", TASK_FILE)
WEIGHT_FILES = ADAPTER_FILES[:3]  # what the adapter's content hash covers: what it computes with
VERSIONS_DIR = ".versions"
ALL_TASKS = "*"  # the key of a version selector without a task name: hub@v2
_SELECTOR = re.compile(r"^(?:[^=,@]+=)?v\d+(?:,(?:[^=,@]+=)?v\d+)*$")


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


def parse_hub(location: str | Path) -> tuple[Path, dict[str, int]]:
    """``hub``, ``hub@v2`` or ``hub@task=v1,other=v3`` -> (folder, {task or "*": version}).

    The selector is read only when the folder before the ``@`` exists and
    the whole string is not itself a folder: a hub named ``team@v1`` stays one.
    """
    text = str(location)
    folder, at, selector = text.rpartition("@")
    if not at or Path(text).exists() or not Path(folder).is_dir() or not _SELECTOR.match(selector):
        return Path(text), {}
    versions = {}
    for item in selector.split(","):
        task, _, number = item.rpartition("=")
        versions[task or ALL_TASKS] = int(number[1:])
    return Path(folder), versions


class AdapterHub:
    """Adapters of one or more tasks trained on one base model, each task with its earlier versions."""

    def __init__(self, root: str | Path | None = None, versions: Mapping[str, int] | None = None):
        """``root`` may carry a version selector (``hub@v1``, ``hub@task=v1``); ``versions`` adds to it."""
        self.root, pinned = parse_hub(root) if root is not None else (default_hub(), {})
        self.pinned: dict[str, int] = {**pinned, **(versions or {})}
        self._recover()
        unknown = sorted(t for t in self.pinned if t != ALL_TASKS and t not in self.tasks())
        if unknown and self.root.is_dir():  # a misspelt task would silently load the newest adapter
            raise AdapterNotFoundError(f"version selector names {', '.join(unknown)}, which hub {self.root} has no "
                                       f"adapter for (it has: {', '.join(self.tasks()) or 'none'})")

    def __repr__(self) -> str:
        return f"AdapterHub({self.location!r})"

    @property
    def location(self) -> str:
        """The folder, with the version selector it was opened with: what ``--hub`` takes to open it again."""
        if not self.pinned:
            return str(self.root)
        return f"{self.root}@" + ",".join(f"v{v}" if t == ALL_TASKS else f"{t}=v{v}" for t, v in self.pinned.items())

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def latest_dir(self, task: str) -> Path:
        """The task's current adapter (the newest one not rejected), where ``save`` writes."""
        return self.root / task

    def version_dir(self, task: str, version: int) -> Path:
        """Where an earlier version of the task is kept."""
        return self.root / VERSIONS_DIR / task / f"v{version}"

    def task_dir(self, task: str) -> Path:
        """The folder of the task's adapter this hub loads: the current one, or the version it was opened at."""
        wanted = self.pinned.get(task, self.pinned.get(ALL_TASKS))
        if wanted is None or wanted == self.latest_version(task):
            return self.latest_dir(task)
        return self.version_dir(task, wanted)

    def has(self, task: str) -> bool:
        return (self.task_dir(task) / TASK_FILE).is_file()

    def tasks(self) -> list[str]:
        """Tasks with a complete adapter, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if not p.name.startswith(".") and (p / TASK_FILE).is_file())

    def latest_version(self, task: str) -> int | None:
        """The version number of the task's current adapter (what a plain ``--hub`` loads); None when there is none.
        A rejected version may have a higher number."""
        path = self.latest_dir(task) / TASK_FILE
        if not path.is_file():
            return None
        try:
            return int(json.loads(path.read_text("utf-8")).get("version", 1))
        except (OSError, ValueError, AttributeError, TypeError):
            return 1  # manifest() says what is damaged

    def versions(self, task: str) -> list[int]:
        """Every loadable version of the task, oldest first."""
        kept = self.root / VERSIONS_DIR / task
        found = {int(p.name[1:]) for p in kept.glob("v*") if p.name[1:].isdigit() and (p / TASK_FILE).is_file()} \
            if kept.is_dir() else set()
        latest = self.latest_version(task)
        return sorted(found | ({latest} if latest is not None else set()))

    def rejection(self, task: str, version: int) -> dict | None:
        """Why ``version`` of the task was taken out of service (``rejected.json``: reasons, time, ...); None if not."""
        folder = self.latest_dir(task) if version == self.latest_version(task) else self.version_dir(task, version)
        path = folder / REJECTED_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return {"reasons": [f"{path} is damaged: {exc}"]}

    def reject(self, task: str, reasons: list[str], *, restore: int, **details) -> None:
        """Take the task's current version out of service and make version ``restore`` current again.

        The rejected version is kept under ``.versions/`` with ``rejected.json``
        (``reasons``, the time, and ``details``), loadable as ``HUB@task=vN``;
        ``hub versions`` lists it as rejected. Atomic: see the module's docstring.
        """
        current = self._current_to_change(task, "reject")
        if restore == current or not (self.version_dir(task, restore) / TASK_FILE).is_file():
            kept = ", ".join(f"v{v}" for v in self.versions(task) if v != current) or "none"
            raise AdapterNotFoundError(f"cannot put {task} v{restore} back in place of v{current} in hub {self.root}: "
                                       f"it is not a kept earlier version (kept: {kept})")
        record = {"version": current, "reasons": list(reasons), "restored": restore,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details}
        _write_json(self.latest_dir(task) / REJECTED_FILE, record)  # the commit point
        self._set_aside(task)

    def use(self, task: str, version: int) -> None:
        """Make kept ``version`` of the task current again (what a plain ``--hub`` loads and ``export`` ships).

        The version current until now is kept under ``.versions/``. A rejected
        version chosen here is in service again by a person's choice: its
        ``rejected.json`` is kept as ``rejected.lifted.json``. The same two
        renames as a save, so a crash between them is finished by the next open.
        """
        current = self._current_to_change(task, "use")
        if version == current:
            return
        chosen = self.version_dir(task, version)
        if not (chosen / TASK_FILE).is_file():
            kept = ", ".join(f"v{v}" for v in self.versions(task)) or "none"
            raise AdapterNotFoundError(f"{task} has no version {version} in hub {self.root} (it has: {kept})")
        if (chosen / REJECTED_FILE).is_file():
            (chosen / REJECTED_FILE).rename(chosen / LIFTED_FILE)
        aside = self.root / f".old-{task}-{uuid.uuid4().hex[:8]}"
        self.latest_dir(task).rename(aside)  # a crash here: _recover puts it back in place
        chosen.rename(self.latest_dir(task))  # a crash here: _recover keeps ``aside`` as its version
        self._keep(task, aside)

    def _current_to_change(self, task: str, action: str) -> int:
        """The task's current version, which ``action`` is about to change; refused on a pinned hub or no adapter."""
        if self.pinned:
            raise LoraRouterError(f"{action} changes which version of {task!r} is current; open the hub folder "
                                  f"{self.root} without a version selector")
        current = self.latest_version(task)
        if current is None:
            raise AdapterNotFoundError(f"no adapter for task {task!r} in hub {self.root}")
        return current

    def _set_aside(self, task: str) -> None:
        """Finish a rejection: the rejected current folder to ``.versions/``, the version it names back in place."""
        current = self.latest_dir(task)
        try:
            record = json.loads((current / REJECTED_FILE).read_text("utf-8"))
            back = self.version_dir(task, int(record["restored"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{current / REJECTED_FILE} is damaged ({exc}); {task}'s current version stays in place",
                          stacklevel=3)
            return
        if not (back / TASK_FILE).is_file():
            warnings.warn(f"{task} v{record.get('version')} in {self.root} is rejected, but v{record['restored']}, "
                          f"which should replace it, is gone; it stays current", stacklevel=3)
            return
        aside = self.root / f".old-{task}-{uuid.uuid4().hex[:8]}"
        current.rename(aside)  # a crash here: _recover puts it back, sees rejected.json and starts again
        back.rename(current)  # a crash here: _recover keeps ``aside`` as its version
        self._keep(task, aside)

    def manifest(self, task: str) -> TaskManifest:
        """The task's ``task.json``; an error lists what the hub has."""
        if not self.has(task):
            have = ", ".join(self.tasks()) or "none"
            if self.latest_version(task) is not None:
                wanted = self.pinned.get(task, self.pinned.get(ALL_TASKS))
                raise AdapterNotFoundError(
                    f"task {task!r} has no version {wanted} in hub {self.root} (it has: "
                    f"{', '.join(f'v{v}' for v in self.versions(task))}); pick one of those, e.g. "
                    f"{self.root}@{task}=v{self.latest_version(task)}")
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
        """Write a task's new version atomically; the one it replaces is kept under ``.versions/``.

        ``write(folder)`` fills a temporary folder; only when it returns is the
        folder numbered and renamed into place. An interrupted or failed run
        leaves the previous adapter as it was.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        tmp = self.root / f".tmp-{task}-{tag}"
        old = self.root / f".old-{task}-{tag}"
        tmp.mkdir()
        final = self.latest_dir(task)
        try:
            write(tmp)
            missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
            if missing:
                raise LoraRouterError(f"adapter for {task!r} was not saved whole; missing {missing}")
            _set_version(tmp / TASK_FILE, max(self.versions(task), default=0) + 1)
            if final.exists():
                final.rename(old)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not final.exists():
                old.rename(final)
            raise
        self._keep(task, old)
        return final

    def remove(self, task: str) -> None:
        """Delete the task's adapter and every earlier version of it."""
        if not self.latest_dir(task).exists():
            raise AdapterNotFoundError(f"no adapter for task {task!r} in hub {self.root}")
        trash = self.root / f".old-{task}-{uuid.uuid4().hex[:8]}"
        self.latest_dir(task).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.root / VERSIONS_DIR / task, ignore_errors=True)

    def _keep(self, task: str, old: Path) -> None:
        """Move a replaced adapter to ``.versions/<task>/v<N>/``; drop it if that version is kept already."""
        if not (old / TASK_FILE).is_file():
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            version = int(json.loads((old / TASK_FILE).read_text("utf-8")).get("version", 1))
        except (OSError, ValueError, AttributeError, TypeError):
            version = 0  # damaged: not worth keeping
        target = self.version_dir(task, version)
        if version < 1 or target.exists():
            shutil.rmtree(old, ignore_errors=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        old.rename(target)

    def _recover(self) -> None:
        """Finish what a crash between two renames left: put back an orphaned old adapter, or keep it as a version."""
        if not self.root.is_dir():
            return
        for p in self.root.glob(".old-*"):
            task = p.name[len(".old-"):].rsplit("-", 1)[0]
            if not self.latest_dir(task).exists() and (p / TASK_FILE).is_file():
                p.rename(self.latest_dir(task))
            else:
                self._keep(task, p)
        for p in self.root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for task in self.tasks():
            if (self.latest_dir(task) / REJECTED_FILE).is_file():  # rejected, not yet set aside
                self._set_aside(task)


def _set_version(path: Path, version: int) -> None:
    """Number a freshly written task.json (the writer does not know which versions the hub holds)."""
    data = json.loads(path.read_text("utf-8"))
    data["version"] = version
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")


def _write_json(path: Path, data: dict) -> None:
    """Write a JSON file whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")
    os.replace(tmp, path)
