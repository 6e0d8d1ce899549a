"""The task registry: one explicit registration per task, loud on duplicates.

Built-in tasks register themselves when ``lora_router.tasks`` is imported.
Third-party tasks come in through the entry-point group ``lora_router.tasks``
(each entry point is a ``TaskSpec`` or a callable returning one), loaded
lazily the first time the registry is asked for a task it does not know.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from ..config import TaskSpec
from ..errors import DuplicateTaskError, LoraRouterError, UnknownTaskError

ENTRY_POINT_GROUP = "lora_router.tasks"
logger = logging.getLogger(__name__)

_TASKS: dict[str, TaskSpec] = {}
_plugins_loaded = False


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a task; a second task with the same name or instruction is an error."""
    if spec.name in _TASKS:
        raise DuplicateTaskError(f"task {spec.name!r} is already registered")
    for other in _TASKS.values():
        if other.instruction == spec.instruction:
            raise DuplicateTaskError(
                f"task {spec.name!r} uses instruction {spec.instruction!r}, "
                f"already used by task {other.name!r}"
            )
    _TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (for tests and plugins that replace one)."""
    _TASKS.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            spec = obj() if callable(obj) and not isinstance(obj, TaskSpec) else obj
            if not isinstance(spec, TaskSpec):
                raise TypeError(f"gave {type(spec).__name__}, not a TaskSpec")
            if spec.name not in _TASKS:
                register_task(spec)
        except (LoraRouterError, TypeError, ImportError, AttributeError) as exc:
            logger.warning("task plugin %r (%s) could not be loaded: %s", ep.name, ep.value, exc)


def all_tasks() -> list[TaskSpec]:
    """Every registered task, built-in first, then plugins."""
    _load_plugins()
    return list(_TASKS.values())


def task_names() -> list[str]:
    return [t.name for t in all_tasks()]


def get_task(name: str) -> TaskSpec:
    """The task called ``name``, or an error listing the known ones."""
    if name not in _TASKS:
        _load_plugins()
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known: {', '.join(task_names())}") from None


def task_for_instruction(instruction: str) -> TaskSpec:
    """The task whose instruction string is ``instruction``."""
    for spec in all_tasks():
        if spec.instruction == instruction:
            return spec
    known = ", ".join(f"{t.instruction} ({t.name})" for t in all_tasks())
    raise UnknownTaskError(f"unknown instruction {instruction!r}; known: {known}")
