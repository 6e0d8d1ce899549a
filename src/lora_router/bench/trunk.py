"""The hub of contender (h): the fixture's tasks with random adapters on the upper layers only.

The shared-trunk layout needs every task to leave the lower layers alone
(``train --layers``); the fixture's own adapters cover every layer, as
``train`` does by default. Same tasks, seeds and LoRA settings otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters import AdapterHub
from ..config import LoraSettings
from .fixture import HUB_TASKS, Fixture, write_random_adapter


def upper_layers(base_dir: Path) -> str:
    """The upper half of the base's encoder layers, as ``train --layers`` takes them (6-11 for bert-base)."""
    n = int(json.loads((Path(base_dir) / "config.json").read_text("utf-8"))["num_hidden_layers"])
    return f"{n // 2}-{n - 1}" if n > 1 else "0"


def trunk_hub(fixture: Fixture, folder: str | Path, *, seed: int = 0) -> Path:
    """Write (once) and return a hub whose adapters sit on ``upper_layers`` of the fixture's base."""
    hub = AdapterHub(Path(folder))
    lora = LoraSettings(layers=upper_layers(fixture.base_dir))
    for i, task in enumerate(HUB_TASKS):
        if not hub.has(task):
            write_random_adapter(hub, task, fixture.base_dir, seed=seed + 1 + i, lora=lora)
    return hub.root
