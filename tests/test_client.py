"""``lora_router.client``: the retry policy on a mock transport (quick), then against a real ``lora-router serve``.

Waits are measured through the clients' injectable ``sleep`` and ``clock``,
never by the wall clock; every loop is bounded and every server is stopped by
the test that started it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import threading
import time

import httpx
import pytest

from lora_router.client import (
    API_KEY_ENV,
    AsyncClient,
    AuthenticationError,
    Client,
    InputTooLargeError,
    InvalidInputError,
    RetryPolicy,
    ServerError,
    ServiceBusyError,
    ServiceTimeoutError,
    ServiceUnreachableError,
    TaskNotServedError,
)
from lora_router.errors import ConfigError, InputError, LoraRouterError, UnknownTaskError
from support.isolation import HEAVY, run_refusing
from support.serve import wait_for

KEY = "k3y-for-tests"
SAMPLES = ["帮我把sales_2024.csv导入到ODS层", "ODS层和DWD层有什么区别？", "Python怎么给列表排序", "今天天气怎么样",
           "数据清洗流程是什么？", "把/data/raw/user_log.parquet和orders.csv合并"]
ANSWER = {"question": "q", "steps": [], "route": "general", "file_names": [], "answer": None}


class Recorder:
    """An injectable sleep and clock: records each wait and moves the clock by it; ``on_wait`` runs at each."""

    def __init__(self, on_wait=None):
        self.now, self.waits, self.on_wait = 0.0, [], on_wait

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.on_wait is not None:
            self.on_wait(len(self.waits))

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def mock_client(answers, recorder: Recorder, retry: RetryPolicy | None = None, **kw) -> tuple[Client, list]:
    """A ``Client`` whose server is ``answers``: a list of responses or exceptions, served in turn."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = Client("http://router.test", transport=httpx.MockTransport(handler), sleep=recorder.sleep,
                    clock=recorder.clock, rng=random.Random(0), retry=retry, **kw)
    return client, seen


def error(status: int, message: str, error_type: str, headers: dict | None = None, **extra) -> httpx.Response:
    return httpx.Response(status, json={"error": message, "error_type": error_type, **extra}, headers=headers)


# --- quick: no server, no model ---------------------------------------------------------------------------------


def test_the_client_imports_neither_torch_nor_onnxruntime_nor_fastapi():
    banned = (*HEAVY, "onnxruntime", "fastapi", "starlette", "uvicorn", "pydantic", "numpy", "tokenizers")
    out = run_refusing("from lora_router.client import AsyncClient, Client\n"
                       "import lora_router\n"
                       "with lora_router.Client('http://127.0.0.1:9') as c: result = type(c).__name__",
                       banned)
    assert out == {"loaded": [], "result": "Client"}


def test_the_key_variable_is_the_one_serve_reads():
    from lora_router.serving.settings import API_KEY_ENV as SERVE_KEY_ENV

    assert API_KEY_ENV == SERVE_KEY_ENV


def test_a_429_storm_waits_what_retry_after_asks_and_never_less():
    rec = Recorder()
    busy = error(429, "the server is answering 1 requests, its limit; retry after 2 s", "overloaded",
                 {"retry-after": "2"})
    client, seen = mock_client([busy, busy, busy, httpx.Response(200, json=ANSWER)], rec)
    assert client.ask("q") == ANSWER
    assert len(seen) == 4 and len(rec.waits) == 3
    assert all(2 <= w <= 2 * 1.25 for w in rec.waits), rec.waits
    assert len(set(rec.waits)) == 3, "jitter spreads the waits"


def test_without_retry_after_the_wait_doubles_up_to_its_cap():
    rec = Recorder()
    policy = RetryPolicy(max_attempts=7, max_total_s=1000, backoff_s=1, max_backoff_s=4, jitter=0)
    client, _ = mock_client([error(503, "models are not loaded yet", "unavailable")] * 6
                            + [httpx.Response(200, json=ANSWER)], rec, policy)
    client.ask("q")
    assert rec.waits == [1, 2, 4, 4, 4, 4]


def test_the_retries_stop_at_max_attempts_with_a_busy_error():
    rec = Recorder()
    client, seen = mock_client([error(429, "busy", "overloaded", {"retry-after": "1"})], rec,
                               RetryPolicy(max_attempts=3))
    with pytest.raises(ServiceBusyError, match="gave up after 3 attempt") as caught:
        client.ask("q")
    assert len(seen) == 3 and len(rec.waits) == 2
    assert caught.value.status == 429 and caught.value.retry_after == 1


def test_a_retry_after_beyond_the_time_budget_gives_up_at_once():
    rec = Recorder()
    client, seen = mock_client([error(503, "loading", "unavailable", {"retry-after": "120"})], rec,
                               RetryPolicy(max_total_s=30))
    with pytest.raises(ServiceBusyError) as caught:
        client.ask("q")
    assert len(seen) == 1 and rec.waits == []
    assert caught.value.retry_after == 120, "the caller learns when to come back"


def test_retry_after_as_an_http_date_is_honoured():
    rec = Recorder()
    when = httpx.Headers({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))})
    client, _ = mock_client([error(429, "busy", "overloaded", dict(when)), httpx.Response(200, json=ANSWER)], rec)
    client.ask("q")
    assert 3 <= rec.waits[0] <= 5 * 1.25


@pytest.mark.parametrize(("response", "raised"), [
    (error(422, "question is empty or only whitespace; give a question", "validation"), InvalidInputError),
    (error(413, "question has 20000 characters; this service takes at most 10000", "payload_too_large"),
     InputTooLargeError),
    (error(404, "unknown task 'x'; this service has: question_classifier", "not_found",
           tasks=["question_classifier"]), TaskNotServedError),
    (error(401, "missing or wrong API key; send Authorization: Bearer <key>", "unauthorized"), AuthenticationError),
    (error(500, "internal error; the server logged it with this request id", "internal", request_id="abc"),
     ServerError),
])
def test_an_error_answer_other_than_429_and_503_raises_at_once(response, raised):
    rec = Recorder()
    client, seen = mock_client([response, httpx.Response(200, json=ANSWER)], rec)
    with pytest.raises(raised) as caught:
        client.ask("q")
    assert len(seen) == 1 and rec.waits == []
    assert response.json()["error"] in str(caught.value)
    assert caught.value.status == response.status_code and isinstance(caught.value, LoraRouterError)


def test_connection_errors_are_retried_then_reported_with_the_url():
    rec = Recorder()
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    client, seen = mock_client([refused, httpx.RemoteProtocolError("Server disconnected"),
                                httpx.Response(200, json=ANSWER)], rec)
    assert client.ask("q") == ANSWER and len(rec.waits) == 2
    rec = Recorder()
    client, seen = mock_client([refused], rec, RetryPolicy(max_attempts=4))
    with pytest.raises(ServiceUnreachableError, match="http://router.test.*4 attempt") as caught:
        client.ask("q")
    assert len(seen) == 4 and isinstance(caught.value, ConnectionError)


def test_a_read_timeout_is_the_callers_bound_and_not_retried():
    rec = Recorder()
    client, seen = mock_client([httpx.ReadTimeout("timed out")], rec, timeout=0.5)
    with pytest.raises(ServiceTimeoutError, match="0.5"):
        client.ask("q")
    assert len(seen) == 1


def test_the_key_comes_from_the_argument_or_else_the_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    for kw, sent in (({"api_key": "from-arg"}, "Bearer from-arg"), ({}, "Bearer from-env")):
        client, seen = mock_client([httpx.Response(200, json=ANSWER)], Recorder(), **kw)
        client.ask("q")
        assert seen[0].headers["authorization"] == sent
    refused = error(401, "missing or wrong API key; send Authorization: Bearer <key>", "unauthorized")
    client, _ = mock_client([refused], Recorder())
    with pytest.raises(AuthenticationError, match=f"key from {API_KEY_ENV}"):
        client.ask("q")
    monkeypatch.delenv(API_KEY_ENV)
    client, seen = mock_client([refused], Recorder())
    with pytest.raises(AuthenticationError, match="sent no key"):
        client.ask("q")
    assert "authorization" not in seen[0].headers


def test_long_lists_go_in_parts_and_tei_scores_come_back_as_classification_results():
    def handler(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["inputs"]
        return httpx.Response(200, json=[[{"label": "b", "score": 0.7}, {"label": "a", "score": 0.3}]] * len(inputs))

    sizes = []
    hook = httpx.MockTransport(lambda r: (sizes.append(len(json.loads(r.content)["inputs"])), handler(r))[1])
    with Client("http://router.test", transport=hook, max_batch=4) as client:
        results = client.predict("question_classifier", [f"t{i}" for i in range(10)])
    assert sizes == [4, 4, 2]
    assert results[0] == {"predicted_label": "b", "confidence": 0.7, "probabilities": {"a": 0.3, "b": 0.7}}
    with pytest.raises(InputError, match="one string"):
        Client("http://router.test").ask_batch("one question")


def test_a_cut_input_warns_the_caller_as_in_process():
    note = '199 lora-router "the question is longer than question_classifier takes; only its first 128 tokens"'
    scores = [{"label": "a", "score": 1.0}]
    client, _ = mock_client([httpx.Response(200, json=scores, headers={"warning": note})], Recorder())
    with pytest.warns(UserWarning, match="only its first 128 tokens") as caught:
        client.predict("question_classifier", "长" * 500)
    assert caught[0].filename == __file__


def test_a_policy_outside_its_range_is_a_config_error():
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="jitter"):
        RetryPolicy(jitter=-1)


def test_the_async_client_follows_the_same_policy():
    rec = Recorder()
    answers = iter([httpx.ConnectError("refused"), error(429, "busy", "overloaded", {"retry-after": "1"}),
                    httpx.Response(200, json=[ANSWER, ANSWER]), error(422, "questions[1]: bad", "validation")])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main():
        async with AsyncClient("http://router.test", transport=httpx.MockTransport(handler), sleep=rec.async_sleep,
                               clock=rec.clock) as client:
            assert await client.ask_batch(["a", "b"]) == [ANSWER, ANSWER]
            with pytest.raises(InvalidInputError, match=r"questions\[1\]"):
                await client.ask_batch(["a", ""])

    asyncio.run(main())
    assert len(rec.waits) == 2 and rec.waits[1] >= 1


# --- against a real `lora-router serve` -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """fp32 (answers do not depend on their batch), with an API key."""
    pytest.importorskip("fastapi")
    from support.serve import Server

    s = Server("--onnx", str(exported.export), "--precision", "fp32", "--api-key", KEY,
               log_path=tmp_path_factory.mktemp("client") / "server.log")
    try:
        s.wait_ready(headers={"authorization": f"Bearer {KEY}"})
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def onnx_router(exported):
    from lora_router.backends.onnx import OnnxRouter

    return OnnxRouter(exported.export, precision="fp32")


def requests_counted(url: str, endpoint: str, status: int) -> float:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {KEY}"}, timeout=10).text
    pattern = rf'^lora_router_requests_total\{{endpoint="{re.escape(endpoint)}",status="{status}"\}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, text, flags=re.M))


def test_answers_over_http_equal_onnx_router_in_process_with_the_key_from_the_environment(
        server, onnx_router, monkeypatch):
    from support.serve import same_answer

    monkeypatch.setenv(API_KEY_ENV, KEY)
    with Client(server.url) as client:
        served = client.tasks()
        assert same_answer(client.ask(SAMPLES[0]), onnx_router.ask(SAMPLES[0]))
        assert same_answer(client.ask_batch(SAMPLES), onnx_router.ask_batch(SAMPLES))
        for task in [t["name"] for t in served["tasks"]]:
            assert same_answer(client.predict(task, SAMPLES[5]), onnx_router.predict(task, SAMPLES[5])), task
            assert same_answer(client.predict(task, SAMPLES), onnx_router.predict_batch(task, SAMPLES)), task
    assert {t["name"] for t in served["tasks"]} == set(onnx_router.specs)
    assert len({a["route"] for a in onnx_router.ask_batch(SAMPLES)}) >= 2, "the samples cover several routes"


def test_without_the_key_the_service_answers_an_authentication_error(server, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    rec = Recorder()
    with Client(server.url, sleep=rec.sleep) as client, pytest.raises(AuthenticationError, match="sent no key"):
        client.ask(SAMPLES[0])
    assert rec.waits == []


def test_a_422_and_a_404_raise_the_library_errors_at_once(server):
    rec = Recorder()
    before = (requests_counted(server.url, "/v1/ask", 422),
              requests_counted(server.url, "/v1/tasks/{task}/predict", 404))
    with Client(server.url, api_key=KEY, sleep=rec.sleep) as client:
        with pytest.raises(InputError, match="question is empty"):
            client.ask("   ")
        with pytest.raises(UnknownTaskError, match="question_classifier") as caught:
            client.predict("question_clasifier", "数据清洗流程是什么？")
    assert "question_classifier" in caught.value.tasks
    assert rec.waits == []
    after = (requests_counted(server.url, "/v1/ask", 422),
             requests_counted(server.url, "/v1/tasks/{task}/predict", 404))
    assert [a - b for a, b in zip(after, before)] == [1, 1], "one request each, no retry"


class HeldRequest:
    """A request the server has begun: it holds a slot until finished.

    Its body keeps moving (a space every 0.2 s before the JSON): a body that stalls stops counting
    against the server's concurrency limit.
    """

    def __init__(self, port: int, question: str):
        self.body = json.dumps({"question": question}).encode()
        self.padding = 600  # spaces: up to two minutes of trickle, far more than a test needs
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {self.padding + len(self.body)}\r\n\r\n".encode())
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while self.sent < self.padding - 1 and not self.done.wait(0.2):
            self.sock.sendall(b" ")
            self.sent += 1

    def finish(self) -> bytes:
        self.done.set()
        self.thread.join(10)
        self.sock.sendall(b" " * (self.padding - self.sent) + self.body)
        reply = self.sock.recv(65536)
        self.sock.close()
        return reply


@pytest.fixture
def one_slot_server(exported, tmp_path):
    pytest.importorskip("fastapi")
    from support.serve import Server

    with Server("--onnx", str(exported.export), "--precision", "fp32", "--max-concurrent-requests", "1",
                log_path=tmp_path / "server.log") as s:
        yield s


def ride_out_a_storm(server, make_client, run) -> tuple[Recorder, object]:
    """Hold the server's one slot; the client is refused with 429 until its third wait, when the slot frees."""
    held = HeldRequest(server.port, SAMPLES[1])
    wait_for(lambda: "lora_router_requests_in_flight 1.0" in httpx.get(f"{server.url}/metrics", timeout=10).text)
    replies = []
    rec = Recorder(on_wait=lambda n: n == 3 and replies.append(held.finish()))
    answer = run(make_client(rec))
    assert replies and b"200 OK" in replies[0]
    return rec, answer


class CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, recording the status of every answer it receives."""

    def __init__(self):
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def test_a_429_storm_is_ridden_out_honouring_retry_after(one_slot_server, onnx_router):
    from support.serve import same_answer

    policy = RetryPolicy(max_attempts=10, max_total_s=60)
    transport = CountingTransport()

    def run(client: Client):
        with client:
            return client.ask(SAMPLES[0])

    rec, answer = ride_out_a_storm(
        one_slot_server, lambda rec: Client(one_slot_server.url, retry=policy, sleep=rec.sleep, clock=rec.clock,
                                            transport=transport), run)
    assert same_answer(answer, onnx_router.ask(SAMPLES[0]))
    assert len(rec.waits) >= 3 and all(1 <= w <= 1.25 for w in rec.waits), rec.waits  # Retry-After: 1
    assert transport.statuses == [429] * len(rec.waits) + [200]


def test_the_async_client_rides_out_a_429_storm_too(one_slot_server, onnx_router):
    from support.serve import same_answer

    async def ask(client: AsyncClient):
        async with client:
            return await client.ask_batch(SAMPLES[:2])

    rec, answers = ride_out_a_storm(
        one_slot_server, lambda rec: AsyncClient(one_slot_server.url, sleep=rec.async_sleep,
                                                 clock=rec.clock, retry=RetryPolicy(max_attempts=10, max_total_s=60)),
        lambda client: asyncio.run(ask(client)))
    assert same_answer(answers, onnx_router.ask_batch(SAMPLES[:2]))
    assert len(rec.waits) >= 3 and all(1 <= w <= 1.25 for w in rec.waits), rec.waits


def test_the_async_client_equals_onnx_router_and_raises_the_same_errors(server, onnx_router):
    from support.serve import same_answer

    async def main():
        async with AsyncClient(server.url, api_key=KEY) as client:
            answers = await asyncio.gather(*(client.ask(q) for q in SAMPLES))
            scores = await client.predict("question_classifier", SAMPLES)
            tasks = await client.tasks()
            with pytest.raises(InvalidInputError):
                await client.predict("question_classifier", [SAMPLES[0], ""])
            with pytest.raises(TaskNotServedError):
                await client.predict("nope", "x")
            assert await client.ask_batch([]) == []
        return answers, scores, tasks

    answers, scores, tasks = asyncio.run(main())
    assert same_answer(answers, onnx_router.ask_batch(SAMPLES))
    assert same_answer(scores, onnx_router.predict_batch("question_classifier", SAMPLES))
    assert tasks["chain"]["start"] == "question_classifier"


def test_a_server_restart_in_the_middle_of_a_run_loses_no_question(exported, tmp_path, onnx_router, monkeypatch):
    pytest.importorskip("fastapi")
    from support import serve as serve_support
    from support.serve import Server, free_port, same_answer

    port = free_port()
    monkeypatch.setattr(serve_support, "free_port", lambda: port)  # the second server takes the first one's port
    args = ("--onnx", str(exported.export), "--precision", "fp32")
    policy = RetryPolicy(max_attempts=1000, max_total_s=120, backoff_s=0.05, max_backoff_s=0.5)
    waits, answered, failed = [], [], []
    restarted = threading.Event()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    def run() -> None:
        try:
            with Client(f"http://127.0.0.1:{port}", retry=policy, sleep=sleep) as client:
                for i in range(2000):  # bounded; stops 5 questions after the restart
                    question = SAMPLES[i % len(SAMPLES)]
                    answered.append((question, client.ask(question), restarted.is_set()))
                    if sum(after for _, _, after in answered) >= 5:
                        return
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failed.append(exc)

    first = Server(*args, log_path=tmp_path / "first.log")
    with first:
        asker = threading.Thread(target=run, daemon=True)
        asker.start()
        wait_for(lambda: len(answered) >= 5 or failed)
        first.proc.kill()  # a crash: no graceful shutdown
        first.wait(30)
    with Server(*args, log_path=tmp_path / "second.log"):
        restarted.set()
        asker.join(120)
    assert not asker.is_alive() and failed == []
    assert waits, "the client met the restart and retried"
    assert sum(after for _, _, after in answered) == 5
    assert all(same_answer(answer, onnx_router.ask(q)) for q, answer, _ in answered)


def test_the_langchain_router_routes_through_the_client_as_in_process(server, onnx_router):
    pytest.importorskip("langchain_core")
    from lora_router.client import AsyncClient
    from lora_router.integrations.langchain import RouterBranch

    def route_of(name):
        return lambda x: (name, x["question"], x["routing"]["route"])

    routes = {name: route_of(name) for name in ("answer", "task", "general", "out_of_scope", "uncertain")}
    with Client(server.url, api_key=KEY) as client:
        got = RouterBranch(client, **routes).batch(SAMPLES)
    want = [a["route"] for a in onnx_router.ask_batch(SAMPLES)]
    assert got == [(route, q, route) for q, route in zip(SAMPLES, want)]

    async def main():
        async with AsyncClient(server.url, api_key=KEY) as client:
            return await RouterBranch(client, **routes).abatch(SAMPLES)

    assert asyncio.run(main()) == got
