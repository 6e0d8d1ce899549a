"""The adapter hub on disk: layout, ``TaskManifest`` (task.json), base check, atomic save, list/remove."""

from .hub import ADAPTER_FILES, HUB_ENV, TASK_FILE, VERSIONS_DIR, AdapterHub, adapter_sha256, default_hub, parse_hub
from .manifest import TaskManifest

__all__ = ["ADAPTER_FILES", "HUB_ENV", "TASK_FILE", "VERSIONS_DIR", "AdapterHub", "TaskManifest", "adapter_sha256",
           "default_hub", "parse_hub"]
