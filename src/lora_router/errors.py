"""Exceptions of lora-router.

The library raises these; only the CLI (``cli/``) turns them into messages and exit
codes. A message says what was given, what is valid, and the fix.
"""

from __future__ import annotations


class LoraRouterError(Exception):
    """Base class of every error lora-router raises on purpose."""


class UnknownTaskError(LoraRouterError, KeyError):
    """A task name that no registry, entry point or hub knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateTaskError(LoraRouterError):
    """Two task specs registered under one name or one instruction."""


class ConfigError(LoraRouterError, ValueError):
    """A setting outside its valid range."""


class DataError(LoraRouterError):
    """A data file with bad lines; ``problems`` holds ``(line, message)``."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = str(path)
        self.problems = list(problems)
        shown = "\n".join(f"line {n}: {msg}" if n else msg for n, msg in self.problems[:50])
        more = len(self.problems) - 50
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(f"{self.path}: {len(self.problems)} bad line(s)\n{shown}{tail}")


class BaseModelNotFoundError(LoraRouterError):
    """The base model is neither in the cache nor reachable."""


class MissingExtraError(LoraRouterError, ImportError):
    """An optional dependency group is not installed."""


class AdapterNotFoundError(LoraRouterError):
    """No adapter for a task in the hub."""


class AdapterMismatchError(LoraRouterError):
    """An adapter trained on another base model than the one loaded."""


class InputError(LoraRouterError, ValueError):
    """Text the router cannot answer (empty, whitespace only, not a string)."""


class ExportError(LoraRouterError):
    """An export that failed, or a parity gate that was missed."""


class ExportFormatError(LoraRouterError):
    """A folder that is not a valid lora-router export (missing, altered, newer)."""


class DeviceError(LoraRouterError):
    """A device (such as cuda) that was asked for but is not available."""


class CaptureError(LoraRouterError):
    """A capture store that cannot be read or written (feedback cannot be saved)."""


class UnknownCaptureError(LoraRouterError, KeyError):
    """An id that no captured answer in the store has (feedback on an answer never captured)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def require(module: str, extra: str = "train"):
    """Import an optional dependency or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError(
            f"'{module}' is not installed; this command needs the '{extra}' extra.\n"
            f"fix: pip install 'lora-router[{extra}]'"
        ) from exc


class LabelConflictError(LoraRouterError):
    """One input given different outputs in the data files merged for training; ``conflicts`` describes each."""

    def __init__(self, conflicts: list[str]):
        self.conflicts = list(conflicts)
        shown = "\n".join(self.conflicts[:50])
        more = f"\n... and {len(self.conflicts) - 50} more" if len(self.conflicts) > 50 else ""
        super().__init__(f"{len(self.conflicts)} input(s) have conflicting labels:\n{shown}{more}\n"
                         "fix: correct one of each pair of lines, or pass --prefer-last to keep the label of the "
                         "file given later")
