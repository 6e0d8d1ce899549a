"""Capture: keep the questions a service answered, with their decision traces, and feedback on them.

Off by default (``lora-router serve --capture DIR``, or ``CaptureWriter`` in
Python). The store is a folder of JSON lines that needs no server
(``capture.layout``): each process appends to its own shard, so it stays
correct with ``--workers N`` and Ray replicas; ``CaptureStore`` reads every
shard merged. What it holds is what users typed: personal data, kept readable
by the serving user only (folders 0700, files 0600).
"""

from .feedback import VERDICTS, feedback_line
from .layout import CAPTURES_DIR, FEEDBACK_DIR, LABELS_DIR
from .store import CaptureStore
from .writer import DEFAULT_MAX_MB, CaptureWriter

__all__ = ["CaptureStore", "CaptureWriter", "DEFAULT_MAX_MB", "VERDICTS", "feedback_line", "CAPTURES_DIR",
           "FEEDBACK_DIR", "LABELS_DIR"]
