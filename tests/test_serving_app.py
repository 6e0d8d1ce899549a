"""The service in process: the batcher's bounds, batching per chain step, errors, and the OpenAPI contract."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from lora_router.serving.batcher import Batcher  # noqa: E402
from lora_router.serving.settings import ServeSettings  # noqa: E402


def _batcher(predict, *, requests=32, tokens=10_000, wait_ms=5.0, in_flight=lambda: 100):
    return Batcher(predict, executor=ThreadPoolExecutor(1), tokens=lambda task, text: len(text) + 2,
                   max_batch_tokens=tokens, max_batch_requests=requests, max_wait_ms=wait_ms, in_flight=in_flight)


def test_batches_respect_the_request_and_token_caps():
    seen: list[list] = []

    def predict(items):
        seen.append(list(items))
        return [{"echo": text} for _, text in items]

    async def main():
        by_rows = _batcher(predict, requests=4)
        out = await asyncio.gather(*(by_rows.submit("t", f"q{i}") for i in range(10)))
        await by_rows.close()
        by_tokens = _batcher(predict, tokens=120)
        long = await asyncio.gather(*(by_tokens.submit("t", "长" * 48 + str(i)) for i in range(5)))
        await by_tokens.close()
        return out, long

    out, long = asyncio.run(main())
    assert [o["echo"] for o in out] == [f"q{i}" for i in range(10)]
    assert [o["echo"] for o in long] == ["长" * 48 + str(i) for i in range(5)]
    assert max(len(b) for b in seen[:-3]) == 4 and all(len(b) <= 4 for b in seen)
    assert all(len(b) * 51 <= 120 for b in seen[-3:]), "rows x longest stays under max_batch_tokens"


def test_one_failing_item_does_not_fail_the_others_in_its_batch():
    def predict(items):
        if any(text == "bad" for _, text in items):
            raise RuntimeError("this input breaks the model")
        return [{"echo": text} for _, text in items]

    async def main():
        b = _batcher(predict)
        results = await asyncio.gather(*(b.submit("t", t) for t in ["a", "bad", "c"]), return_exceptions=True)
        await b.close()
        return results

    a, bad, c = asyncio.run(main())
    assert a == {"echo": "a"} and c == {"echo": "c"}
    assert isinstance(bad, RuntimeError)


def test_a_failing_batch_is_bisected_not_retried_item_by_item_and_logs_one_line_per_failure(caplog):
    calls: list[int] = []

    def predict(items):
        calls.append(len(items))
        if any(text.startswith("bad") for _, text in items):
            raise RuntimeError("this input breaks the model")
        return [{"echo": text} for _, text in items]

    async def main():
        b = _batcher(predict, requests=32)
        texts = [f"q{i:02d}" for i in range(31)] + ["bad"]  # one length: one group, one call per batch
        first = await asyncio.gather(*(b.submit("t", t) for t in texts), return_exceptions=True)
        again = await asyncio.gather(*(b.submit("t", t) for t in ["x00", "bad"]), return_exceptions=True)
        await b.close()
        return first, again

    with caplog.at_level("WARNING", logger="lora_router.serving.batcher"):
        first, again = asyncio.run(main())
    assert [r["echo"] for r in first[:31]] == [f"q{i:02d}" for i in range(31)]
    assert isinstance(first[31], RuntimeError) and isinstance(again[1], RuntimeError) and again[0] == {"echo": "x00"}
    # 32 rows with one bad: 1 + 2 per halving (5 halvings), where item by item took 1 + 32.
    assert calls[0] == 32 and len(calls) - 3 <= 1 + 2 * 5
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2, "one line per failed item, none per batch"
    assert failures[0].exc_info is not None and failures[1].exc_info is None, "the traceback once per distinct error"


def test_steps_nobody_waits_for_are_skipped_and_counted():
    from lora_router.serving.metrics import ServiceMetrics

    computed: list[str] = []

    def predict(items):
        computed.extend(text for _, text in items)
        return [{} for _ in items]

    async def main():
        metrics = ServiceMetrics()
        b = Batcher(predict, executor=ThreadPoolExecutor(1), tokens=lambda task, text: 3, max_batch_tokens=10_000,
                    max_batch_requests=32, max_wait_ms=50, in_flight=lambda: 100, metrics=metrics)
        kept = asyncio.ensure_future(b.submit("t", "kept"))
        left = [asyncio.ensure_future(b.submit("t", f"left{i}")) for i in range(5)]
        await asyncio.sleep(0)  # all six are queued; the batch is still gathering (it waits up to 50 ms)
        for task in left:
            task.cancel()
        await kept
        await b.close()
        return metrics.skipped_steps._value.get()

    skipped = asyncio.run(main())
    assert computed == ["kept"] and skipped == 5


def test_a_lone_request_is_answered_without_waiting_for_company():
    calls = []

    def predict(items):
        calls.append(len(items))
        return [{} for _ in items]

    async def main():
        b = _batcher(predict, wait_ms=1000, in_flight=lambda: 1)
        await asyncio.wait_for(b.submit("t", "alone"), timeout=0.9)  # would need a full second if it waited
        await b.close()

    asyncio.run(main())
    assert calls == [1]


class Recording:
    """An OnnxRouter whose ``predict_mixed`` calls are recorded."""

    def __init__(self, router):
        self.router = router
        self.batches: list[list[tuple[str, str]]] = []

    def __getattr__(self, name):
        return getattr(self.router, name)

    def predict_mixed(self, items):
        self.batches.append(list(items))
        return self.router.predict_mixed(items)


@pytest.mark.slow
def test_a_question_that_leaves_the_chain_at_step_one_leaves_the_batch_there(exported):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.serving.service import Service

    recording = Recording(OnnxRouter(exported.export, precision="fp32"))
    questions = ["帮我把sales_2024.csv导入到ODS层", "今天天气怎么样", "Python怎么给列表排序", "周末去哪儿吃火锅",
                 "数据清洗流程是什么？", "把/data/raw/user_log.parquet和orders.csv合并"]

    async def main():
        service = Service(None, ServeSettings(max_wait_ms=50), predictor=recording)
        await service.start()
        recording.batches.clear()
        answers = await service.ask(questions)
        await service.stop()
        return answers

    answers = asyncio.run(main())
    first = {text for batch in recording.batches for task, text in batch if task == "question_classifier"}
    assert first == set(questions)
    went_on = {a["question"] for a in answers if len(a["steps"]) > 1}
    later = {text for batch in recording.batches for task, text in batch if task != "question_classifier"}
    assert later == went_on
    assert any(len(a["steps"]) == 1 for a in answers), "some questions stop at step 1"


class Broken:
    """A predictor that fails on one text, to see a 500."""

    def __init__(self, router):
        self.router = router

    def __getattr__(self, name):
        return getattr(self.router, name)

    def predict_mixed(self, items):
        if any("boom" in text for _, text in items):
            raise RuntimeError("a bug in a predictor")
        return self.router.predict_mixed(items)


@pytest.mark.slow
def test_an_internal_error_is_a_500_with_a_request_id_and_the_server_keeps_serving(exported, caplog):
    from fastapi.testclient import TestClient

    from lora_router.backends.onnx import OnnxRouter
    from lora_router.serving.app import create_app

    app = create_app(predictor=Broken(OnnxRouter(exported.export)), handle_sighup=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _wait_ready(client)
        r = client.post("/v1/ask", json={"question": "boom 数据"})
        assert r.status_code == 500
        assert r.json()["error_type"] == "internal" and r.json()["request_id"] == r.headers["x-request-id"]
        assert client.post("/v1/ask", json={"question": "数据清洗流程是什么？"}).status_code == 200
    assert any(r.json()["request_id"] in rec.getMessage() and rec.exc_info for rec in caplog.records)


@pytest.mark.slow
def test_the_openapi_schema_finds_no_5xx(exported):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    from lora_router.backends.onnx import OnnxRouter
    from lora_router.serving.app import create_app

    app = create_app(predictor=OnnxRouter(exported.export), handle_sighup=False)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        _wait_ready(client)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures, calls = [], []
        for operation in schema.get_all_operations():
            op = operation.ok()

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=op.as_strategy())
            def check(case):
                body = case.body if not _is_unset(case.body) else None
                response = client.request(case.method, case.formatted_path, json=body, params=case.query or None,
                                          headers=case.headers or None)
                calls.append(response.status_code)
                if response.status_code >= 500:
                    failures.append((case.method, case.formatted_path, body, response.text[:200]))

            check()
        assert failures == []
        assert len(calls) >= 5 * len(app.openapi()["paths"]) and 200 in calls and 422 in calls


def _is_unset(value) -> bool:
    return type(value).__name__ in ("NotSet", "Unset")


def _wait_ready(client, tries: int = 600) -> None:
    import time

    for _ in range(tries):
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError("app not ready")


def test_a_batch_runs_in_groups_of_similar_length_and_answers_in_order():
    from lora_router.serving.batcher import length_groups

    groups = length_groups([10, 60, 12, 58, 11, 30])
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        lengths = [[10, 60, 12, 58, 11, 30][i] for i in g]
        assert len(lengths) * max(lengths) <= 1.25 * sum(lengths)
    assert [0, 4, 2] in groups and [3, 1] in groups

    seen: list[list] = []

    def predict(items):
        seen.append([text for _, text in items])
        return [{"echo": text} for _, text in items]

    async def main():
        b = _batcher(predict)
        texts = ["短", "长" * 50, "短句", "长" * 48]
        out = await asyncio.gather(*(b.submit("t", t) for t in texts))
        await b.close()
        return texts, out

    texts, out = asyncio.run(main())
    assert [o["echo"] for o in out] == texts
    assert all(max(map(len, g)) <= 2 * min(map(len, g)) for g in seen), "no group mixes short and long"


def test_limit_settings_check_themselves_naming_the_field():
    from lora_router.errors import ConfigError

    for bad, field in (({"request_timeout_s": -1}, "request_timeout_s"), ({"body_timeout_s": 0}, "body_timeout_s"),
                       ({"header_timeout_s": "10"}, "header_timeout_s"), ({"max_header_bytes": 0}, "max_header_bytes"),
                       ({"max_queued_questions": 10}, "max_queued_questions"),
                       ({"allowed_hosts": ["a b"]}, "allowed_hosts")):
        with pytest.raises(ConfigError, match=field):
            ServeSettings(**bad)
    assert ServeSettings(request_timeout_s=0).request_timeout_s == 0  # no limit
    assert ServeSettings(allowed_hosts=[" API.Example.com "]).allowed_hosts == ["api.example.com"]


def test_the_retry_after_of_a_full_queue_is_the_expected_wait():
    from lora_router.serving.limits import ThroughputMeter

    meter = ThroughputMeter()
    assert meter.retry_after(500, fallback=1) == 1  # nothing measured yet
    meter.record(100, 1.0)  # 100 questions a second
    assert meter.retry_after(500, fallback=1) == 5 and meter.retry_after(10, fallback=1) == 1
    assert meter.retry_after(10**9, fallback=1) == 60, "never more than a minute"


@pytest.mark.slow
def test_a_question_sent_while_the_models_load_waits_for_them_and_one_after_a_failed_load_is_503(exported):
    """Under --workers N a client cannot pick its worker: one still loading must answer, not refuse."""
    import threading

    from lora_router.backends.source import ModelSource
    from lora_router.core.options import PredictorOptions
    from lora_router.serving.service import NotReadyError, Service

    released = threading.Event()

    class SlowSource(ModelSource):
        def load(self):
            if not released.wait(30):
                raise RuntimeError("the test never released the load")
            if self.onnx.endswith("broken"):
                raise RuntimeError("this export is broken")
            return super().load()

    async def ask_while_loading(folder: str):
        service = Service(SlowSource(onnx=folder, options=PredictorOptions(precision="fp32")), ServeSettings())
        starting = asyncio.create_task(service.start())
        asking = asyncio.create_task(service.ask(["数据清洗流程是什么？"]))
        for _ in range(50):  # the request gets as far as it can while the load is held
            await asyncio.sleep(0)
        waiting = not asking.done()
        released.set()
        outcome = await asyncio.gather(asking, starting, return_exceptions=True)
        released.clear()
        await service.stop()
        return waiting, outcome

    waiting, (answers, started) = asyncio.run(ask_while_loading(str(exported.export)))
    assert waiting, "the request did not wait for the models"
    assert started is None and answers[0]["question"] == "数据清洗流程是什么？" and answers[0]["steps"]
    waiting, (refused, failed) = asyncio.run(ask_while_loading(str(exported.export) + "-broken"))
    assert waiting and isinstance(failed, RuntimeError)
    assert isinstance(refused, NotReadyError) and "this export is broken" in str(refused)
