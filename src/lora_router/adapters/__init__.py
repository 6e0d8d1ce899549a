"""The adapter hub on disk: layout, ``TaskManifest`` (task.json), base check, atomic save, list/remove."""

from .hub import ADAPTER_FILES, HUB_ENV, TASK_FILE, AdapterHub, adapter_sha256, default_hub
from .manifest import TaskManifest

__all__ = ["ADAPTER_FILES", "HUB_ENV", "TASK_FILE", "AdapterHub", "TaskManifest", "adapter_sha256", "default_hub"]
