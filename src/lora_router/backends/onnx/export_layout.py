"""The export folder: its layout, ``manifest.json`` (``ExportManifest``), and the checks on reading it.

Written by ``lora_router.export``, read by ``OnnxRouter``. No torch here::

    manifest.json                       format, tasks, files + sha256, parity figures
    tokenizer.json                      the fast tokenizer (tokenizers)
    chain.json                          the chain ask() runs, with its thresholds
    tasks/<task>/task.json              the adapter's manifest from the hub
    tasks/<task>/knowledge_base.jsonl   question_answer's knowledge base (may grow)
    merged/<task>/model.onnx            merged adapter + head (Optimum folder)
    merged/<task>/model_quantized.onnx  the same, int8 (static, or dynamic: manifest "quantization")
    shared/encoder/model.onnx           the base encoder; LoRA matrices are inputs
    shared/encoder/model_quantized.onnx int8 encoder, LoRA path kept float
    shared/adapters/<task>.onnx_adapter one task's LoRA matrices (onnxruntime format)
    shared/heads/<task>.npz             one task's head (classifier.weight, .bias); also read by multi and trunk
    multi/encoder/model.onnx            every task in one graph: one row per (task, text), LoRA as constants
    multi/encoder/model_quantized.onnx  the same, int8
    multi/encoder/model_quantized_optimized.onnx  the int8 graph as onnxruntime optimised it (opens faster)
    trunk/encoder/model[_quantized].onnx  as multi, the layers below every adapter run once per text
    cascade/<task>.json, .npz           export --cascade: a classification task's n-gram first pass (numpy)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import ExportFormatError

MANIFEST_FILE = "manifest.json"
EXPORT_KIND = "lora-router-export"
FORMAT_VERSION = 1
LAYOUTS = ("merged", "shared", "multi", "trunk")
ONE_CALL_LAYOUTS = ("multi", "trunk")
PRECISIONS = ("fp32", "int8")
TOKENIZER_FILE = "tokenizer.json"
CHAIN_FILE = "chain.json"
MODEL_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
OPTIMIZED_QUANTIZED_FILE = "model_quantized_optimized.onnx"  # one-call layouts: as onnxruntime (CPU) optimises it
KNOWLEDGE_BASE_FILE = "knowledge_base.jsonl"


def task_dir(task: str) -> str:
    return f"tasks/{task}"


def merged_dir(task: str) -> str:
    return f"merged/{task}"


SHARED_ENCODER_DIR = "shared/encoder"


def encoder_dir(layout: str) -> str:
    """The encoder folder of the shared and one-call layouts."""
    return f"{layout}/encoder"


def adapter_file(task: str) -> str:
    return f"shared/adapters/{task}.onnx_adapter"


def head_file(task: str) -> str:
    return f"shared/heads/{task}.npz"


def cascade_model_file(task: str) -> str:
    return f"cascade/{task}.json"


def cascade_weights_file(task: str) -> str:
    return f"cascade/{task}.npz"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path, mutable: Iterable[str] = ()) -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``root`` but the manifest."""
    mutable = set(mutable)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_FILE:
            continue
        entry = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if rel in mutable:
            entry["mutable"] = True
        out[rel] = entry
    return out


@dataclass
class ExportManifest:
    """An export's ``manifest.json``: what it holds, how it was made, each file's sha256, the parity figures.

    ``tasks`` maps each task to what the runtime needs of it (spec, max_length,
    encoding, its task.json, and per layout its files); ``shared``, ``multi``
    and ``trunk`` describe the layouts' common graphs. ``to_dict`` writes
    exactly the document ``from_dict`` reads; unknown keys are kept (``extra``).
    """

    tasks: dict[str, dict[str, Any]]
    layouts: list[str]
    precisions: list[str]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> sha256, bytes, mutable
    format: int = FORMAT_VERSION
    kind: str = EXPORT_KIND
    id: str | None = None  # made anew by every export; None: exported before ids were written
    version: str | None = None  # the version it was exported as (export --export-version; default: its time)
    created: str = ""
    base_model: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None
    quantization: dict[str, Any] | None = None
    tokenizer: str = TOKENIZER_FILE
    chain: str = CHAIN_FILE
    thresholds: dict[str, float] = field(default_factory=dict)
    shared: dict[str, Any] | None = None
    multi: dict[str, Any] | None = None
    trunk: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] | None = None  # per task and layout: what the parity gate measured
    parity_bounds: dict[str, Any] | None = None
    cascade: dict[str, Any] | None = None  # export --cascade: per classification task its n-gram first pass
    extra: dict[str, Any] = field(default_factory=dict)

    def one_call(self, layout: str) -> dict[str, Any]:
        """The graph of a one-call layout (multi or trunk): its files per precision and task order."""
        graph = self.multi if layout == "multi" else self.trunk if layout == "trunk" else None
        if graph is None:
            raise ExportFormatError(f"this export has no {layout} layout; it has: {', '.join(self.layouts)}")
        return graph

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportManifest:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _ORDER:
            value = getattr(self, name)
            if value is not None or name in ("shared", "opset", "quantization"):
                out[name] = value
        return {**out, **self.extra}


# The order keys are written in; id, version, multi, trunk, parity, parity_bounds and cascade only when the export
# has them.
_ORDER = ("format", "kind", "id", "version", "created", "base_model", "opset", "layouts", "precisions",
          "quantization", "tokenizer", "chain", "thresholds", "tasks", "shared", "multi", "trunk", "versions",
          "files", "parity", "parity_bounds", "cascade")


def read_manifest(folder: str | Path) -> ExportManifest:
    """The manifest of an export folder, or ``ExportFormatError`` naming what is wrong."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise ExportFormatError(f"{folder} is not a folder; give the folder that lora-router export wrote")
    if not path.is_file():
        raise ExportFormatError(
            f"{folder} is not a lora-router export: it has no {MANIFEST_FILE}; "
            "make one with: lora-router export --out DIR"
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportFormatError(f"{path} is damaged ({exc}); export again with lora-router export") from None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind != EXPORT_KIND:
        raise ExportFormatError(
            f"{path} is not a lora-router export manifest (kind {kind!r}, expected {EXPORT_KIND!r}); "
            "give the folder that lora-router export wrote"
        )
    version = manifest.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExportFormatError(
            f"{path} has export format {version!r}, newer than this lora-router reads "
            f"(format {FORMAT_VERSION}); upgrade: pip install -U lora-router"
        )
    for key in ("tasks", "files", "layouts", "precisions"):
        if key not in manifest:
            raise ExportFormatError(f"{path} is damaged: it has no {key!r}; export again")
    root = folder.resolve()
    for rel in manifest["files"]:  # nothing is read unless listed here (check_listed), so this bounds every read
        if not (root / rel).resolve().is_relative_to(root):
            raise ExportFormatError(f"{path} lists {rel!r}, which is outside the export folder; an export only "
                                    "reads its own files: export again")
    return ExportManifest.from_dict(manifest)


def check_listed(folder: Path, manifest: ExportManifest, paths: Iterable[str]) -> None:
    """Every path is one the manifest lists (so inside the folder); before anything is opened."""
    for rel in paths:
        if rel not in manifest.files:
            raise ExportFormatError(f"{folder / rel} is not listed in {folder / MANIFEST_FILE}; the export is "
                                    "damaged, export again")


def verify_files(folder: Path, manifest: ExportManifest, paths: Iterable[str], *, hashes: bool = True) -> None:
    """Every path exists and (unless it may change, like a knowledge base) has its recorded sha256."""
    paths = list(paths)
    check_listed(folder, manifest, paths)
    for rel in paths:
        path, entry = folder / rel, manifest.files[rel]
        if not path.is_file():
            raise ExportFormatError(f"{path} is missing from the export; copy the whole folder or export again")
        if not hashes or entry.get("mutable"):
            continue
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ExportFormatError(
                f"{path} was altered: its sha256 differs from the one in {MANIFEST_FILE}; "
                "restore the file or export again"
            )
