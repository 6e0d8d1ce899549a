"""Cold start and memory, each measured in a fresh Python process (see ``worker``)."""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def run_fresh(spec: dict, timeout: float = 900.0) -> dict:
    """One fresh process: what ``worker.measure`` reports, or ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="lora-router-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), "utf-8")
        cmd = [sys.executable, "-m", "lora_router.bench.worker", str(spec_path), str(out_path)]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd + [repr(t0)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out_path.is_file():
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
        return json.loads(out_path.read_text("utf-8"))


def fresh_rounds(specs: dict[str, dict], rounds: int) -> dict[str, dict]:
    """Every spec run ``rounds`` times, interleaved; medians of cold start and memory."""
    raw: dict[str, list] = {k: [] for k in specs}
    for r in range(rounds):
        for key, spec in specs.items():
            result = run_fresh(spec)
            logger.info("fresh process %s (round %d): %s", key, r + 1, result)
            raw[key].append(result)
    return {key: _median(results) for key, results in raw.items()}


def _median(results: list[dict]) -> dict:
    good = [r for r in results if "error" not in r]
    if not good:
        return {"error": results[0]["error"] if results else "not run", "n": 0}
    out: dict = {"n": len(good), "torch_imported": good[0].get("torch_imported")}
    for field in ("cold_start_s", "rss_mb", "peak_rss_mb", "rss_first_answer_mb", "import_s", "load_s", "wall_s"):
        values = [r[field] for r in good if field in r]
        if values:
            out[field] = round(statistics.median(values), 4 if field.endswith("_s") else 1)
    out["cold_start_all_s"] = [r.get("cold_start_s", r.get("wall_s")) for r in good]
    return out
