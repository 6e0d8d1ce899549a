"""``CaptureStore``: read a capture store (every shard, merged) and add feedback to it.

Readers never need the writers to stop: each shard's segments are read in
order, the shards merged by time, a line still being written is left for the
next reading. ``find`` keeps an index of where each id is, extended by what
was appended since the last call, so feedback on a large store reads only
the new lines.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import CaptureError, UnknownCaptureError
from .feedback import feedback_line
from .layout import (
    FEEDBACK_DIR,
    LABELS_DIR,
    encode_line,
    make_folder,
    new_shard,
    open_append,
    read_lines,
    shard_dirs,
    shard_segments,
)


class CaptureStore:
    """The captured answers and their feedback in ``folder``, as written by ``CaptureWriter``s.

    >>> store = CaptureStore("./captures")
    >>> for record in store.records():          # oldest first, across every process that captured
    ...     record["id"], record["question"], record["answer"]["route"], record["feedback"]
    >>> store.add_feedback(record["id"], verdict="down", route="task")
    """

    def __init__(self, folder: str | Path, *, shard: str | None = None):
        self.folder = Path(folder).expanduser()
        self.shard = shard or new_shard()  # the feedback file this store appends to
        self._lock = threading.Lock()
        self._indexed: dict[Path, int] = {}  # segment -> bytes read into the index
        self._where: dict[str, tuple[Path, int]] = {}  # capture id -> (segment, offset) of its newest line

    def __repr__(self) -> str:
        return f"CaptureStore({str(self.folder)!r})"

    @property
    def labels_dir(self) -> Path:
        """Where the review console writes corrections (``<task>.jsonl``, the training format)."""
        return self.folder / LABELS_DIR

    # ------------------------------------------------------------ reading
    def records(self, *, feedback: bool = True) -> Iterator[dict]:
        """Every captured answer, oldest first across shards; each with ``record["feedback"]`` (a list, oldest
        first) unless ``feedback`` is false."""
        given = self.feedback() if feedback else None
        shards = [self._shard_records(d) for d in shard_dirs(self.folder)]
        for record in heapq.merge(*shards, key=lambda r: str(r.get("time", ""))):
            if given is not None:
                record["feedback"] = given.get(record["id"], [])
            yield record

    def find(self, capture_id: str) -> dict | None:
        """The newest captured answer with this id (with its feedback), or None."""
        with self._lock:
            self._extend_index()
            where = self._where.get(capture_id)
        if where is None:
            return None
        for _, _, record in read_lines(*where):
            if record is not None and record.get("id") == capture_id:
                record["feedback"] = self.feedback().get(capture_id, [])
                return record
            break
        return None  # its segment was dropped (the store was full) since it was indexed

    def feedback(self) -> dict[str, list[dict]]:
        """Every feedback line, by capture id, oldest first."""
        out: dict[str, list[dict]] = {}
        try:
            files = sorted((self.folder / FEEDBACK_DIR).glob("*.jsonl"))
        except OSError:
            files = []
        lines = [line for f in files for _, _, line in read_lines(f) if line is not None and "id" in line]
        for line in sorted(lines, key=lambda fb: str(fb.get("time", ""))):
            out.setdefault(line["id"], []).append(line)
        return out

    def __len__(self) -> int:
        with self._lock:
            self._extend_index()
            return len(self._where)

    # ------------------------------------------------------------ writing feedback
    def add_feedback(self, capture_id: str, *, verdict: str | None = None, route: str | None = None,
                     labels: Mapping[str, str] | None = None, file_names: Sequence[str] | None = None,
                     kb_id: str | None = None, no_entry: bool = False, comment: str = "",
                     label_sets: Mapping[str, Sequence[str]] | None = None) -> dict:
        """Store feedback on a captured answer beside it; the line written.

        ``UnknownCaptureError`` when no answer has this id, ``InputError`` for
        feedback that does not fit the answer (see ``capture.feedback``),
        ``CaptureError`` when the store cannot be written.
        """
        record = self.find(capture_id)
        if record is None:
            raise UnknownCaptureError(f"no captured answer has id {capture_id!r} in {self.folder}; feedback names "
                                      "the request_id an answer came with (answers are captured with --capture)")
        line = feedback_line(record, verdict=verdict, route=route, labels=labels, file_names=file_names,
                             kb_id=kb_id, no_entry=no_entry, comment=comment, label_sets=label_sets)
        folder = self.folder / FEEDBACK_DIR
        try:
            make_folder(folder)
            fd = open_append(folder / f"{self.shard}.jsonl")
            try:
                data = encode_line(line)
                if os.write(fd, data) != len(data):
                    raise OSError("the disk took only part of the line")
            finally:
                os.close(fd)
        except OSError as exc:
            raise CaptureError(f"feedback cannot be saved in {folder}: {exc}") from None
        return line

    # ------------------------------------------------------------ internals
    def _shard_records(self, shard_dir: Path) -> Iterator[dict]:
        for segment in shard_segments(shard_dir):
            for _, _, record in read_lines(segment):
                if record is not None and "id" in record:
                    yield record

    def _extend_index(self) -> None:
        """Index the lines appended since the last call; forget segments that were dropped."""
        present = set()
        for shard in shard_dirs(self.folder):
            for segment in shard_segments(shard):
                present.add(segment)
                start = self._indexed.get(segment, 0)
                try:
                    if segment.stat().st_size <= start:
                        continue
                except OSError:
                    continue
                for offset, end, record in read_lines(segment, start):
                    if record is not None and isinstance(record.get("id"), str):
                        self._where[record["id"]] = (segment, offset)
                    start = end
                self._indexed[segment] = start
        gone = set(self._indexed) - present
        if gone:
            for segment in gone:
                del self._indexed[segment]
            self._where = {k: v for k, v in self._where.items() if v[0] not in gone}

