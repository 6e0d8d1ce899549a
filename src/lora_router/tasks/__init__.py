"""Task specs and their registry. Pure Python: no torch here."""

# The order of these imports is the order tasks are listed in (the chain's order).
from . import scene  # noqa: F401, I001  (each module registers its task)
from . import qtype  # noqa: F401
from . import filename  # noqa: F401
from . import kbqa  # noqa: F401
from .registry import (
    ENTRY_POINT_GROUP,
    all_tasks,
    get_task,
    register_task,
    task_for_instruction,
    task_names,
    unregister_task,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "all_tasks",
    "get_task",
    "register_task",
    "task_for_instruction",
    "task_names",
    "unregister_task",
]
