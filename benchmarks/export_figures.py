"""Figures of the ONNX export on a base-size random model: sizes, RSS, cold start, chain latency, parity.

    python benchmarks/export_figures.py --work-dir /tmp/lr-export --out benchmarks/results/export_figures.json

Steps (each skipped when its output is already in --work-dir):

1. ``init_base(work/base, "base")`` (bert-base-chinese's shape, random weights) and
   four adapters trained one epoch on a few bundled records (so LoRA B is not zero);
2. ``export_hub`` to work/export, both layouts, fp32 and int8 (timed);
3. the parity figures on the bundled test splits (the export's own gate code);
4. fresh processes, one per configuration, importing only the runtime: RSS after
   the first answer, cold start (process start -> first answer), and medians over
   --runs of ``ask`` and of a fixed three-step chain (question_classifier ->
   question_type_classifier -> file_name_pick) on a 16-token question, with
   onnxruntime thread spinning off (the runtime's default) and on;
5. the PyTorch router for comparison.

Writes one JSON file and prints a table. These machines are noisy (other jobs
share the cores): compare ratios within one run; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "帮我把上月订单表导入到ODS层里"  # 16 tokens with [CLS] and [SEP]
CHAIN = ("question_classifier", "question_type_classifier", "file_name_pick")
TASKS = ("question_classifier", "question_type_classifier", "file_name_pick", "question_answer")
TRAIN_RECORDS = 16


# ---------------------------------------------------------------- worker (a fresh process)
def _rss_mb() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def worker(spec: dict) -> dict:
    """Load one configuration, answer once, report memory, then time the chain."""
    t0 = time.perf_counter()
    if spec["engine"] == "torch":
        import warnings

        warnings.simplefilter("ignore")
        from lora_router.backends.torch_peft import Router

        t_import = time.perf_counter()
        router = Router(spec["base"], spec["hub"], tasks=spec["tasks"])
    else:
        from lora_router.backends.onnx import OnnxRouter

        t_import = time.perf_counter()
        router = OnnxRouter(spec["export"], layout=spec["layout"], precision=spec["precision"], tasks=spec["tasks"],
                            spinning=spec.get("spinning", False))
    t_load = time.perf_counter()
    first = router.ask(QUESTION) if len(spec["tasks"]) > 1 else router.predict(spec["tasks"][0], QUESTION)
    t_first = time.perf_counter()
    result = {"first_answer_at": time.time(), "import_s": round(t_import - t0, 3),
              "load_s": round(t_load - t_import, 3), "first_answer_s": round(t_first - t_load, 3), **_rss_mb()}
    if len(spec["tasks"]) > 1:
        result["ask_route"] = first["route"]
        result["ask_steps"] = [s["task"] for s in first["steps"]]
    runs = spec.get("runs", 0)
    if runs:
        task = spec["tasks"][0]
        router.predict(task, QUESTION)
        result["one_forward_ms"] = _median_ms(lambda: router.predict(task, QUESTION), runs)
        if set(CHAIN) <= set(spec["tasks"]):
            result["three_steps_ms"] = _median_ms(lambda: [router.predict(t, QUESTION) for t in CHAIN], runs)
            result["ask_ms"] = _median_ms(lambda: router.ask(QUESTION), runs)
        result["rss_after_runs_mb"] = _rss_mb()["rss_mb"]
    return result


def run_worker(spec: dict) -> dict:
    """``worker(spec)`` in a fresh interpreter; adds cold start (process start -> first answer)."""
    started = time.time()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["cold_start_s"] = round(result.pop("first_answer_at") - started, 3)
    return result


# ---------------------------------------------------------------- setup
def make_hub(work: Path, size: str) -> tuple[str, Path]:
    import warnings

    from lora_router.adapters import AdapterHub
    from lora_router.config import TrainSettings
    from lora_router.data import load_bundled
    from lora_router.modeling import init_base
    from lora_router.tasks import get_task
    from lora_router.training import train

    warnings.simplefilter("ignore")
    base = work / "base"
    if not (base / "config.json").is_file():
        init_base(base, size)
    hub = AdapterHub(work / "hub")
    for task in TASKS:
        if hub.has(task):
            continue
        records = load_bundled(task, "train")
        step = max(1, len(records) // TRAIN_RECORDS)
        data = work / f"{task}.train.jsonl"
        data.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                                for r in records[::step][:TRAIN_RECORDS]), "utf-8")
        test = work / f"{task}.test.jsonl"
        test.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                                for r in load_bundled(task, "test")[:8]), "utf-8")
        train(get_task(task), base_model=str(base), hub=hub, data=data, test_data=test, progress=False,
              settings=TrainSettings(epochs=1, learning_rate=5e-3, warmup_steps=0, batch_size=8))
    return str(base), hub.root


def parity_report(base: str, hub: Path, export: Path, layouts, precisions, limit: int | None) -> dict:
    import warnings

    from lora_router.backends.onnx import OnnxRouter
    from lora_router.backends.torch_peft import Router
    from lora_router.data import load_bundled
    from lora_router.export.parity import parity_problems, task_parity

    warnings.simplefilter("ignore")
    torch_router = Router(base, hub)
    report, problems = {}, []
    for layout in layouts:
        for precision in precisions:
            onnx_router = OnnxRouter(export, layout=layout, precision=precision, verify=False)
            for task in TASKS:
                figures = task_parity(torch_router, onnx_router, task, load_bundled(task, "test")[:limit])
                report.setdefault(task, {}).setdefault(layout, {})[precision] = figures
                problems += parity_problems(task, layout, precision, figures)
            del onnx_router
    return {"figures": report, "gate_problems": problems, "gate_passed": not problems}


def file_sizes(export: Path) -> dict:
    m = json.loads((export / "manifest.json").read_text("utf-8"))
    mb = {rel: round(e["bytes"] / 2**20, 2) for rel, e in m["files"].items()}

    def total(paths):
        return round(sum(mb[p] for p in paths), 1)

    out = {"merged": {}, "shared": {}}
    for precision in m["precisions"]:
        per_task = {t: mb[info["merged"][precision]] for t, info in m["tasks"].items()}
        out["merged"][precision] = {"per_task_mb": per_task, "four_tasks_mb": round(sum(per_task.values()), 1)}
        enc = m["shared"][precision]
        extras = [p for t in m["tasks"].values() for p in (t["shared"]["adapter"], t["shared"]["head"])]
        out["shared"][precision] = {"encoder_mb": mb[enc],
                                    "adapter_mb": {t: mb[i["shared"]["adapter"]] for t, i in m["tasks"].items()},
                                    "four_tasks_mb": total([enc] + extras)}
    out["whole_export_mb"] = round(sum(mb.values()), 1)
    return out


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/lr-export"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export_figures.json"))
    parser.add_argument("--size", default="base", choices=["tiny", "base"])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--parity-limit", type=int, default=None,
                        help="check only the first N records of each bundled test split (time on 2 cores)")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"size": args.size, "question": QUESTION, "runs": args.runs, "cpu_count": os.cpu_count(),
                     "load_average_start": os.getloadavg()}
    t = time.perf_counter()
    base, hub = make_hub(work, args.size)
    figures["setup_s"] = round(time.perf_counter() - t, 1)
    export = work / "export"
    if not (export / "manifest.json").is_file():
        from lora_router.export import export_hub

        t = time.perf_counter()
        export_hub(base, hub, export, parity=False, progress=True)
        figures["export_s"] = round(time.perf_counter() - t, 1)
    manifest = json.loads((export / "manifest.json").read_text("utf-8"))
    figures["quantization"] = manifest["quantization"]
    figures["files"] = file_sizes(export)
    if not args.skip_parity:
        t = time.perf_counter()
        figures["parity"] = parity_report(base, hub, export, manifest["layouts"], manifest["precisions"],
                                          args.parity_limit)
        figures["parity_s"] = round(time.perf_counter() - t, 1)

    runs = {}
    common = {"engine": "onnx", "export": str(export)}
    for layout in ("merged", "shared"):
        for precision in ("fp32", "int8"):
            runs[f"one_model/{layout}/{precision}"] = run_worker(
                {**common, "layout": layout, "precision": precision, "tasks": ["question_classifier"], "runs": 0})
            for spinning in (False, True):
                name = f"four_tasks/{layout}/{precision}/spinning_{'on' if spinning else 'off'}"
                runs[name] = run_worker({**common, "layout": layout, "precision": precision, "tasks": list(TASKS),
                                         "runs": args.runs, "spinning": spinning})
                print(name, runs[name], flush=True)
    if not args.skip_torch:
        runs["four_tasks/pytorch"] = run_worker({"engine": "torch", "base": base, "hub": str(hub),
                                                 "tasks": list(TASKS), "runs": max(10, args.runs // 5)})
    figures["runs"] = runs
    figures["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(table(figures))
    print(f"wrote {args.out}")


def table(figures: dict) -> str:
    rows = ["| configuration | RSS MB | cold start s | one forward ms | 3-step chain ms | ask ms (route) |",
            "|---|---|---|---|---|---|"]
    for name, r in figures["runs"].items():
        if "error" in r:
            rows.append(f"| {name} | error | | | | |")
            continue
        route = f"{r.get('ask_ms', '')} ({r.get('ask_route', '')}, {len(r.get('ask_steps', []))} steps)" \
            if "ask_ms" in r else ""
        rows.append(f"| {name} | {r['rss_mb']} | {r['cold_start_s']} | {r.get('one_forward_ms', '')} | "
                    f"{r.get('three_steps_ms', '')} | {route} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
