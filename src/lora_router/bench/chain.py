"""The chain suite, ``run_bench``: every contender timed in one run on a random model, and the report.

The contenders (``contenders``) answer per-task latency, the chain (and what
its speculative ask costs), mixed throughput and ``set_adapter`` in this
process, then cold start and memory in fresh processes (``worker``); training
throughput last (``training``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

from ..core.chain import ROUTE_PREFIX, Chain
from ..core.predictor import TaskPredictor
from ..errors import ConfigError
from .contenders import CONTENDERS, ONE_CALL_KEYS, ONNX_KEYS, ONNX_VARIANTS, TORCH_KEYS, TRUNK_KEYS, load_contender
from .environment import CpuMonitor, cores
from .fixture import LENGTHS, bench_chain, build_fixture
from .timing import interleaved, summary

logger = logging.getLogger(__name__)

SIZES = ("tiny", "base")
DEVICES = ("cpu", "cuda")
CHAIN_TOKENS = 16
THROUGHPUT_BATCH = 32
THROUGHPUT_TOKENS = 32
SET_ADAPTER_CALLS = 200
TIMED_PHASES = ("floor", "per-task latency", "chain", "throughput", "fresh processes", "training")
# Fewer runs where one call takes seconds: (a2) per-task latency, batch-32 throughput, fresh processes.
DEFAULTS = {
    "tiny": {"runs": 50, "warmup": 3, "slow_runs": 5, "throughput_runs": 10, "cold_runs": 1, "train_steps": 10},
    "base": {"runs": 50, "warmup": 5, "slow_runs": 10, "throughput_runs": 10, "cold_runs": 3, "train_steps": 8},
}


class GpuUnavailableWarning(UserWarning):
    """``device="cuda"`` was asked for without a usable GPU; the benchmark ran on CPU."""


def run_bench(
    size: str = "tiny",
    device: str = "cpu",
    out_dir: str | Path = "bench-results",
    *,
    runs: int | None = None,
    warmup: int | None = None,
    slow_runs: int | None = None,
    throughput_runs: int | None = None,
    cold_runs: int | None = None,
    train_steps: int | None = None,
    contenders: tuple[str, ...] | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Benchmark every contender on a random ``size`` model and write results.json, results.md, chart.png.

    ``runs`` timed runs (after ``warmup``) for per-task latency and the chain;
    ``slow_runs`` for (a2)'s per-task latency; ``throughput_runs`` batches of
    32; ``cold_runs`` fresh processes per contender; ``train_steps`` training
    steps per padding mode. The models go into ``work_dir`` (a temporary
    folder, removed afterwards, when not given). Returns the results dict.
    """
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    keys = tuple(contenders or CONTENDERS)
    unknown = [k for k in keys if k not in CONTENDERS]
    if unknown:
        raise ConfigError(f"unknown contender(s) {unknown}; valid: {', '.join(CONTENDERS)}")
    given = locals()
    opts = {k: default if given[k] is None else given[k] for k, default in DEFAULTS[size].items()}
    for name, value in opts.items():
        if value < (0 if name == "warmup" else 1):
            raise ConfigError(f"{name} must be >= {0 if name == 'warmup' else 1}, got {value}")

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    temporary = tempfile.TemporaryDirectory(prefix="lora-router-bench-", ignore_cleanup_errors=True)
    with temporary if work_dir is None else contextlib.nullcontext(work_dir) as work:
        Path(work).mkdir(parents=True, exist_ok=True)
        results = measure_all(size, _device_info(device), Path(work), keys, opts, progress)

    from .report import markdown, write_chart, write_results

    write_results(out_dir, results, markdown(results))
    write_chart(results, Path(out_dir) / "chart.png")
    return results


def _device_info(device: str) -> dict:
    """The device asked for and the one used; a warning when a GPU was asked for and is not there."""
    import torch

    info = {"requested": device, "used": device, "fp16": False, "threads": cores(), "note": None}
    if device == "cuda" and torch.cuda.is_available():
        info.update(fp16=True, gpu=torch.cuda.get_device_name(0))
    elif device == "cuda":
        info.update(used="cpu", note="no CUDA GPU visible to PyTorch; ran on CPU instead")
        warnings.warn("--device cuda: PyTorch sees no CUDA GPU here; benchmarking on CPU instead",
                      GpuUnavailableWarning, stacklevel=3)
    return info


def measure_all(size: str, device: dict, work: Path, keys: tuple[str, ...], opts: dict, progress: bool) -> dict:
    """Build, export, load, time, measure fresh processes and training; results as a dict."""
    import torch

    from ..progress import progress as progress_bar
    from ..tasks import get_task
    from .environment import environment
    from .ratios import goals, ratios

    started = time.perf_counter()
    threads = device["threads"]
    torch.set_num_threads(threads)
    dev, fp16 = device["used"], device["fp16"]
    bar = progress_bar(9, f"bench {size}", enabled=progress, unit="phase")

    monitor = CpuMonitor()
    loadavg_start = list(os.getloadavg())

    def phase(name: str) -> None:
        """The next phase: the bar counts the one before it, the monitor starts on it."""
        bar.update(0 if name == "models" else 1)
        logger.info("bench: %s", name)
        bar.set_postfix_str(name)
        monitor.begin(name)

    phase("models")
    fixture = build_fixture(work / "models", size)
    chain = Chain.from_dict(bench_chain({t: get_task(t) for t in fixture.chain_tasks}, fixture.chain_tasks))

    phase("onnx export")
    status = {k: {"label": CONTENDERS[k], "available": False, "reason": "not selected"} for k in CONTENDERS}
    exports, export_dirs = _exports(fixture, work, keys, status, progress)

    phase("loading")
    loaded: dict[str, TaskPredictor] = {}
    for key in keys:
        if key in ONNX_KEYS and key not in export_dirs:
            continue
        try:
            loaded[key] = load_contender(key, base_dir=fixture.base_dir, hub_dir=fixture.hub_dir,
                                         export_dir=export_dirs.get(key), tasks=fixture.tasks, chain=chain,
                                         device=dev, fp16=fp16, threads=threads, router=loaded.get("b"))
            status[key].update(available=True, reason=None)
        except Exception as exc:  # noqa: BLE001 - a contender that cannot load is reported, not fatal
            logger.warning("contender %s not available: %s", key, exc)
            status[key].update(available=False, reason=f"{type(exc).__name__}: {exc}")

    text = fixture.texts[CHAIN_TOKENS]
    agreement = _agreement(loaded, text)

    phase("floor")
    floor_figures = None
    if dev == "cpu":  # the floor is of an int8 step on this CPU
        from .floor import floor

        floor_figures = floor(json.loads((fixture.base_dir / "config.json").read_text("utf-8")), threads,
                              lengths=(CHAIN_TOKENS, max(LENGTHS)))
    int8_schemes = None
    if "e" in export_dirs and dev == "cpu":
        from .int8_schemes import scheme_comparison

        int8_schemes = scheme_comparison(fixture.base_dir, fixture.hub_dir, export_dirs["e"], work,
                                         fixture.chain_tasks[0], {n: fixture.texts[n] for n in (CHAIN_TOKENS, 64)},
                                         threads=threads, runs=opts["runs"], warmup=opts["warmup"])

    phase("per-task latency")
    per_task: dict[str, dict] = {k: {} for k in loaded}
    slow = {k: (opts["slow_runs"] if k == "a2" else opts["runs"]) for k in loaded}
    for n in LENGTHS:
        for task in fixture.chain_tasks:
            fns = {k: partial(c.predict_batch, task, [fixture.texts[n]]) for k, c in loaded.items()}
            times = interleaved(fns, slow, opts["warmup"])
            for k, t in times.items():
                per_task[k].setdefault(task, {})[str(n)] = summary(t)

    phase("chain")
    chain_times = interleaved({k: partial(c.ask, text) for k, c in loaded.items()}, opts["runs"], opts["warmup"])
    chain_stats = {k: summary(t) for k, t in chain_times.items()}
    speculation = speculation_cost(loaded, text, opts["runs"], opts["warmup"])

    phase("throughput")
    items = [(fixture.chain_tasks[i % len(fixture.chain_tasks)], fixture.texts[THROUGHPUT_TOKENS])
             for i in range(THROUGHPUT_BATCH)]
    tp_times = interleaved({k: partial(c.predict_mixed, items) for k, c in loaded.items()}, opts["throughput_runs"],
                           min(opts["warmup"], 2))
    throughput = {k: {"samples_per_s": round(THROUGHPUT_BATCH / (summary(t)["p50_ms"] / 1000), 2),
                      "batch": summary(t)} for k, t in tp_times.items()}
    set_adapter = _set_adapter_cost(loaded["b"], fixture.chain_tasks) if "b" in loaded else None
    loaded.clear()
    gc.collect()

    phase("fresh processes")
    fresh = _fresh(fixture, exports, export_dirs, status, device, opts["cold_runs"], text)

    phase("training")
    from .training import training_throughput

    training = training_throughput(fixture.base_dir, steps=opts["train_steps"], warmup=2, device=dev)
    bar.update()
    bar.close()
    background = dict(monitor.report(TIMED_PHASES), loadavg_start=loadavg_start)

    results = {
        "schema": 1,
        "size": size,
        "device": device,
        "settings": dict(opts, threads=threads, lengths=list(LENGTHS), chain_tokens=CHAIN_TOKENS,
                         throughput_batch=THROUGHPUT_BATCH, throughput_tokens=THROUGHPUT_TOKENS,
                         set_adapter_calls=SET_ADAPTER_CALLS),
        "environment": environment(threads, device),
        "tasks": list(fixture.tasks),
        "chain_tasks": list(fixture.chain_tasks),
        "chain": chain.to_dict(),
        "texts": {str(k): v for k, v in fixture.texts.items()},
        "contenders": status,
        "exports": {k: {f: v for f, v in e.items() if f != "manifest"} for k, e in exports.items()},
        "agreement": agreement,
        "per_task_latency": per_task,
        "chain_latency": chain_stats,
        "speculation": speculation,
        "throughput": throughput,
        "set_adapter": set_adapter,
        "fresh_process": fresh,
        "training": training,
        "floor": floor_figures,
        "int8_schemes": int8_schemes,
        "background_load": background,
        "notes": NOTES,
    }
    from .floor import versus_floor

    results["versus_floor"] = versus_floor(results)
    results["ratios"] = ratios(results)
    results["goals"] = goals(results)
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return results


NOTES = [
    "Random weights (bert-base-chinese's shape for size=base); LoRA r16 on query/value with non-zero B.",
    "The chain is question_classifier -> question_type_classifier -> file_name_pick with every label "
    "routed onward, so each ask runs 3 steps on a 16-token question; question_answer is loaded (memory) "
    "but not timed: its cost depends on the knowledge base, not on the contender.",
    "(c) answers ask() by running all 3 chain tasks in one mixed batch of 3, then walking the chain.",
    "(g) and (h) answer ask() with all 3 chain steps as rows of one onnxruntime call, then walk the chain "
    "(OnnxRouter's speculative ask); (h) runs the layers below the adapters once per question. (h)'s "
    "adapters sit on the upper half of the layers only (its own random hub), so its answers are not "
    "comparable with (b)'s in 'Same answers?'.",
    "Throughput: 32 requests of 32 tokens spread over the 3 chain tasks; (c), (g) and (h) run them in one "
    "pass, the others group them by task (one batch per task).",
    "Memory and cold start: each contender in a fresh process; RSS after the chain ran 4 times; "
    "cold start from before the process starts to its first answer (models in the page cache).",
    "(a2) never holds all tasks: its RSS is the process after the chain ran (one task loaded at a time).",
    "ONNX cold start includes OnnxRouter's default sha256 check of every file it loads.",
    "Latency figures are medians of interleaved rounds (p50); ratios use p50.",
    "The floor (CPU only): one step's multiply-adds at this machine's int8 matmul peak (a large onnxruntime "
    "MatMulInteger) or its int8 weights read once at its memory bandwidth (a numpy copy), whichever is slower; "
    "each limit is the best of its runs. A chain's multiple is its p50 over the floor of one 16-token step.",
]


def _exports(fixture, work: Path, keys, status: dict, progress: bool) -> tuple[dict, dict]:
    """One export (merged, shared and multi, fp32 and int8) for the ONNX contenders, and one of the trunk
    layout from a hub with adapters on the upper layers (h); a reason where one failed."""
    from .fixture import export_for_bench, folder_mb, trunk_hub, upper_layers

    exports: dict[str, dict] = {}
    dirs: dict[str, Path] = {}
    plain = [k for k in ONNX_KEYS if k in keys and k not in TRUNK_KEYS]
    jobs = {"all": (plain, fixture.hub_dir, ",".join(sorted({ONNX_VARIANTS[k][0] for k in plain}))),
            "trunk": ([k for k in TRUNK_KEYS if k in keys], None, "trunk")}
    for name, (wanted, hub_dir, layout) in jobs.items():
        if not wanted:
            continue
        done = exports[name] = export_for_bench(
            fixture.base_dir, hub_dir or trunk_hub(fixture, work / "models" / "hub-trunk"), work / f"onnx-{name}",
            tasks=list(fixture.tasks), quantize="int8", layout=layout, progress=progress)
        if "error" in done:
            for key in wanted:
                status[key]["reason"] = f"export failed: {done['error']}"
        else:
            dirs.update(dict.fromkeys(wanted, Path(done["dir"])))
            done.update(size_mb=folder_mb(done["dir"]), files_mb=_export_files_mb(Path(done["dir"])))
        if name == "trunk":
            done["lora_layers"] = upper_layers(fixture.base_dir)
    return exports, dirs


def _export_files_mb(folder: Path) -> dict:
    """Sizes of the model files of an export, by name relative to the folder."""
    return {str(p.relative_to(folder)): round(p.stat().st_size / 2**20, 1)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in (".onnx", ".onnx_adapter", ".data")}


def _agreement(loaded: dict, text: str) -> dict:
    """Whether each contender's chain answer has (b)'s route and labels, and how far its confidences are."""
    answers = {}
    for k, c in loaded.items():
        try:
            answers[k] = c.ask(text)
        except Exception as exc:  # noqa: BLE001
            answers[k] = {"error": f"{type(exc).__name__}: {exc}"}
    ref = answers.get("b") or next(iter(answers.values()), None)
    out = {}
    for k, a in answers.items():
        if "error" in a or ref is None or "error" in ref:
            out[k] = {"error": a.get("error") or "no reference"}
            continue
        labels = [s["result"].get("predicted_label") for s in a["steps"]]
        ref_labels = [s["result"].get("predicted_label") for s in ref["steps"]]
        pairs = zip(a["steps"], ref["steps"], strict=False)  # a different route may have other steps
        diffs = [abs(s["result"]["confidence"] - r["result"]["confidence"])
                 for s, r in pairs if "confidence" in s["result"] and "confidence" in r["result"]]
        out[k] = {"route": a["route"], "same_as_b": a["route"] == ref["route"] and labels == ref_labels,
                  "max_confidence_diff": round(max(diffs), 6) if diffs else None}
    return out


def _set_adapter_cost(router_contender, tasks) -> dict:
    """``set_adapter`` to the chain's tasks in turn: 20 calls of warm-up, ``SET_ADAPTER_CALLS`` timed."""
    turn = itertools.cycle(tasks)
    times = interleaved({"b": lambda: router_contender.set_adapter(next(turn))}, SET_ADAPTER_CALLS, warmup=20)
    return summary(times["b"])


def _fresh(fixture, exports: dict, dirs: dict, status: dict, device: dict, rounds: int, text: str) -> dict:
    """Fresh-process cold start and memory of every available contender, plus reference processes."""
    from .worker import fresh_rounds

    common = {"base_dir": str(fixture.base_dir), "hub_dir": str(fixture.hub_dir), "tasks": list(fixture.tasks),
              "chain_tasks": list(fixture.chain_tasks), "text": text, "device": device["used"],
              "fp16": device["fp16"], "threads": device["threads"], "repeats": 3}
    specs: dict[str, dict] = {}
    for key in CONTENDERS:
        if status[key]["available"]:
            specs[key] = dict(common, key=key, export_dir=str(dirs[key]) if key in dirs else None)
    if status["e"]["available"]:
        specs["one_int8"] = dict(common, key="e", mode="predict", export_dir=str(dirs["e"]),
                                 tasks=[fixture.chain_tasks[0]])
    if any(k in specs for k in TORCH_KEYS):
        specs["import_torch"] = dict(common, key=None, mode="import_torch")
    if any(k in specs for k in ONNX_KEYS):
        specs["import_onnx"] = dict(common, key=None, mode="import_onnx")
    return fresh_rounds(specs, rounds)


# mode -> (which chain, speculate)
SPECULATION_MODES = {"full_one_call": ("full", True), "full_step_by_step": ("full", False),
                     "stop_at_1_one_call": ("stop_at_1", True), "stop_at_1_step_by_step": ("stop_at_1", False)}


def speculation_cost(loaded: dict[str, TaskPredictor], text: str, runs: int, warmup: int) -> dict:
    """What the speculative ask costs: ``{key: {mode: summary}}`` for the one-call contenders, (g) and (h).

    Four timings each, interleaved: a question that goes through every step,
    and one that stops at the first step (the same chain with the first step's
    labels all routed to ``route:general``), each with the steps in one call
    (``speculate``) and step by step. A question that stops at step 1 pays in
    one call for rows it does not use; one that goes through the chain saves calls.
    """
    fns = {}
    for key in [k for k in ONE_CALL_KEYS if k in loaded]:
        router = loaded[key]
        chains = {"full": router.chain, "stop_at_1": stopping_chain(router.chain)}
        for mode, (which, speculate) in SPECULATION_MODES.items():
            fns[(key, mode)] = partial(_ask, router, chains[which], speculate, text)
    out: dict[str, dict] = {}
    for (key, mode), t in interleaved(fns, runs, warmup).items():
        out.setdefault(key, {})[mode] = summary(t)
    for row in out.values():
        p50 = {m: row[m]["p50_ms"] for m in SPECULATION_MODES}
        row["stop_at_1_cost"] = round(p50["stop_at_1_one_call"] / p50["stop_at_1_step_by_step"], 2)
        row["full_chain_gain"] = round(p50["full_step_by_step"] / p50["full_one_call"], 2)
    return out


def stopping_chain(chain: Chain) -> Chain:
    """``chain`` with every label of its first step routed to ``route:general`` (later steps kept)."""
    spec = chain.to_dict()
    first = next(s for s in spec["steps"] if s["task"] == spec["start"])
    first["on"] = {label: f"{ROUTE_PREFIX}general" for label in first["on"]}
    return Chain.from_dict(spec)


def _ask(router: TaskPredictor, chain: Chain, speculate: bool, text: str):
    original = (router.chain, router.speculate)
    router.chain, router.speculate = chain, speculate
    try:
        return router.ask(text)
    finally:
        router.chain, router.speculate = original
