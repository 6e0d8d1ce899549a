"""OpenTelemetry traces of the service (serve --otel): a span per request, one per chain step, off means absent."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from lora_router.core.chain import Chain  # noqa: E402
from lora_router.serving.settings import ServeSettings  # noqa: E402
from lora_router.tasks import get_task  # noqa: E402
from support.isolation import run_refusing  # noqa: E402

TASK_Q = "帮我把sales_2024.csv导入到ODS层"  # classifier -> type -> file_name_pick: route task
KB_Q = "数据清洗流程是什么？"  # classifier -> type -> question_answer: route answer
CHAT_Q = "今天天气怎么样"  # classifier: route general
HOLD = "等一下"  # held in the model until the test lets it go

CANNED = {
    ("question_classifier", TASK_Q): {"predicted_label": "数据平台相关问题", "confidence": 0.91},
    ("question_classifier", KB_Q): {"predicted_label": "数据平台相关问题", "confidence": 0.88},
    ("question_classifier", CHAT_Q): {"predicted_label": "通用问题", "confidence": 0.77},
    ("question_type_classifier", TASK_Q): {"predicted_label": "任务处理", "confidence": 0.83},
    ("question_type_classifier", KB_Q): {"predicted_label": "问题回答", "confidence": 0.86},
    ("file_name_pick", TASK_Q): {"file_names": ["sales_2024.csv"],
                                 "spans": [{"text": "sales_2024.csv", "start": 3, "end": 17, "score": 0.95}]},
    ("question_answer", KB_Q): {"answer": "先去重，再补缺失值。", "kb_id": "kb-007", "confidence": 0.72,
                                "candidates": []},
}


class CannedPredictor:
    """The four tasks of the default chain with fixed results, and every batch it was asked, recorded."""

    def __init__(self):
        self.chain = Chain.load()
        self.specs = {name: get_task(name) for name in self.chain.tasks()}
        self.encoders = {name: SimpleNamespace(max_length=64) for name in self.specs}  # every question fits
        self.batches: list[list[tuple[str, str]]] = []
        self.hold = None  # a threading.Event that HOLD waits for

    def predict_mixed(self, items):
        self.batches.append(list(items))
        if self.hold is not None and any(text == HOLD for _, text in items):
            self.hold.wait(10)
        out = []
        for task, text in items:
            result = dict(CANNED.get((task, text), {"predicted_label": "无关问题", "confidence": 0.99}))
            if "predicted_label" in result:
                result["probabilities"] = {result["predicted_label"]: result["confidence"]}
            out.append(result)
        return out


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _client(predictor, provider, **settings):
    from fastapi.testclient import TestClient

    from lora_router.serving.app import create_app

    app = create_app(predictor=predictor, settings=ServeSettings(**settings), handle_sighup=False,
                     tracer_provider=provider)
    return TestClient(app)


def _wait_ready(client, headers: dict | None = None) -> None:
    import time

    for _ in range(400):
        if client.get("/ready", headers=headers).status_code == 200:
            return
        time.sleep(0.025)
    raise TimeoutError("app not ready")


def _split(finished):
    requests = [s for s in finished if s.kind == SpanKind.SERVER]
    steps = [s for s in finished if s.name.startswith("step ")]
    return requests, steps


def test_one_request_is_one_server_span_with_a_child_per_chain_step(spans):
    provider, exporter = spans
    with _client(CannedPredictor(), provider, otel=True) as client:
        _wait_ready(client)
        exporter.clear()
        r = client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-task-1"})
    assert r.status_code == 200 and r.json()["route"] == "task"
    (request,), steps = _split(exporter.get_finished_spans())
    assert request.name == "POST /v1/ask" and request.parent is None
    assert dict(request.attributes) == {
        "http.request.method": "POST", "url.path": "/v1/ask", "url.scheme": "http", "http.route": "/v1/ask",
        "http.response.status_code": 200, "lora_router.request_id": "req-task-1", "lora_router.routes": ("task",)}
    assert [s.name for s in sorted(steps, key=lambda s: s.start_time)] == [
        "step question_classifier", "step question_type_classifier", "step file_name_pick"]
    for step in steps:
        assert step.parent.span_id == request.context.span_id
        assert step.context.trace_id == request.context.trace_id
        assert step.attributes["lora_router.batch.rows"] == 1 and step.attributes["lora_router.ms"] >= 0
    by_task = {s.attributes["lora_router.task"]: s.attributes for s in steps}
    assert by_task["question_classifier"]["lora_router.label"] == "数据平台相关问题"
    assert by_task["question_classifier"]["lora_router.probability"] == pytest.approx(0.91)
    assert "lora_router.route" not in by_task["question_classifier"]
    assert by_task["file_name_pick"]["lora_router.file_names"] == ("sales_2024.csv",)
    assert by_task["file_name_pick"]["lora_router.probability"] == pytest.approx(0.95)
    assert by_task["file_name_pick"]["lora_router.route"] == "task"


def test_a_knowledge_base_step_records_the_entry_it_answered_with(spans):
    provider, exporter = spans
    with _client(CannedPredictor(), provider, otel=True) as client:
        _wait_ready(client)
        exporter.clear()
        assert client.post("/v1/ask", json={"question": KB_Q}).json()["route"] == "answer"
    _, steps = _split(exporter.get_finished_spans())
    answer = next(s.attributes for s in steps if s.attributes["lora_router.task"] == "question_answer")
    assert answer["lora_router.kb_id"] == "kb-007" and answer["lora_router.answered"] is True
    assert answer["lora_router.probability"] == pytest.approx(0.72) and answer["lora_router.route"] == "answer"


def test_an_incoming_traceparent_makes_the_request_span_a_child_of_the_callers(spans):
    provider, exporter = spans
    trace_id, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with _client(CannedPredictor(), provider, otel=True) as client:
        _wait_ready(client)
        exporter.clear()
        client.post("/v1/ask", json={"question": CHAT_Q}, headers={"traceparent": f"00-{trace_id}-{caller}-01"})
    (request,), (step,) = _split(exporter.get_finished_spans())
    assert format(request.context.trace_id, "032x") == trace_id
    assert format(request.parent.span_id, "016x") == caller and request.parent.is_remote
    assert step.context.trace_id == request.context.trace_id and step.parent.span_id == request.context.span_id


def test_requests_batched_together_each_keep_their_steps_in_their_own_trace(spans):
    """One forward pass answers three requests on an inference thread; each step span is still its own request's."""
    import threading

    import httpx

    from lora_router.serving.app import create_app
    from lora_router.serving.service import Service

    provider, exporter = spans
    predictor, held = CannedPredictor(), threading.Event()
    predictor.hold = held
    settings = ServeSettings(otel=True, max_wait_ms=500)
    questions = {"r-task": TASK_Q, "r-kb": KB_Q, "r-chat": CHAT_Q}

    async def main():
        service = Service(None, settings, predictor=predictor, tracer_provider=provider)
        await service.start()
        predictor.batches.clear()
        exporter.clear()
        app = create_app(settings=settings, service=service, handle_sighup=False, tracer_provider=provider)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            # A question held in the model while the three arrive, so their first steps queue up together.
            holding = asyncio.ensure_future(client.post("/v1/ask", json={"question": HOLD}))
            while not predictor.batches:
                await asyncio.sleep(0.01)
            asking = [asyncio.ensure_future(client.post("/v1/ask", json={"question": q}, headers={"x-request-id": r}))
                      for r, q in questions.items()]
            await asyncio.sleep(0.2)
            held.set()
            answers = await asyncio.gather(*asking)
            await holding
        await service.stop()
        return [a.json() for a in answers]

    answers = asyncio.run(main())
    assert [a["route"] for a in answers] == ["task", "answer", "general"]
    # One batch, run as groups of similar length (one predict_mixed call each): the short two, then the long one.
    assert [sorted(text for _, text in call) for call in predictor.batches[1:3]] == [[CHAT_Q, KB_Q], [TASK_Q]]
    requests, steps = _split(exporter.get_finished_spans())
    requests = [r for r in requests if "lora_router.request_id" in r.attributes and
                r.attributes["lora_router.request_id"] in questions]
    by_span = {r.context.span_id: r for r in requests}
    assert len({r.context.trace_id for r in requests}) == 3, "three requests, three traces"
    mine = [s for s in steps if s.parent.span_id in by_span]
    for step in mine:
        request = by_span[step.parent.span_id]
        assert step.context.trace_id == request.context.trace_id
        task, text = step.attributes["lora_router.task"], questions[request.attributes["lora_router.request_id"]]
        if "predicted_label" in CANNED[(task, text)]:  # the label of this request's question, not a neighbour's
            assert step.attributes["lora_router.label"] == CANNED[(task, text)]["predicted_label"]
    first = [s for s in mine if s.attributes["lora_router.task"] == "question_classifier"]
    assert len(first) == 3 and all(s.attributes["lora_router.batch.rows"] == 3 for s in first)
    assert sorted(sum(by_span[s.parent.span_id].attributes["lora_router.request_id"] == r for s in mine)
                  for r in questions) == [1, 3, 3]


def test_refusals_and_predict_calls_are_traced_too(spans):
    provider, exporter = spans
    with _client(CannedPredictor(), provider, otel=True, api_key="k") as client:
        _wait_ready(client, {"authorization": "Bearer k"})
        exporter.clear()
        assert client.post("/v1/ask", json={"question": KB_Q}).status_code == 401
        r = client.post("/v1/tasks/question_classifier/predict", json={"inputs": [KB_Q, CHAT_Q]},
                        headers={"authorization": "Bearer k"})
        assert r.status_code == 200
    requests, steps = _split(exporter.get_finished_spans())
    refused, predicted = sorted(requests, key=lambda s: s.start_time)
    assert refused.attributes["http.response.status_code"] == 401 and refused.status.is_ok
    assert predicted.name == "POST /v1/tasks/{task}/predict"
    assert sorted(s.attributes["lora_router.label"] for s in steps) == ["数据平台相关问题", "通用问题"]
    assert all(s.parent.span_id == predicted.context.span_id for s in steps)


def test_off_by_default_no_span_no_middleware(spans):
    provider, exporter = spans
    with _client(CannedPredictor(), provider) as client:
        _wait_ready(client)
        assert client.post("/v1/ask", json={"question": TASK_Q}).status_code == 200
        assert client.app.state.service.tracing is None
        assert not any(m.cls.__name__ == "RequestTracing" for m in client.app.user_middleware)
    assert exporter.get_finished_spans() == ()


# The canned predictor again, for a fresh interpreter: what the app serves there.
CANNED_APP = f"""
import time
from types import SimpleNamespace
from fastapi.testclient import TestClient
from lora_router.core.chain import Chain
from lora_router.serving.app import create_app
from lora_router.serving.settings import ServeSettings
from lora_router.tasks import get_task

class Canned:
    chain = Chain.load()
    specs = {{name: get_task(name) for name in chain.tasks()}}
    encoders = {{name: SimpleNamespace(max_length=64) for name in specs}}
    def predict_mixed(self, items):
        return [{{"predicted_label": "无关问题", "confidence": 0.9}} for _ in items]

def ask(settings, headers=None):
    with TestClient(create_app(predictor=Canned(), settings=settings, handle_sighup=False)) as client:
        while client.get("/ready").status_code != 200:
            time.sleep(0.02)
        return client.post("/v1/ask", json={{"question": {CHAT_Q!r}}}, headers=headers).json()["route"]
"""


def test_off_the_service_loads_no_opentelemetry_beyond_what_fastapi_imports():
    # FastAPI >= 0.142 imports opentelemetry-api itself; lora-router adds nothing to it when --otel is off.
    code = """
import sys
import fastapi
before = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
""" + CANNED_APP + """
route = ask(ServeSettings())
after = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
result = [route, [m for m in after if m not in before], "lora_router.serving.tracing" in sys.modules]
"""
    out = run_refusing(code, ("opentelemetry",), block=False, timeout=120)
    route, added, _ = out["result"]
    assert route == "out_of_scope" and added == []
    assert not any(m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")) for m in out["loaded"])


def test_otel_without_the_extra_fails_at_start_with_the_install_command(tmp_path):
    code = f"""
import importlib.abc, sys

class NoSdk(importlib.abc.MetaPathFinder):  # opentelemetry-api comes with FastAPI; the SDK is the extra's
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ImportError("tried to import " + name)

sys.meta_path.insert(0, NoSdk())
from click.testing import CliRunner
from lora_router.cli import main
r = CliRunner().invoke(main, ["serve", "--onnx", {str(tmp_path)!r}, "--otel"])
result = [r.exit_code, r.output]
"""
    out = run_refusing(code, ("opentelemetry",), block=False, timeout=120)
    exit_code, output = out["result"]
    assert exit_code == 1 and "pip install 'lora-router[otel]'" in output


def test_spans_reach_an_otlp_http_collector_named_by_the_otel_environment(tmp_path):
    """The process's own set-up: OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, flushed at exit."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    code = f"""
import os
os.environ.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:{server.server_port}",
                  OTEL_SERVICE_NAME="router-under-test")
""" + CANNED_APP + f"""
result = ask(ServeSettings(otel=True), headers={{"traceparent": "00-{trace_id}-00f067aa0ba902b7-01"}})
"""
    try:
        assert run_refusing(code, ("opentelemetry",), block=False, timeout=120)["result"] == "out_of_scope"
    finally:
        server.shutdown()
    assert [path for path, _ in received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(received[0][1])
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    spans = [s for scope in resource.scope_spans for s in scope.spans]
    assert service == "router-under-test"
    # One server span per request, ours: FastAPI's own (>= 0.142, once a provider is set) is turned off.
    assert sorted(s.name for s in spans) == ["POST /v1/ask", "step question_classifier"]
    assert {s.trace_id.hex() for s in spans} == {trace_id}


def test_the_otel_setting_travels_with_the_settings_json():
    settings = ServeSettings(otel=True)
    assert ServeSettings.from_json(settings.to_json()).otel is True
    assert json.loads(ServeSettings().to_json())["otel"] is False


def test_a_real_export_traces_each_step_the_answer_lists(exported, spans):
    from lora_router.backends.onnx import OnnxRouter

    provider, exporter = spans
    with _client(OnnxRouter(exported.export), provider, otel=True) as client:
        _wait_ready(client)
        exporter.clear()
        answer = client.post("/v1/ask", json={"question": TASK_Q}).json()
    (request,), steps = _split(exporter.get_finished_spans())
    steps.sort(key=lambda s: s.start_time)
    assert [s.attributes["lora_router.task"] for s in steps] == [s["task"] for s in answer["steps"]]
    for span, step in zip(steps, answer["steps"]):
        assert span.parent.span_id == request.context.span_id
        if "predicted_label" in step["result"]:
            assert span.attributes["lora_router.label"] == step["result"]["predicted_label"]
            assert span.attributes["lora_router.probability"] == pytest.approx(step["result"]["confidence"])
