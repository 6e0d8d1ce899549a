"""Progress that a person can read: a bar on a terminal, a few log lines anywhere else.

tqdm on a file or a CI log writes a line per refresh (thousands for one
training run). Where stderr is not a terminal, ``progress`` returns a bar that
draws nothing and logs one line every ``log_every`` steps (an epoch, an
exported model) on the ``lora_router.progress`` logger, which the CLI shows.
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)


class LogBar:
    """tqdm's ``update``, ``set_postfix``, ``set_postfix_str`` and ``close``, as a log line per ``log_every`` steps."""

    def __init__(self, total: int, desc: str, unit: str, log_every: int):
        self.total, self.desc, self.unit = total, desc, unit
        self.log_every = max(1, log_every)
        self.n = 0
        self._logged = 0
        self._postfix = ""
        self._start = time.perf_counter()

    def set_postfix(self, **values) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n // self.log_every > self._logged // self.log_every or self.n == self.total:
            self._log()

    def close(self) -> None:
        if self.n != self._logged:  # stopped early (an error): say how far it got
            self._log()

    def _log(self) -> None:
        self._logged = self.n
        logger.info("%s: %d/%d %s%s, %.0f s", self.desc, self.n, self.total, self.unit,
                    f" ({self._postfix})" if self._postfix else "", time.perf_counter() - self._start)


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **values) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def close(self) -> None: ...


def progress(total: int, desc: str, *, enabled: bool = True, unit: str = "step", log_every: int = 1,
             tty: bool | None = None):
    """A tqdm bar when stderr is a terminal, else a ``LogBar`` that logs every ``log_every`` steps.

    ``enabled=False`` (``--quiet``, ``--json``) shows nothing at all; ``tty``
    overrides the terminal check (tests).
    """
    if not enabled:
        return _Silent()
    if tty is None:
        tty = sys.stderr.isatty()
    if not tty:
        return LogBar(total, desc, unit + ("s" if total != 1 and not unit.endswith("s") else ""), log_every)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)
