"""lora_router.bench: the three files and their structure (no timing asserts)."""

from __future__ import annotations

import json
import warnings

import pytest

from lora_router.bench import run_bench
from lora_router.bench.contenders import CONTENDERS
from lora_router.bench.fixture import bench_chain
from lora_router.bench.timing import interleaved, summary
from lora_router.core.chain import Chain, run_chain
from lora_router.errors import ConfigError
from lora_router.tasks import get_task

TOP_KEYS = {"schema", "size", "device", "settings", "environment", "contenders", "per_task_latency", "chain_latency",
            "throughput", "set_adapter", "fresh_process", "training", "ratios", "goals", "background_load", "notes"}


def test_interleaved_rotates_and_honours_per_key_runs():
    calls: list[str] = []
    times = interleaved({k: (lambda k=k: calls.append(k)) for k in "abc"}, {"a": 3, "b": 3, "c": 1}, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 1}
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:6] == ["a", "b", "c"] and calls[6:8] == ["b", "a"]  # round 2 starts at b, c sits out
    stats = summary(times["a"])
    assert stats["n"] == 3 and stats["p50_ms"] <= stats["p99_ms"]
    assert summary([]) == {"n": 0}


def test_bench_chain_runs_every_step_whatever_the_labels():
    tasks = ("question_classifier", "question_type_classifier", "file_name_pick")
    chain = Chain.from_dict(bench_chain({t: get_task(t) for t in tasks}, tasks))

    def predict(task, texts):
        spec = get_task(task)
        if spec.labels:
            return [{"predicted_label": spec.labels[-1], "confidence": 0.01} for _ in texts]
        return [{"file_names": [], "spans": []} for _ in texts]

    out = run_chain(chain, ["问题"], predict, set(tasks))[0]
    assert [s["task"] for s in out["steps"]] == list(tasks) and out["route"] == "task"


def test_bad_size_device_or_contender_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown size"):
        run_bench("huge", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown device"):
        run_bench("tiny", "tpu", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown contender"):
        run_bench("tiny", out_dir=tmp_path, contenders=("z",))


def test_cuda_without_gpu_warns_and_falls_back():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    from lora_router.bench.chain import GpuUnavailableWarning, _device_info

    with pytest.warns(GpuUnavailableWarning):
        info = _device_info("cuda")
    assert info["requested"] == "cuda" and info["used"] == "cpu" and info["note"]


@pytest.mark.slow
def test_tiny_bench_writes_three_files(tmp_path):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_bench("tiny", "cpu", out, runs=2, warmup=1, slow_runs=1, throughput_runs=1, cold_runs=1,
                            train_steps=1, work_dir=tmp_path / "work", progress=False)

    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data == json.loads(json.dumps(results))
    assert TOP_KEYS <= set(data)
    assert data["size"] == "tiny" and data["device"]["used"] == "cpu"
    env = data["environment"]
    assert env["cores"] >= 1 and env["cpu"]["model"] and "torch" in env["versions"]
    assert env["threads"]["torch_intra_op"] == data["settings"]["threads"]

    assert set(data["contenders"]) == set(CONTENDERS)
    available = [k for k, v in data["contenders"].items() if v["available"]]
    assert {"a1", "a2", "b", "c"} <= set(available)
    for key, status in data["contenders"].items():
        if not status["available"]:
            assert status["reason"], key  # a missing contender says why
            continue
        assert data["chain_latency"][key]["n"] == 2
        assert {"p50_ms", "p90_ms", "p99_ms"} <= set(data["chain_latency"][key])
        per_task = data["per_task_latency"][key]
        assert set(per_task) == set(data["chain_tasks"])
        assert all(set(v) == {"16", "32", "64"} for v in per_task.values())
        assert data["throughput"][key]["samples_per_s"] > 0
        fresh = data["fresh_process"][key]
        assert fresh["rss_mb"] > 0 and fresh["cold_start_s"] > 0, fresh
        assert {"chain_speedup_vs_a1", "chain_speedup_vs_b", "memory_vs_a1", "memory_vs_b"} <= set(data["ratios"][key])
        # torch contenders compute the same numbers; int8 may move a confidence on a random model
        # (h) runs its own hub (adapters on the upper layers only), so its labels are not (b)'s
        assert data["agreement"][key]["same_as_b"] is True or key in ("e", "f", "g", "h")
    for key in ("d", "e", "f", "g", "h"):
        if data["contenders"][key]["available"]:
            assert data["fresh_process"][key]["torch_imported"] is False  # the ONNX runtime runs without torch
    assert data["ratios"]["a1"]["chain_speedup_vs_a1"] == 1.0
    assert data["set_adapter"]["n"] > 0
    training = data["training"]
    assert training["dynamic"]["samples_per_s"] > 0 and training["padded"]["samples_per_s"] > 0
    assert training["padded"]["mean_width"] == 128
    assert training["grouped"]["samples_per_s"] > 0 and training["speedup"] > 0  # the trainer's batches
    one_call_goals = [">= 3", ">= 15", "<= 1.0"]
    assert [g["target"] for g in data["goals"]] == [">= 8", ">= 8", "< 0.2", "< 1 s", "< 1.5", *one_call_goals,
                                                    *one_call_goals, "<= 2", ">= 5"]
    assert data["goals"][-1]["value"] == training["speedup"]
    floor = data["floor"]  # this machine's limits, and every contender against them
    assert floor["int8_matmul"]["gops"] > 0 and floor["memory"]["gb_per_s"] > 0
    assert set(floor["step"]) == {"16", "64"} and all(s["floor_ms"] > 0 for s in floor["step"].values())
    for key in available:
        assert {"step_16", "step_64", "chain"} <= set(data["versus_floor"][key]), key
    schemes = data["int8_schemes"]["steps"]  # the default static int8 against dynamic, same weights
    assert set(schemes) == {"16", "64", "3x16"} and all(v["dynamic_over_static"] > 0 for v in schemes.values())
    for key in ("g", "h"):  # the chain in one call against step by step, for a question through 3 steps or 1
        assert {"full_one_call", "stop_at_1_step_by_step", "stop_at_1_cost", "full_chain_gain"} <= \
            set(data["speculation"][key])

    md = (out / "results.md").read_text("utf-8")
    for heading in ("# lora-router bench: size tiny", "## The chain", "## Per-task latency", "## Throughput",
                    "## Fresh processes", "## Training", "## Goals", "## Against the floor",
                    "## int8: static (the default) against dynamic"):
        assert heading in md
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_floor_of_a_bert_base_step_counts_its_operations_and_weights():
    from lora_router.bench.floor import step_work

    work = step_work(768, 12, 3072, 16)
    assert work["weight_bytes"] == 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # 85 MB of int8 weights
    assert 2.7e9 < work["operations"] < 2.75e9  # 1.36 G multiply-adds in the linear layers, plus attention
    assert step_work(768, 12, 3072, 64)["operations"] > 4 * work["operations"]  # attention grows with tokens squared


def test_the_floor_measures_this_machine_and_sets_every_contender_against_it():
    from lora_router.bench.floor import int8_matmul_peak, memory_bandwidth, versus_floor

    peak = int8_matmul_peak(1, runs=2, shape=(64, 128, 256))
    assert peak["gops"] > 0 and peak["shape_mkn"] == [64, 128, 256]
    assert memory_bandwidth(2, runs=2, megabytes=4)["gb_per_s"] > 0
    results = {"floor": {"step": {"16": {"floor_ms": 2.0}, "64": {"floor_ms": 8.0}}},
               "per_task_latency": {"e": {"t1": {"16": {"n": 5, "p50_ms": 4.0}, "64": {"n": 5, "p50_ms": 16.0}},
                                          "t2": {"16": {"n": 5, "p50_ms": 6.0}, "64": {"n": 0}}}},
               "chain_latency": {"e": {"n": 5, "p50_ms": 30.0}}}
    assert versus_floor(results) == {"e": {"step_16": 2.5, "step_64": 2.0, "chain": 15.0}}


@pytest.mark.parametrize("run, render", [("base-cpu", "markdown"), ("serve-cpu", "serve_markdown"),
                                         ("serve-capture-tiny", "serve_markdown"), ("ray-cpu", "ray_markdown")])
def test_every_suite_report_renders_its_committed_run_unchanged(run, render):
    from pathlib import Path

    from lora_router.bench import report

    folder = Path(__file__).parent.parent / "benchmarks" / "results" / run
    results = json.loads((folder / "results.json").read_text("utf-8"))
    assert getattr(report, render)(results) == (folder / "results.md").read_text("utf-8")


def test_the_serve_report_says_what_shadow_costs_when_it_was_measured():
    from pathlib import Path

    from lora_router.bench import report

    folder = Path(__file__).parent.parent / "benchmarks" / "results" / "serve-capture-tiny"
    results = json.loads((folder / "results.json").read_text("utf-8"))
    results["shadow"] = {"clients": 8, "requests_per_round": 200, "rounds": 4,
                         "median_requests_per_s": {"plain": 70.87, "shadow": 60.54}, "throughput_ratio": 0.8542,
                         "shadowed": 840, "dropped": 3}
    md = report.serve_markdown(results)
    assert "70.9 req/s without, 60.5 with (0.85x); 840 questions shadowed, 3 dropped" in md
