"""Task specs and their registry. Pure Python: no torch here."""

# The order of these imports is the order tasks are listed in (the chain's order).
from . import question_classifier  # noqa: F401, I001  (each module registers its task)
from . import question_type_classifier  # noqa: F401
from . import file_name_pick  # noqa: F401
from . import question_answer  # noqa: F401
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
