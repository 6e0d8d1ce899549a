"""The adapter hub on disk: layout, manifest, base check, atomic save, list/remove."""

from .hub import ADAPTER_FILES, HUB_ENV, TASK_FILE, AdapterHub, default_hub

__all__ = ["ADAPTER_FILES", "HUB_ENV", "TASK_FILE", "AdapterHub", "default_hub"]
