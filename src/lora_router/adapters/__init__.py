"""The adapter hub on disk: layout, ``TaskManifest`` (task.json), base check, atomic save, list/remove."""

from .hub import ADAPTER_FILES, HUB_ENV, TASK_FILE, VERSIONS_DIR, AdapterHub, default_hub, parse_hub
from .manifest import TaskManifest

__all__ = ["ADAPTER_FILES", "HUB_ENV", "TASK_FILE", "VERSIONS_DIR", "AdapterHub", "TaskManifest", "default_hub",
           "parse_hub"]
