"""The capture store on disk: one folder, a shard per writing process, JSON lines. No server, no lock.

Layout of ``DIR``::

    captures/<shard>/<segment:06d>.jsonl   captured answers, one JSON object per line
    feedback/<shard>.jsonl                 feedback on captured answers, one JSON object per line
    labels/<task>.jsonl                    corrections in the training format (the review console writes them)

A shard is ``<hostname>-<pid>-<4 random hex>``: every process (a uvicorn
worker, a Ray replica, a script) appends only to files of its own shard, so
several processes never write one file and need no lock; readers merge the
shards. Each line is written whole by one ``write`` call; a reader takes only
lines that end in a newline (the last one may still be on its way).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LINE_VERSION = 1
CAPTURES_DIR = "captures"
FEEDBACK_DIR = "feedback"
LABELS_DIR = "labels"
SEGMENT_SUFFIX = ".jsonl"
# Captured questions and answers are personal data: only the user who serves may read them.
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def new_shard() -> str:
    """A name no other process writing to the store has: ``<hostname>-<pid>-<4 random hex>``."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


def now() -> str:
    """UTC time, ISO-8601 to the microsecond: strings that sort as times do."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1_000_000):06d}Z"


def segment_name(number: int) -> str:
    return f"{number:06d}{SEGMENT_SUFFIX}"


def segment_number(path: Path) -> int | None:
    stem = path.name[: -len(SEGMENT_SUFFIX)] if path.name.endswith(SEGMENT_SUFFIX) else ""
    return int(stem) if stem.isdigit() else None


def shard_segments(shard_dir: Path) -> list[Path]:
    """A shard's segments, oldest first (by number)."""
    try:
        found = [(segment_number(p), p) for p in shard_dir.iterdir()]
    except OSError:
        return []
    return [p for n, p in sorted((n, p) for n, p in found if n is not None)]


def shard_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in (folder / CAPTURES_DIR).iterdir() if p.is_dir())
    except OSError:
        return []


def make_folder(path: Path) -> None:
    """``path`` and its parents, each one made here readable by this user only."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process made it meanwhile (or it is a file: the next open says so)
            continue
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode is cut by the umask


def open_append(path: Path) -> int:
    """A file descriptor appending to ``path`` (created 0600): every ``os.write`` lands at the end, whole."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once: json.dumps makes one a call


def encode_line(obj: dict) -> bytes:
    return (_ENCODER.encode(obj) + "\n").encode("utf-8")


def read_lines(path: Path, start: int = 0) -> Iterator[tuple[int, int, dict | None]]:
    """``(offset, next offset, object)`` of each whole line of ``path`` from byte ``start``.

    A line without its newline (still being written) ends the reading; a line
    that is not a JSON object (a disk that filled in the middle of a write)
    comes as None. A file that is gone reads as empty.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            offset = start
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return
                try:
                    obj = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    obj = None
                yield offset, offset + len(raw), obj if isinstance(obj, dict) else None
                offset += len(raw)
    except OSError:
        return
