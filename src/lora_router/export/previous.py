"""The export in service and the one it replaced, side by side, so a rollback is a swap of two folders.

``lora-router export --out DIR`` writes beside DIR and swaps the new folder in
(``folder.py``); the folder it replaces is kept as ``DIR.previous`` (the one
before that is deleted: one step back is what a rollback needs, and an export
is hundreds of megabytes). ``roll_back(DIR)`` swaps the two, so DIR.previous
serves again and what was DIR becomes DIR.previous: a second rollback rolls
forward. ``put_back(DIR, id)`` undoes an ``export --out`` whose export the
service refused: the refused one to ``DIR.refused``, the one in service back
to DIR, so a restart never loads an export that was refused. Every move is a rename within DIR's parent folder, under an
exclusive lock (``.DIR.lock``), and a swap names the export it expects to
replace, so two service workers asked at once swap once. No torch here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import uuid
from pathlib import Path

from ..backends.onnx.export_layout import MANIFEST_FILE
from ..errors import ExportError

PREVIOUS_SUFFIX = ".previous"
REFUSED_SUFFIX = ".refused"


def previous_dir(out_dir: str | Path) -> Path:
    """Where the export that ``out_dir`` replaced is kept: ``DIR.previous`` beside it."""
    out = Path(out_dir)
    return out.with_name(out.name + PREVIOUS_SUFFIX)


def export_identity(folder: str | Path) -> dict | None:
    """``{"id", "version"}`` of the export in ``folder`` (from its manifest.json); None when there is none."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return {"id": manifest.get("id"), "version": manifest.get("version")}


@contextlib.contextmanager
def locked(out_dir: Path):
    """Hold ``.DIR.lock`` beside ``out_dir`` exclusively: one swap at a time, across processes."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def swap_in(new: Path, out_dir: Path) -> None:
    """Rename ``new`` to ``out_dir``; an export already there becomes ``DIR.previous`` (an older one is deleted)."""
    previous, tag = previous_dir(out_dir), uuid.uuid4().hex[:8]
    trash = out_dir.parent / f".{out_dir.name}.old-{tag}"
    with locked(out_dir):
        keep = out_dir.exists() and (out_dir / MANIFEST_FILE).is_file()
        if out_dir.exists():
            if keep and previous.exists():
                previous.rename(trash)
            out_dir.rename(previous if keep else trash)
        try:
            new.rename(out_dir)
        except BaseException:
            if not out_dir.exists():
                (previous if keep else trash).rename(out_dir)
                if keep and trash.exists():
                    trash.rename(previous)
            raise
        shutil.rmtree(trash, ignore_errors=True)


def roll_back(out_dir: str | Path, expect_id: str | None = None) -> dict:
    """Swap ``DIR.previous`` and ``DIR``; return the identity of the export now in DIR.

    ``expect_id``: the id of the export the caller wants to replace; when DIR
    already holds another (someone rolled back first), nothing moves and the
    identity of what DIR holds is returned. ``ExportError`` when there is no
    previous export to return to.
    """
    out = Path(out_dir)
    previous = previous_dir(out)
    with locked(out):
        current = export_identity(out)
        if expect_id is not None and current is not None and current["id"] != expect_id:
            return current
        if export_identity(previous) is None:
            raise ExportError(f"no previous export to roll back to: {previous} does not hold one (each "
                              f"`lora-router export --out {out}` keeps the export it replaces there)")
        aside = out.parent / f".{out.name}.rollback-{uuid.uuid4().hex[:8]}"
        _exchange(out, previous, aside)
        aside.rename(previous)
        return export_identity(out)


def refused_dir(out_dir: str | Path) -> Path:
    """Where a candidate the service refused is kept for a look: ``DIR.refused`` beside it."""
    out = Path(out_dir)
    return out.with_name(out.name + REFUSED_SUFFIX)


def put_back(out_dir: str | Path, served_id: str | None) -> bool:
    """After a refused promotion: the refused candidate in DIR goes to ``DIR.refused`` (one kept) and the export in
    service (id ``served_id``, kept as ``DIR.previous`` by ``export --out``) back to DIR, so a restart loads what
    served. False, and nothing moved, when DIR.previous does not hold ``served_id`` (already put back by another
    worker, or the export in service is gone from disk)."""
    out = Path(out_dir)
    previous, refused = previous_dir(out), refused_dir(out)
    with locked(out):
        kept = export_identity(previous)
        if served_id is None or kept is None or kept["id"] != served_id or export_identity(out) is None:
            return False
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        if refused.exists():
            refused.rename(trash)
        _exchange(out, previous, refused)
        shutil.rmtree(trash, ignore_errors=True)
        return True


def _exchange(out: Path, incoming: Path, outgoing: Path) -> None:
    """``out`` moves to ``outgoing`` and ``incoming`` takes its place; ``out`` goes back if that fails."""
    out.rename(outgoing)
    try:
        incoming.rename(out)
    except BaseException:
        outgoing.rename(out)
        raise
