"""``CaptureWriter``: append answered questions to this process's shard, on a thread of its own.

Capture must never cost a request: ``add`` only puts the answer on a bounded
queue and returns; a thread turns it into a JSON line and appends it. A full
queue, a full disk, a read-only or deleted folder drop the line (counted, and
logged at most once a minute) and the next line tries again, recreating the
folder if it was removed. The store is bounded: when this process opens a new
segment, the oldest segments of every shard are deleted until the store fits
in ``max_mb`` (each process may run over by the segment it is writing).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from queue import Full, Queue

from ..errors import ConfigError
from ..pending import PendingWork, QueuedWork
from .layout import (
    CAPTURES_DIR,
    LINE_VERSION,
    encode_line,
    make_folder,
    new_shard,
    now,
    open_append,
    segment_name,
    segment_number,
    shard_dirs,
    shard_segments,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_MB = 1024.0
MIN_MAX_MB = 0.01
QUEUE_SIZE = 10_000
SEGMENT_MAX_BYTES = 8 << 20
SEGMENT_MIN_BYTES = 512
WARN_EVERY_S = 60.0
# What the counts count: lines written, and lines dropped because the store was full (the oldest), the queue
# was full (overload), or the line could not be written (error); and the CPU seconds capture took (cpu_seconds:
# queueing on the caller's thread, encoding and writing on the capture thread).
COUNTS = ("captured", "oldest", "overload", "error", "cpu_seconds")
_STOP = object()


class CaptureWriter(QueuedWork):
    """Capture answers into ``folder`` (a capture store), never on the caller's path.

    >>> with CaptureWriter("./captures", max_mb=512) as capture:
    ...     answer = router.ask("帮我把sales_2024.csv导入到ODS层")
    ...     capture.add(answer)                     # the id that feedback names
    """

    def __init__(self, folder: str | Path, *, max_mb: float = DEFAULT_MAX_MB, queue_size: int = QUEUE_SIZE,
                 on_count: Callable[[str, float], None] | None = None):
        if not isinstance(max_mb, (int, float)) or isinstance(max_mb, bool) or max_mb < MIN_MAX_MB:
            raise ConfigError(f"capture max_mb must be a number >= {MIN_MAX_MB}, got {max_mb!r}")
        self.folder = Path(folder).expanduser()
        self.shard = new_shard()
        self.max_bytes = int(max_mb * 1024 * 1024)
        # Small enough that dropping one segment frees little of the store, large enough to roll seldom.
        self.segment_bytes = min(max(self.max_bytes // 16, SEGMENT_MIN_BYTES), SEGMENT_MAX_BYTES)
        self.counts: Counter[str] = Counter({k: 0 for k in COUNTS})
        self._on_count = on_count
        self._queue: Queue = Queue(maxsize=queue_size)
        self._pending = PendingWork()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._number = 0
        self._warned_at = -WARN_EVERY_S
        self._closed = False

    @classmethod
    def of(cls, capture: str | Path | CaptureWriter | None) -> CaptureWriter | None:
        """A writer for a folder (with the default bound); a writer or None as given."""
        return capture if capture is None or isinstance(capture, CaptureWriter) else cls(capture)

    def __repr__(self) -> str:
        return f"CaptureWriter({str(self.folder)!r}, shard={self.shard!r})"

    @property
    def shard_dir(self) -> Path:
        return self.folder / CAPTURES_DIR / self.shard

    # ------------------------------------------------------------ the caller's side
    def add(self, answer: dict, *, id: str | None = None, endpoint: str = "ask", extra: dict | None = None) -> str:
        """Queue one answer (with its trace) for capture; its capture id (``id`` or a new one).

        Returns at once and never raises for the store's sake: a line that
        cannot be queued or written is counted as dropped. ``answer`` must
        not change after this call (it is written later, on the thread).
        ``extra`` adds fields to the line beside ``answer`` (``serve --shadow``:
        ``"shadow"``, the candidate's trace); readers see them as given.
        """
        t0 = time.thread_time()
        capture_id = id or uuid.uuid4().hex
        record = {"v": LINE_VERSION, "id": capture_id, "time": now(), "endpoint": endpoint,
                  "question": answer.get("question"), "answer": answer, **(extra or {})}
        if self._closed:
            self._count("error")
            return capture_id
        self._ensure_thread()
        self._pending.started()
        try:
            self._queue.put_nowait(record)
        except Full:
            self._pending.done()
            self._count("overload")
        self._count("cpu_seconds", time.thread_time() - t0)
        return capture_id

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the thread and close the segment."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._close_segment()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the thread
    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lora-router-capture", daemon=True)
                self._thread.start()
                atexit.register(self.close)  # what a script asked just before it ends is written too

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is _STOP:
                return
            t0 = time.thread_time()
            try:
                self._write(record)
            finally:
                self._count("cpu_seconds", time.thread_time() - t0)
                self._pending.done()

    def _write(self, record: dict) -> None:
        try:
            data = encode_line(record)
        except (TypeError, ValueError, RuntimeError) as exc:  # an answer that is not JSON, or changed meanwhile
            self._count("error")
            self._warn(f"an answer could not be written as JSON ({exc})")
            return
        try:
            fd = self._segment_for(len(data))
            written = os.write(fd, data)
            self._size += written
            if written != len(data):  # a disk that filled mid-line: this segment ends with a torn line
                raise OSError(f"only {written} of {len(data)} bytes were written")
        except OSError as exc:
            self._close_segment()  # the next line starts a new segment: none is appended to a torn line
            self._count("error")
            self._warn(f"{self.folder} cannot be written ({exc}); answers are served but not captured")
            return
        self._count("captured")

    def _segment_for(self, size: int) -> int:
        if self._fd is not None:
            try:
                gone = os.fstat(self._fd).st_nlink == 0  # deleted under us: by a person, or another process's trim
            except OSError:
                gone = True
            if gone or (self._size and self._size + size > self.segment_bytes):
                self._close_segment()
        if self._fd is None:
            self._open_segment()
            self._trim()
        return self._fd

    def _open_segment(self) -> None:
        make_folder(self.shard_dir)
        numbers = [segment_number(p) or 0 for p in shard_segments(self.shard_dir)]
        self._number = max([self._number, *numbers]) + 1
        self._path = self.shard_dir / segment_name(self._number)
        self._fd = open_append(self._path)
        self._size = 0

    def _close_segment(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _trim(self) -> None:
        """Delete the oldest segments of every shard until the store has room for the one just opened."""
        segments = []
        for shard in shard_dirs(self.folder):
            for path in shard_segments(shard):
                try:
                    st = path.stat()
                except OSError:
                    continue
                segments.append((st.st_mtime_ns, str(path), path, st.st_size))
        total = sum(s[3] for s in segments)
        budget = self.max_bytes - self.segment_bytes
        for _, _, path, size in sorted(segments):
            if total <= budget:
                break
            if path == self._path:
                continue
            try:
                lines = path.read_bytes().count(b"\n")
                path.unlink()
            except OSError:  # another process trimmed it first
                continue
            total -= size
            self._count("oldest", lines)

    def _count(self, kind: str, n: float = 1) -> None:
        self.counts[kind] += n
        if self._on_count is not None and n:
            try:
                self._on_count(kind, n)
            except Exception:  # noqa: BLE001 - a metrics hook must not stop capture
                logger.debug("capture count hook failed", exc_info=True)

    def _warn(self, message: str) -> None:
        t = time.monotonic()
        if t - self._warned_at >= WARN_EVERY_S:
            self._warned_at = t
            logger.warning("capture: %s", message)
