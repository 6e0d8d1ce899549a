"""Work handed to a background thread and not yet done: a count, and a wait until it is none.

The capture writer and the shadow runner both queue work off the response
path and must be able to say "everything queued so far is done" (before
feedback looks for its answer, at shutdown, in tests). ``queue.Queue.join``
waits without a deadline, so this small counter does it with one.
"""

from __future__ import annotations

import threading
import time


class PendingWork:
    """How many queued items are not done yet; ``drain`` waits, with a deadline, until none are."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = threading.Condition()

    def started(self) -> None:
        with self._idle:
            self.count += 1

    def done(self) -> None:
        with self._idle:
            self.count -= 1
            if not self.count:
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every started item is done; whether that happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


class QueuedWork:
    """``pending`` and ``drain`` for a class that counts its queued work in ``self._pending`` (a ``PendingWork``)."""

    _pending: PendingWork

    @property
    def pending(self) -> int:
        """Items queued and not yet done."""
        return self._pending.count

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued item is done (or dropped); whether that happened within ``timeout`` seconds."""
        return self._pending.drain(timeout)
