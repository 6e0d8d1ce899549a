"""Fresh processes: each loads one thing and answers, for cold start and resident memory.

``run_fresh(spec)`` starts ``python -m lora_router.bench.worker SPEC.json
OUT.json T0``; ``T0`` is the parent's ``time.time()`` just before it started
the process, so a cold start includes the interpreter's own start-up and every
import. ``spec["mode"]`` says what the process does: ``ask`` or ``predict``
with a contender, ``import_torch`` or ``import_onnx`` only, or ``figures``
(one configuration of the export figures suite). An ONNX contender never
imports torch here.
"""

from __future__ import annotations

import importlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# What the reference processes import, and nothing else.
IMPORTS = {"import_torch": ("peft", "torch", "transformers"), "import_onnx": ("numpy", "onnxruntime", "tokenizers")}


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, in MB (MiB)."""
    # VmHWM, not getrusage's ru_maxrss: that one may keep the parent's peak from before the exec
    lines = (line.partition(":") for line in Path("/proc/self/status").read_text().splitlines())
    kb = {key: int(value.split()[0]) for key, _, value in lines if key in ("VmRSS", "VmHWM")}
    return round(kb["VmRSS"] / 1024, 1), round(kb["VmHWM"] / 1024, 1)


def run_fresh(spec: dict, timeout: float = 900.0) -> dict:
    """One fresh process: what ``measure`` reports, or ``{"error": ...}``."""
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
        return {"error": results[0]["error"], "n": 0}
    out: dict = {"n": len(good), "torch_imported": good[0].get("torch_imported")}
    for field in ("cold_start_s", "rss_mb", "peak_rss_mb", "rss_first_answer_mb", "import_s", "load_s", "wall_s"):
        values = [r[field] for r in good if field in r]
        if values:
            out[field] = round(statistics.median(values), 4 if field.endswith("_s") else 1)
    out["cold_start_all_s"] = [r.get("cold_start_s", r.get("wall_s")) for r in good]
    return out


def measure(spec: dict, t0: float) -> dict:
    """Load, answer once (cold start), answer ``repeats`` more times, read the memory."""
    mode = spec.get("mode", "ask")
    if mode == "figures":
        from .export_figures import measure_configuration

        return measure_configuration(spec, t0)
    if mode in IMPORTS:
        for module in IMPORTS[mode]:
            importlib.import_module(module)
        return _done(t0, spec)

    from ..core.chain import Chain
    from ..tasks import get_task
    from .contenders import TORCH_KEYS, load_contender
    from .fixture import bench_chain

    key = spec["key"]
    if key in TORCH_KEYS:
        import torch

        torch.set_num_threads(spec["threads"])
    chain = Chain.from_dict(bench_chain({t: get_task(t) for t in spec["chain_tasks"]}, tuple(spec["chain_tasks"])))
    t_load = time.time()
    contender = load_contender(
        key, base_dir=Path(spec["base_dir"]), hub_dir=Path(spec["hub_dir"]),
        export_dir=Path(spec["export_dir"]) if spec.get("export_dir") else None, tasks=spec["tasks"], chain=chain,
        device=spec["device"], fp16=spec.get("fp16", False), threads=spec["threads"],
    )
    loaded = time.time()

    def answer() -> None:
        if mode == "predict":
            contender.predict_batch(spec["chain_tasks"][0], [spec["text"]])
        else:
            contender.ask(spec["text"])

    answer()
    first = time.time()
    rss_first, _ = rss_mb()
    for _ in range(spec.get("repeats", 3)):
        answer()
    out = _done(t0, spec)
    out.update(cold_start_s=round(first - t0, 4), import_s=round(t_load - t0, 4), load_s=round(loaded - t_load, 4),
               rss_first_answer_mb=rss_first)
    return out


def _done(t0: float, spec: dict) -> dict:
    current, peak = rss_mb()
    return {"key": spec.get("key"), "mode": spec.get("mode", "ask"), "rss_mb": current, "peak_rss_mb": peak,
            "wall_s": round(time.time() - t0, 4), "torch_imported": "torch" in sys.modules}


if __name__ == "__main__":
    spec_path, out_path, t0 = sys.argv[1:4]
    Path(out_path).write_text(json.dumps(measure(json.loads(Path(spec_path).read_text("utf-8")), float(t0))), "utf-8")
