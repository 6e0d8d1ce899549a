"""Figures of the ONNX export on a random model: sizes, RSS, cold start, chain latency, parity.

Steps (each skipped when its output is already in ``work_dir``):

1. ``init_base(work/base, size)`` (random weights) and four adapters trained one
   epoch on a few bundled records (so LoRA B is not zero);
2. ``export_hub`` to work/export, every layout, fp32 and int8 (timed);
3. the parity figures on the bundled test splits (the export's own gate code);
4. fresh processes (``worker``), one per configuration, importing only the
   runtime: RSS after the first answer, cold start (process start -> first
   answer), and medians over ``runs`` of ``ask`` and of a fixed three-step
   chain on a 16-token question, with onnxruntime thread spinning off (the
   runtime's default) and on;
5. the PyTorch router for comparison.

These machines are noisy (other jobs share the cores): compare ratios within
one run; the load average is recorded.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

from .fixture import CHAIN_TASKS, HUB_TASKS
from .timing import median_ms
from .worker import rss_mb, run_fresh

logger = logging.getLogger(__name__)

QUESTION = "帮我把上月订单表导入到ODS层里"  # 16 tokens with [CLS] and [SEP]
TRAIN_RECORDS = 16


def run_export_figures(out: str | Path, *, work_dir: str | Path = "/tmp/lr-export", size: str = "base",
                       runs: int = 50, parity: bool = True, parity_limit: int | None = None,
                       torch: bool = True) -> dict:
    """Make (or reuse) the model, hub and export in ``work_dir``, measure them, write the figures to ``out``."""
    warnings.simplefilter("ignore")  # training and the parity gate on a random base warn at every step
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"size": size, "question": QUESTION, "runs": runs, "cpu_count": os.cpu_count(),
                     "load_average_start": os.getloadavg()}
    t = time.perf_counter()
    base, hub = trained_hub(work, size)
    figures["setup_s"] = round(time.perf_counter() - t, 1)
    export = work / "export"
    if not (export / "manifest.json").is_file():
        from .fixture import export_for_bench

        made = export_for_bench(Path(base), hub, export, layout="all", gate=False, progress=True)
        if "error" in made:
            from ..errors import ExportError

            raise ExportError(f"the benchmark's export failed: {made['error']}")
        figures["export_s"] = made["seconds"]
    manifest = json.loads((export / "manifest.json").read_text("utf-8"))
    figures["quantization"] = manifest["quantization"]
    figures["files"] = file_sizes(export)
    if parity:
        t = time.perf_counter()
        figures["parity"] = parity_report(base, hub, export, manifest["layouts"], manifest["precisions"], parity_limit)
        figures["parity_s"] = round(time.perf_counter() - t, 1)

    measured = {}
    common = {"mode": "figures", "engine": "onnx", "export": str(export)}
    for layout in ("merged", "shared"):
        for precision in ("fp32", "int8"):
            measured[f"one_model/{layout}/{precision}"] = run_fresh(
                {**common, "layout": layout, "precision": precision, "tasks": [CHAIN_TASKS[0]], "runs": 0}, 1800)
            for spinning in (False, True):
                name = f"four_tasks/{layout}/{precision}/spinning_{'on' if spinning else 'off'}"
                measured[name] = run_fresh({**common, "layout": layout, "precision": precision,
                                            "tasks": list(HUB_TASKS), "runs": runs, "spinning": spinning}, 1800)
                logger.info("%s %s", name, measured[name])
    if torch:
        measured["four_tasks/pytorch"] = run_fresh({"mode": "figures", "engine": "torch", "base": base,
                                                    "hub": str(hub), "tasks": list(HUB_TASKS),
                                                    "runs": max(10, runs // 5)}, 1800)
    figures["runs"] = measured
    figures["load_average_end"] = os.getloadavg()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return figures


def measure_configuration(spec: dict, t0: float) -> dict:
    """In a fresh process: load one configuration, answer once, read the memory, then time the chain."""
    started = time.perf_counter()
    if spec["engine"] == "torch":
        warnings.simplefilter("ignore")
        from ..backends.torch_peft import Router

        t_import = time.perf_counter()
        router = Router(spec["base"], spec["hub"], tasks=spec["tasks"])
    else:
        from ..backends.onnx import OnnxRouter

        t_import = time.perf_counter()
        router = OnnxRouter(spec["export"], layout=spec["layout"], precision=spec["precision"], tasks=spec["tasks"],
                            spinning=spec.get("spinning", False))
    t_load = time.perf_counter()
    first = router.ask(QUESTION) if len(spec["tasks"]) > 1 else router.predict(spec["tasks"][0], QUESTION)
    t_first = time.perf_counter()
    first_answer_at = time.time()
    rss, peak = rss_mb()
    result = {"import_s": round(t_import - started, 3), "load_s": round(t_load - t_import, 3),
              "first_answer_s": round(t_first - t_load, 3), "rss_mb": rss, "peak_rss_mb": peak}
    if len(spec["tasks"]) > 1:
        result["ask_route"] = first["route"]
        result["ask_steps"] = [s["task"] for s in first["steps"]]
    runs = spec.get("runs", 0)
    if runs:
        task = spec["tasks"][0]
        router.predict(task, QUESTION)
        result["one_forward_ms"] = median_ms(lambda: router.predict(task, QUESTION), runs)
        if set(CHAIN_TASKS) <= set(spec["tasks"]):
            result["three_steps_ms"] = median_ms(lambda: [router.predict(t, QUESTION) for t in CHAIN_TASKS], runs)
            result["ask_ms"] = median_ms(lambda: router.ask(QUESTION), runs)
        result["rss_after_runs_mb"] = rss_mb()[0]
    result["cold_start_s"] = round(first_answer_at - t0, 3)
    return result


def trained_hub(work: Path, size: str) -> tuple[str, Path]:
    """A random ``size`` base and the four tasks' adapters, each trained one epoch on ``TRAIN_RECORDS`` records."""
    from ..adapters import AdapterHub
    from ..config import TrainSettings
    from ..data import load_bundled
    from ..modeling import init_base
    from ..tasks import get_task
    from ..training import train

    base = work / "base"
    if not (base / "config.json").is_file():
        init_base(base, size)
    hub = AdapterHub(work / "hub")
    for task in HUB_TASKS:
        if hub.has(task):
            continue
        records = load_bundled(task, "train")
        step = max(1, len(records) // TRAIN_RECORDS)
        data, test = work / f"{task}.train.jsonl", work / f"{task}.test.jsonl"
        for path, rows in ((data, records[::step][:TRAIN_RECORDS]), (test, load_bundled(task, "test")[:8])):
            path.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows), "utf-8")
        train(get_task(task), base_model=str(base), hub=hub, data=data, test_data=test, progress=False,
              settings=TrainSettings(epochs=1, learning_rate=5e-3, warmup_steps=0, batch_size=8))
    return str(base), hub.root


def parity_report(base: str, hub: Path, export: Path, layouts, precisions, limit: int | None) -> dict:
    """The parity gate's figures for every layout and precision of the export, and whether the gate passes."""
    from ..backends.onnx import OnnxRouter
    from ..backends.torch_peft import Router
    from ..data import load_bundled
    from ..export.parity import parity_problems, task_parity

    torch_router = Router(base, hub)
    report, problems = {}, []
    for layout in layouts:
        for precision in precisions:
            onnx_router = OnnxRouter(export, layout=layout, precision=precision, verify=False)
            for task in HUB_TASKS:
                figures = task_parity(torch_router, onnx_router, task, load_bundled(task, "test")[:limit])
                report.setdefault(task, {}).setdefault(layout, {})[precision] = figures
                problems += parity_problems(task, layout, precision, figures)
            del onnx_router
    return {"figures": report, "gate_problems": problems, "gate_passed": not problems}


def file_sizes(export: Path) -> dict:
    """MB of the merged models per task and of the shared encoder and adapters, from the export's manifest."""
    m = json.loads((export / "manifest.json").read_text("utf-8"))
    mb = {rel: round(e["bytes"] / 2**20, 2) for rel, e in m["files"].items()}
    out: dict = {"merged": {}, "shared": {}}
    for precision in m["precisions"]:
        per_task = {t: mb[info["merged"][precision]] for t, info in m["tasks"].items()}
        out["merged"][precision] = {"per_task_mb": per_task, "four_tasks_mb": round(sum(per_task.values()), 1)}
        enc = m["shared"][precision]
        extras = [p for t in m["tasks"].values() for p in (t["shared"]["adapter"], t["shared"]["head"])]
        out["shared"][precision] = {"encoder_mb": mb[enc],
                                    "adapter_mb": {t: mb[i["shared"]["adapter"]] for t, i in m["tasks"].items()},
                                    "four_tasks_mb": round(sum(mb[p] for p in [enc] + extras), 1)}
    out["whole_export_mb"] = round(sum(mb.values()), 1)
    return out
