"""The ONNX exports the benchmark times, made with ``lora_router.export.export_hub``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import LoraRouterError

logger = logging.getLogger(__name__)


PARITY_RECORDS = 8


def export_for_bench(base_dir: Path, hub_dir: Path, out_dir: Path, *, tasks: list[str] | None = None,
                     quantize: str = "int8", layout: str = "both", progress: bool = False) -> dict:
    """Export the hub; ``{"dir", "seconds", "manifest", "parity"}`` or ``{"error": reason}``.

    The parity gate checks the first ``PARITY_RECORDS`` test records of each
    task (the benchmark times speed; the export's own tests check accuracy).
    On a random base an int8 model can miss the gate; the export is then
    repeated without it and the miss is recorded.
    """
    from ..adapters import AdapterHub
    from ..data import load_bundled

    names = tasks or AdapterHub(hub_dir).tasks()
    records = {t: load_bundled(t, "test")[:PARITY_RECORDS] for t in names}
    try:
        from ..export import export_hub
    except ImportError as exc:
        return {"error": f"lora_router.export is not importable ({exc})"}
    out_dir = Path(out_dir)
    parity: str = "passed"
    t0 = time.perf_counter()
    try:
        manifest = export_hub(str(base_dir), str(hub_dir), str(out_dir), tasks=tasks, quantize=quantize,
                              layout=layout, parity=True, progress=progress, parity_records=records)
    except LoraRouterError as exc:
        if "parity" not in str(exc).lower():
            return {"error": f"{type(exc).__name__}: {exc}"}
        parity = f"missed, exported without the gate: {exc}"
        logger.warning("export parity gate missed on the random base: %s", exc)
        try:
            manifest = export_hub(str(base_dir), str(hub_dir), str(out_dir), tasks=tasks, quantize=quantize,
                                  layout=layout, parity=False, progress=progress)
        except Exception as exc2:  # noqa: BLE001 - a failed export is a result to report
            return {"error": f"{type(exc2).__name__}: {exc2}"}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"dir": str(out_dir), "seconds": round(time.perf_counter() - t0, 1), "manifest": manifest,
            "parity": parity, "parity_records_per_task": PARITY_RECORDS, "quantize": quantize, "layout": layout,
            "tasks": names}


def folder_mb(folder: str | Path) -> float:
    """Size of the files under ``folder`` in MB (MiB)."""
    return round(sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20, 1)
