"""``serve --shadow DIR``: a candidate export runs beside production, off the response path (issue 18, item 3).

The unit tests drive ``serving.shadow.Shadow`` with a candidate made in
code; the slow ones start real servers on 127.0.0.1 over the session's
export and a copy of it with another chain.
"""

from __future__ import annotations

import threading

import pytest

from lora_router.capture import CaptureStore, CaptureWriter
from lora_router.serving.shadow import Shadow, ShadowMetrics, compare
from support.serve import SAMPLES, Server, same_answer, wait_for

prometheus_client = pytest.importorskip("prometheus_client")


def answer(question: str, label: str, route: str, file_names=()) -> dict:
    steps = [{"task": "question_classifier", "result": {"predicted_label": label, "confidence": 0.9}, "ms": 1.0}]
    trace = [{"task": "question_classifier", "label": label, "probability": 0.9, "passed": True}]
    if route == "task":
        steps.append({"task": "file_name_pick", "result": {"file_names": list(file_names)}, "ms": 1.0})
        trace.append({"task": "file_name_pick", "label": None, "probability": 1.0, "passed": True})
    return {"question": question, "steps": steps, "route": route, "file_names": list(file_names), "answer": None,
            "trace": {"steps": trace}}


class Candidate:
    """Answers every question as ``route`` (general: step 1 only); ``gate`` holds it until set."""

    def __init__(self, route: str = "general", gate: threading.Event | None = None, fail: bool = False):
        self.route, self.gate, self.fail, self.asked = route, gate, fail, []

    def ask_batch(self, texts):
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.fail:
            raise RuntimeError("the candidate broke")
        self.asked += texts
        return [answer(t, "通用问题", self.route) for t in texts]


def new_metrics() -> ShadowMetrics:
    return ShadowMetrics(prometheus_client.CollectorRegistry())


def sample(metrics: ShadowMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(f"lora_router_shadow_{name}_total", labels) or 0.0


def test_the_same_decisions_agree_and_another_route_disagrees_step_by_step():
    ours = answer("q", "数据平台相关问题", "task", ["a.csv"])
    assert compare(ours, answer("q", "数据平台相关问题", "task", ["a.csv"])) == {
        "agree": True, "steps": {"question_classifier": True, "file_name_pick": True}, "disagreements": []}
    other_file = compare(ours, answer("q", "数据平台相关问题", "task", ["b.csv"]))
    assert other_file["steps"] == {"question_classifier": True, "file_name_pick": False}
    assert not other_file["agree"]
    general = compare(ours, answer("q", "通用问题", "general"))
    assert general["steps"] == {"question_classifier": False, "file_name_pick": False}
    assert [d["task"] for d in general["disagreements"]] == ["question_classifier", "file_name_pick", "route"]
    assert general["disagreements"][1]["candidate"] is None  # the candidate never ran that step
    assert general["disagreements"][2] == {"task": "route", "production": "task", "candidate": "general"}


def test_shadowed_answers_are_captured_with_the_candidates_trace_and_counted(tmp_path):
    metrics = new_metrics()
    with CaptureWriter(tmp_path) as capture:
        shadow = Shadow(Candidate(), folder="cand", capture=capture, metrics=metrics)
        shadow.add(answer("帮我导入a.csv", "数据平台相关问题", "task", ["a.csv"]), "one")
        shadow.add(answer("今天天气怎么样", "通用问题", "general"), "two")
        assert shadow.drain(30) and capture.drain(30)
        shadow.close()
    records = {r["id"]: r for r in CaptureStore(tmp_path).records()}
    assert records["one"]["answer"]["route"] == "task"  # the answer is production's
    assert records["one"]["shadow"]["route"] == "general" and not records["one"]["shadow"]["agree"]
    assert records["two"]["shadow"]["agree"]
    assert records["two"]["shadow"]["trace"]["steps"][0]["label"] == "通用问题"
    assert sample(metrics, "questions", route="task", candidate_route="general", result="disagree") == 1
    assert sample(metrics, "questions", route="general", candidate_route="general", result="agree") == 1
    assert sample(metrics, "steps", task="question_classifier", result="agree") == 1
    assert sample(metrics, "steps", task="file_name_pick", result="disagree") == 1


def test_lines_captured_without_a_shadow_still_read_as_before(tmp_path):
    with CaptureWriter(tmp_path) as capture:
        capture.add(answer("q", "通用问题", "general"), id="old")
    (record,) = CaptureStore(tmp_path).records()
    assert "shadow" not in record and record["answer"]["route"] == "general" and record["feedback"] == []


def test_a_full_shadow_queue_drops_the_shadow_work_but_never_the_answer(tmp_path):
    gate = threading.Event()
    metrics = new_metrics()
    with CaptureWriter(tmp_path) as capture:
        shadow = Shadow(Candidate(gate=gate), folder="cand", queue_size=2, capture=capture, metrics=metrics)
        queued = [shadow.add(answer(f"q{i}", "通用问题", "general"), f"id-{i}") for i in range(40)]
        # the thread holds one batch (at most 16) while the gate is shut, the queue 2 more: the rest are dropped
        assert queued[:1] == [True] and not all(queued)
        dropped = queued.count(False)
        assert sample(metrics, "dropped", reason="overload") == dropped
        gate.set()
        assert shadow.drain(30) and capture.drain(30)
        shadow.close()
    records = {r["id"]: r for r in CaptureStore(tmp_path).records()}
    assert set(records) == {f"id-{i}" for i in range(40)}  # every answer captured, shadowed or not
    assert sum("shadow" in r for r in records.values()) == 40 - dropped


def test_a_share_of_questions_is_shadowed_and_a_failing_candidate_costs_only_its_shadow(tmp_path):
    draws = iter([0.1, 0.9] * 4)
    candidate = Candidate(fail=True)
    metrics = new_metrics()
    with CaptureWriter(tmp_path) as capture:
        shadow = Shadow(candidate, folder="cand", share=0.5, capture=capture, metrics=metrics,
                        rng=lambda: next(draws))
        queued = [shadow.add(answer(f"q{i}", "通用问题", "general"), f"id-{i}") for i in range(8)]
        assert queued == [True, False] * 4
        assert shadow.drain(30) and capture.drain(30)
        shadow.close()
    records = {r["id"]: r for r in CaptureStore(tmp_path).records()}
    assert len(records) == 8
    assert records["id-0"]["shadow"]["error"] == "the candidate broke" and "shadow" not in records["id-1"]
    assert sample(metrics, "dropped", reason="error") == 4


def test_shadow_counters_are_registered_once_per_registry_and_go_on_counting():
    # A Ray replica's default export, with its shadow, can be unloaded and loaded again in the same registry.
    registry = prometheus_client.CollectorRegistry()
    first = ShadowMetrics.of(registry)
    first.questions.labels("general", "general", "agree").inc()
    again = ShadowMetrics.of(registry)
    again.questions.labels("general", "general", "agree").inc()
    assert sample(again, "questions", route="general", candidate_route="general", result="agree") == 2
    assert ShadowMetrics.of(prometheus_client.CollectorRegistry()) is not first


@pytest.mark.parametrize("share", [0, -0.5, 1.5, "all"])
def test_a_share_outside_0_to_1_is_refused_naming_the_setting(share):
    from lora_router.errors import ConfigError
    from lora_router.serving.settings import ServeSettings

    with pytest.raises(ConfigError, match="shadow_share"):
        ServeSettings(shadow="./candidate", shadow_share=share)


@pytest.mark.parametrize("engine", ["uvicorn", "ray"])
def test_a_shadow_folder_that_is_not_an_export_is_refused_before_anything_starts(engine, tmp_path):
    pytest.importorskip("fastapi")
    from click.testing import CliRunner

    from lora_router.cli import main

    (tmp_path / "notes").mkdir()
    result = CliRunner().invoke(main, ["serve", "--engine", engine, "--onnx", str(tmp_path),
                                       "--shadow", str(tmp_path / "notes")])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --shadow" in result.output and "is not a lora-router export" in result.output


@pytest.mark.slow
def test_serve_on_ray_hands_its_replicas_the_shadow_as_an_absolute_folder(exported, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from click.testing import CliRunner

    from lora_router.cli import main
    from support.export import copy_export

    seen = {}
    monkeypatch.setattr("lora_router.serving.ray_host.serve_exports",
                        lambda catalog, options, settings, **kw: seen.update(catalog=catalog, settings=settings) or 0)
    monkeypatch.setattr("lora_router.cli.serve.configure_logging", lambda *a, **kw: None)
    candidate = copy_export(exported.export, tmp_path / "candidate")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--engine", "ray", "--onnx", str(exported.export),
                                       "--shadow", "candidate", "--shadow-share", "0.25", "--shadow-queue", "8"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.shadow, settings.shadow_share, settings.shadow_queue) == (str(candidate.resolve()), 0.25, 8)
    assert seen["catalog"].default == "default", "the export the shadow runs beside"


# ------------------------------------------------------------ real servers

def metric_values(text: str, name: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


@pytest.mark.slow
def test_shadow_never_changes_answers_and_a_disagreeing_candidate_shows_in_metrics_and_capture(exported, tmp_path):
    pytest.importorskip("fastapi")
    from support.export import CHAIN_ALL_GENERAL, copy_export, set_chain

    candidate = set_chain(copy_export(exported.export, tmp_path / "candidate"), CHAIN_ALL_GENERAL)
    store = tmp_path / "captures"
    questions = [*SAMPLES, *SAMPLES]
    with Server("--onnx", str(exported.export), "--precision", "fp32", log_path=tmp_path / "plain.log") as s, \
            s.client() as c:
        plain = [c.post("/v1/ask", json={"question": q}).json() for q in questions]
    with Server("--onnx", str(exported.export), "--precision", "fp32", "--shadow", str(candidate),
                "--capture", str(store), log_path=tmp_path / "shadow.log") as s, s.client() as c:
        shadowed = [c.post("/v1/ask", json={"question": q}).json() for q in questions]
        # feedback right after an answer finds it, though its capture waits for the candidate
        assert c.post("/v1/feedback", json={"request_id": shadowed[-1]["request_id"], "verdict": "up"}
                      ).status_code == 201
        routes = [a["route"] for a in shadowed]

        def counted():
            return metric_values(c.get("/metrics").text, "lora_router_shadow_questions_total")

        wait_for(lambda: sum(counted().values()) == len(questions), timeout=60)
        questions_counted = counted()
        steps_counted = metric_values(c.get("/metrics").text, "lora_router_shadow_steps_total")
    assert all(same_answer(a, b) for a, b in zip(plain, shadowed))
    assert set(routes) - {"general"}, "the samples should reach routes the candidate never gives"
    for route in set(routes) - {"general"}:
        key = (("candidate_route", "general"), ("result", "disagree"), ("route", route))
        assert questions_counted[key] == routes.count(route)
    assert steps_counted.get((("result", "disagree"), ("task", "question_type_classifier")), 0) >= 1
    records = {r["id"]: r for r in CaptureStore(store).records()}
    assert set(records) == {a["request_id"] for a in shadowed}
    for a in shadowed:
        shadow = records[a["request_id"]]["shadow"]
        assert records[a["request_id"]]["answer"]["route"] == a["route"]
        assert shadow["route"] == "general"
        assert shadow["trace"]["steps"][0]["model"]["export"] == exported.manifest["id"]
        if a["route"] != "general":
            assert {"task": "route", "production": a["route"], "candidate": "general"} in shadow["disagreements"]


@pytest.mark.slow
def test_a_candidate_that_cannot_load_stops_the_server_with_the_reason(exported, tmp_path):
    pytest.importorskip("fastapi")
    from support.export import copy_export

    candidate = copy_export(exported.export, tmp_path / "candidate")
    (candidate / "chain.json").write_text("{not json", "utf-8")  # its sha256 no longer matches the manifest
    server = Server("--onnx", str(exported.export), "--shadow", str(candidate), log_path=tmp_path / "log")
    try:
        assert server.wait(120) != 0
    finally:
        server.stop()
    assert f"the --shadow candidate {candidate} cannot be run" in server.log()


def test_the_candidate_runs_at_the_precision_production_names():
    from lora_router.backends.source import ModelSource
    from lora_router.core.options import PredictorOptions
    from lora_router.serving.shadow import candidate_source

    fp32 = ModelSource(onnx="prod", options=PredictorOptions(precision="fp32"))
    assert candidate_source("cand", fp32).options.precision == "fp32"
    assert candidate_source("cand", ModelSource(onnx="prod")).options.precision is None  # the export's default
    assert candidate_source("cand", fp32).options.threads == 1
