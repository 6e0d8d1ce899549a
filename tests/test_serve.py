"""``lora-router serve``: a real server in a subprocess on 127.0.0.1, a real HTTP client.

Every load loop is bounded in count and time; every server is stopped by the
test that started it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket

import httpx
import pytest

from support.serve import SAMPLES, Load, Server, same_answer, wait_for

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

ODD = ["含\x00空字符的问题", "表情😀🚀能导入吗", "مرحبا ODS層",
       "零\u200b宽\u200d字符\u200e和\u202e反向", "   padded   "]


def chain_questions(n: int) -> list[str]:
    from lora_router.data.bundled import bundled_dir

    lines = (bundled_dir() / "chain" / "test.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines[:n]]


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    # fp32: scores compared with PyTorch-free OnnxRouter fp32 below (int8 rows are batch-independent too:
    # test_default_int8_export_answers_every_chain_question_alike_alone_and_under_32_clients).
    with Server("--onnx", str(exported.export), "--precision", "fp32",
                log_path=tmp_path_factory.mktemp("serve") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def onnx_router(exported):
    from lora_router.backends.onnx import OnnxRouter

    return OnnxRouter(exported.export, precision="fp32")


def test_every_endpoint_answers(server):
    with server.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/ready").json()["status"] == "ready"
        tasks = c.get("/v1/tasks").json()
        assert {t["name"] for t in tasks["tasks"]} == {"question_classifier", "question_type_classifier",
                                                        "file_name_pick", "question_answer"}
        assert tasks["chain"]["start"] == "question_classifier"
        assert tasks["thresholds"]["question_classifier"] == pytest.approx(0.5)
        assert tasks["parity"], "the export's parity figures are shown"
        info = c.get("/info").json()
        assert info["max_client_batch_size"] == 64 and "question_answer" in info["tasks"]
        assert c.get("/openapi.json").json()["paths"]["/v1/ask"]["post"]
        assert c.get("/docs").status_code == 200
        assert c.post("/v1/ask", json={"question": SAMPLES[0]}).status_code == 200
        assert c.post("/v1/tasks/question_classifier/predict", json={"inputs": SAMPLES[1]}).status_code == 200
        assert c.get("/metrics").status_code == 200


def test_ask_over_http_equals_onnx_router_ask(server, onnx_router):
    questions = SAMPLES + chain_questions(40)
    expected = [onnx_router.ask(q) for q in questions]
    with server.client() as c:
        one_by_one = [c.post("/v1/ask", json={"question": q}).json() for q in questions]
        batched = c.post("/v1/ask", json={"questions": questions}).json()
    assert same_answer(one_by_one, expected)
    assert same_answer(batched, expected)
    assert len({a["route"] for a in expected}) >= 2, "the questions cover several routes"


def test_predict_follows_tei_shape_for_classification(server, onnx_router):
    with server.client() as c:
        one = c.post("/v1/tasks/question_classifier/predict", json={"inputs": SAMPLES[0]}).json()
        many = c.post("/v1/tasks/question_classifier/predict", json={"inputs": SAMPLES[:3]}).json()
        files = c.post("/v1/tasks/file_name_pick/predict", json={"inputs": SAMPLES[5]}).json()
        unknown = c.post("/v1/tasks/question_clasifier/predict", json={"inputs": "x"})
    expected = onnx_router.predict("question_classifier", SAMPLES[0])
    assert one[0]["label"] == expected["predicted_label"]
    assert [d["score"] for d in one] == sorted((d["score"] for d in one), reverse=True)
    assert {d["label"] for d in one} == set(expected["probabilities"])
    assert len(many) == 3 and all(isinstance(x, list) for x in many)
    assert same_answer(files, onnx_router.predict("file_name_pick", SAMPLES[5]))
    assert unknown.status_code == 404
    assert "question_classifier" in unknown.json()["tasks"]


def test_a_tei_client_works_by_changing_the_url(server):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=f"{server.url}/v1/tasks/question_classifier/predict")
    out = client.text_classification(SAMPLES[3])
    assert out and {o.label for o in out} <= {"数据平台相关问题", "通用问题", "无关问题"}


def test_metrics_parse_with_prometheus_parser(server):
    from prometheus_client.parser import text_string_to_metric_families

    with server.client() as c:
        c.post("/v1/ask", json={"questions": SAMPLES})
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("lora_router_requests", "lora_router_request_duration_seconds", "lora_router_step_duration_seconds",
                 "lora_router_batch_size", "lora_router_queue_depth", "lora_router_questions"):
        assert name in families, name
    steps = {s.labels.get("task") for s in families["lora_router_step_duration_seconds"].samples}
    assert "question_classifier" in steps
    routes = {s.labels["route"] for s in families["lora_router_questions"].samples if "route" in s.labels}
    assert routes & {"task", "general", "out_of_scope", "answer", "uncertain"}
    ask_ok = [s for s in families["lora_router_requests"].samples
              if s.labels.get("endpoint") == "/v1/ask" and s.labels.get("status") == "200"
              and s.name.endswith("_total")]
    assert ask_ok and ask_ok[0].value >= 1


@pytest.mark.parametrize(("body", "status", "field"), [
    (b'{"question": "unterminated', 422, "body"),
    (b'["a list"]', 422, "body"),
    (b'{"question": 42}', 422, "question"),
    (b'{"questions": "not a list"}', 422, "questions"),
    (b'{"questions": ["ok", 3]}', 422, "questions[1]"),
    (b'{"questoin": "typo"}', 422, "questoin"),
    (b'{"question": "   "}', 422, "question"),
    (b'{"questions": []}', 422, "questions"),
    (b'{"question": "a", "questions": ["b"]}', 422, "exactly one"),
    (json.dumps({"question": "长" * 100_000}).encode(), 413, "question"),
    (json.dumps({"questions": ["问"] * 65}).encode(), 413, "questions"),
    (b'{"question": "' + b"a" * (1 << 20) + b'"}', 413, "body"),
])
def test_bad_input_is_a_clear_4xx_naming_the_field(server, body, status, field):
    with server.client() as c:
        r = c.post("/v1/ask", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert field in r.json()["error"]
        assert r.json()["error_type"] in ("validation", "payload_too_large")
        assert c.get("/health").status_code == 200


def test_odd_text_is_answered_and_a_long_question_is_cut_with_a_warning(server):
    with server.client() as c:
        for text in ODD:
            r = c.post("/v1/ask", json={"question": text})
            assert r.status_code == 200, (text, r.text)
            assert r.json()["question"] == text
        long = c.post("/v1/ask", json={"question": "请问" + "数据" * 300 + "怎么导入"})
    assert long.status_code == 200
    assert "first 128 tokens" in long.json()["warnings"][0]


def test_unknown_path_and_method_get_json_errors(server):
    with server.client() as c:
        assert c.get("/v2/ask").json()["error_type"] == "not_found"
        r = c.get("/v1/ask")
        assert r.status_code == 405 and r.json()["error_type"] == "method_not_allowed"


def test_a_client_that_disconnects_mid_request_does_not_hurt_the_server(server):
    body = json.dumps({"questions": SAMPLES * 10}).encode()
    for cut in (len(body) // 2, len(body)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
    with server.client() as c:
        assert c.post("/v1/ask", json={"question": SAMPLES[0]}).status_code == 200
    assert "Traceback" not in server.log()


def test_2000_requests_from_32_clients_never_mix_up_answers(server):
    questions = SAMPLES + ODD + chain_questions(60)
    with server.client() as c:
        alone = {q: c.post("/v1/ask", json={"question": q}).json() for q in questions}
    failures, mismatches, done = [], [], []

    async def client(k: int, n: int, http: httpx.AsyncClient) -> None:
        for i in range(n):
            q = questions[(k * 7 + i * 13) % len(questions)]
            answer = await _ask(http, q, failures)
            if answer is not None and not same_answer(answer, alone[q]):
                mismatches.append(q)
            done.append(1)

    async def main() -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            await asyncio.wait_for(asyncio.gather(*(client(k, 2000 // 32 + (k < 2000 % 32), http)
                                                    for k in range(32))), timeout=300)

    asyncio.run(main())
    assert len(done) == 2000
    assert failures == [] and mismatches == []
    metrics = httpx.get(f"{server.url}/metrics").text
    sizes = [line for line in metrics.splitlines() if line.startswith("lora_router_batch_size_bucket")]
    one_row = float(next(line for line in sizes if 'le="1.0"' in line).split()[-1])
    total = float(next(line for line in sizes if 'le="+Inf"' in line).split()[-1])
    assert one_row < total, "concurrent questions were batched together"


async def _ask(http: httpx.AsyncClient, question: str, failures: list) -> dict | None:
    """The answer to ``question``, or None with the error or status added to ``failures``."""
    try:
        r = await http.post("/v1/ask", json={"question": question})
    except httpx.HTTPError as exc:
        failures.append(repr(exc))
        return None
    if r.status_code != 200:
        failures.append(r.status_code)
        return None
    return r.json()


def _route_and_labels(answer: dict) -> tuple:
    return answer["route"], [(s["task"], s["result"].get("predicted_label"), s["result"].get("file_names"))
                             for s in answer["steps"]]


def test_default_int8_export_answers_every_chain_question_alike_alone_and_under_32_clients(exported, tmp_path):
    """Static int8 (the default) computes each row on its own: batch-mates can no longer move an answer."""
    questions = chain_questions(183)
    with Server("--onnx", str(exported.export), log_path=tmp_path / "server.log") as s:
        with s.client() as c:
            assert c.get("/v1/tasks").json()["source"]["precision"] == "int8"
            alone = {q: c.post("/v1/ask", json={"question": q}).json() for q in questions}
        failures, differ, done = [], [], []

        async def client(k: int, http: httpx.AsyncClient) -> None:
            for q in questions[k::32] * 2:  # every question twice, among 31 other clients' questions
                answer = await _ask(http, q, failures)
                if answer is None:
                    continue
                done.append(q)
                if _route_and_labels(answer) != _route_and_labels(alone[q]) or \
                        not same_answer(answer, alone[q], tol=0.0):
                    differ.append(q)

        async def main() -> None:
            async with httpx.AsyncClient(base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=32)) as http:
                await asyncio.wait_for(asyncio.gather(*(client(k, http) for k in range(32))), timeout=300)

        asyncio.run(main())
        metrics = httpx.get(f"{s.url}/metrics").text
    assert failures == [] and len(done) == 2 * len(questions)
    assert differ == []
    assert len({a["route"] for a in alone.values()}) >= 2, "the questions cover several routes"
    sizes = [line for line in metrics.splitlines() if line.startswith("lora_router_batch_size_bucket")]
    one_row = float(next(line for line in sizes if 'le="1.0"' in line).split()[-1])
    total = float(next(line for line in sizes if 'le="+Inf"' in line).split()[-1])
    assert one_row < total, "concurrent questions were batched together"


def test_api_key_guards_every_endpoint_but_health(exported, tmp_path):
    s = Server("--onnx", str(exported.export), log_path=tmp_path / "log2", env={"LORA_ROUTER_API_KEY": "s3cret"})
    try:
        s.wait_ready(headers={"authorization": "Bearer s3cret"})
        with s.client() as c:
            assert c.get("/health").status_code == 200
            for path in ("/ready", "/v1/tasks", "/metrics", "/info", "/openapi.json"):
                r = c.get(path)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            wrong = c.post("/v1/ask", json={"question": "x"}, headers={"authorization": "Bearer wrong"})
            assert wrong.status_code == 401
            ok = c.post("/v1/ask", json={"question": SAMPLES[0]}, headers={"authorization": "Bearer s3cret"})
            assert ok.status_code == 200
    finally:
        s.stop()


def test_sigterm_under_load_answers_in_flight_and_exits_0(exported, tmp_path):
    s = Server("--onnx", str(exported.export), log_path=tmp_path / "log")
    with s:
        body = json.dumps({"questions": chain_questions(64)}).encode()
        in_flight = []
        for _ in range(3):  # requests the server has begun: headers and most of the body sent
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
            sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:-5])
            in_flight.append(sock)
        wait_for(lambda: "lora_router_requests_in_flight 3.0" in httpx.get(f"{s.url}/metrics").text)
        s.signal(signal.SIGTERM)
        wait_for(lambda: "Shutting down" in s.log())  # it stopped accepting; the three are still in flight
        replies = []
        for sock in in_flight:
            sock.sendall(body[-5:])
            replies.append(_read_all(sock))
            sock.close()
        assert s.wait(60) == 0, s.log()
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies), [r[:80] for r in replies]
    assert all(json.loads(r.split(b"\r\n\r\n", 1)[1])[0]["question"] for r in replies)
    assert "Traceback" not in s.log()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(rest) >= length:
            return b"".join(chunks)


def _shape(answer: dict) -> tuple:
    """What a chain decided for a question: its route and each step's task and label."""
    return answer["route"], tuple((st["task"], st["result"].get("predicted_label")) for st in answer["steps"])


def test_sighup_reloads_under_load_new_models_answer_and_a_damaged_export_is_refused(exported, tmp_path):
    from support.export import CHAIN_ALL_GENERAL, copy_export, set_chain

    folder = copy_export(exported.export, tmp_path / "export")
    with Server("--onnx", str(folder), "--precision", "fp32", log_path=tmp_path / "log") as s, \
            Load(s.url) as load:
        old = {q: _shape(httpx.post(f"{s.url}/v1/ask", json={"question": q}, timeout=60).json()) for q in SAMPLES}
        wait_for(lambda: len(load.codes) >= 10)
        set_chain(folder, CHAIN_ALL_GENERAL)
        s.signal(signal.SIGHUP)
        wait_for(lambda: 'lora_router_reloads_total{result="ok"} 1.0' in httpx.get(f"{s.url}/metrics").text)
        assert httpx.get(f"{s.url}/ready").json()["generation"] == 2
        new = {q: _shape(httpx.post(f"{s.url}/v1/ask", json={"question": q}, timeout=60).json()) for q in SAMPLES}
        (folder / "tokenizer.json").write_text("{}", "utf-8")  # every layout reads it
        s.signal(signal.SIGHUP)
        wait_for(lambda: 'lora_router_reloads_total{result="refused"} 1.0' in httpx.get(f"{s.url}/metrics").text)
        kept = {q: _shape(httpx.post(f"{s.url}/v1/ask", json={"question": q}, timeout=60).json()) for q in SAMPLES}
        assert httpx.get(f"{s.url}/ready").json()["generation"] == 2
    assert all(route == "general" and len(steps) == 1 for route, steps in new.values()), new
    assert sum(old[q] != new[q] for q in SAMPLES) >= 3, "the new chain answers differently"
    assert kept == new, "the models loaded before the damaged export keep serving"
    assert load.errors == [] and set(load.codes) == {200} and len(load.codes) > 10
    mixed = [a["question"] for a in load.answers if _shape(a) not in (old[a["question"]], new[a["question"]])]
    assert mixed == [], "every chain ran on the old models or the new, never part of each"
    assert "reload refused" in s.log() and "altered" in s.log()


def test_a_knowledge_base_replaced_under_load_is_seen_and_a_bad_one_keeps_the_last_valid(exported, tmp_path):
    import os

    kb = tmp_path / "kb.jsonl"
    shutil.copy(exported.export / "tasks" / "question_answer" / "knowledge_base.jsonl", kb)
    question = "新来的同事怎么申请数据平台的堡垒机账号"
    entry = json.dumps({"id": "bastion-account", "questions": [question],
                        "answer": "在OA提交堡垒机账号申请，主管审批后开通。"}, ensure_ascii=False) + "\n"
    original = kb.read_text("utf-8")

    def replace(text: str) -> None:  # as an editor or a deploy does: a new file renamed over the old
        tmp = tmp_path / "kb.new"
        tmp.write_text(text, "utf-8")
        tmp.replace(kb)

    def ids(s: Server) -> set[str]:
        r = httpx.post(f"{s.url}/v1/tasks/question_answer/predict", json={"inputs": question}, timeout=60)
        assert r.status_code == 200, r.text
        return {c["id"] for c in r.json()["candidates"]}

    with Server("--onnx", str(exported.export), "--kb", str(kb), log_path=tmp_path / "log") as s, \
            Load(s.url, clients=4) as load:
        first = ids(s)
        replace(original + entry)
        added = ids(s)
        replace(original + entry + "{not json\n")
        after_invalid = ids(s)
        kb.unlink()
        after_deleted = ids(s)
        kb.write_text(original + entry, "utf-8")
        tick = os.stat(kb).st_mtime_ns + 60 * 10**9  # a stamp not yet safely past, however slow the server reads
        os.utime(kb, ns=(tick, tick))
        ids(s)
        st = os.stat(kb)
        kb.write_text(original + entry.replace("bastion-account", "bastion-accounz"), "utf-8")  # same size
        os.utime(kb, ns=(st.st_atime_ns, st.st_mtime_ns))  # in the same timestamp tick
        same_tick = ids(s)
        wait_for(lambda: len(load.codes) >= 10)
    assert "bastion-account" not in first and "bastion-account" in added
    assert "bastion-account" in after_invalid, "an invalid file keeps the last valid version serving"
    assert "bastion-account" in after_deleted, "a deleted file keeps the last version read serving"
    assert "bastion-accounz" in same_tick and "bastion-account" not in same_tick
    assert load.errors == [] and set(load.codes) == {200}
    assert "not valid" in s.log() and "is gone" in s.log()


def test_json_logs_carry_request_id_and_latency(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--log-format", "json", log_path=tmp_path / "log") as s:
        r = httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[3]}, headers={"x-request-id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        wait_for(lambda: '"request_id": "abc-123"' in s.log())
        lines = [json.loads(line) for line in s.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("request_id") == "abc-123"]
    assert access and access[0]["status"] == 200 and access[0]["latency_ms"] > 0 and access[0]["routes"]


def test_a_folder_that_is_not_an_export_fails_before_serving(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "from lora_router.cli import run; run()", "serve", "--onnx",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not a lora-router export" in out.stderr


def test_a_hub_is_served_with_the_pytorch_router_for_development(exported, tmp_path):
    with Server("--hub", str(exported.hub.root), "--base-model", exported.base, log_path=tmp_path / "log") as s:
        answer = httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60).json()
        source = httpx.get(f"{s.url}/v1/tasks", timeout=10).json()["source"]
    assert answer["steps"][0]["task"] == "question_classifier" and answer["route"]
    assert source["kind"] == "hub"


def test_two_workers_share_one_port(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--workers", "2", log_path=tmp_path / "log") as s:
        wait_for(lambda: s.log().count("ready: onnx") == 2)  # each worker loads its own models
        codes = [httpx.post(f"{s.url}/v1/ask", json={"question": q}, timeout=60).status_code for q in SAMPLES * 3]
    assert set(codes) == {200}
    assert s.log().count("ready: onnx") == 2


def test_sighup_with_two_workers_reloads_each_in_place_and_loses_no_request(exported, tmp_path):
    from support.export import copy_export

    folder = copy_export(exported.export, tmp_path / "export")
    with Server("--onnx", str(folder), "--workers", "2", log_path=tmp_path / "log") as s:
        wait_for(lambda: s.log().count("ready: onnx") == 2)
        with Load(s.url, clients=4) as load:
            wait_for(lambda: len(load.codes) >= 20)
            s.signal(signal.SIGHUP)
            wait_for(lambda: s.log().count("reloaded onnx") == 2)
            (folder / "tokenizer.json").write_text("{}", "utf-8")  # every layout reads it
            seen = len(load.codes)
            s.signal(signal.SIGHUP)
            wait_for(lambda: s.log().count("reload refused") == 2)
            wait_for(lambda: len(load.codes) >= seen + 20)
        after = [httpx.post(f"{s.url}/v1/ask", json={"question": q}, timeout=60).status_code for q in SAMPLES * 2]
        log = s.log()
    assert load.errors == [] and set(load.codes) == {200}, (load.errors[:3], set(load.codes))
    assert set(after) == {200}, "the old models keep serving in every worker"
    assert log.count("ready: onnx") == 2, "no worker was replaced"


def test_a_key_given_in_clear_reaches_the_workers_through_a_private_file_never_their_environment(exported, tmp_path):
    psutil = pytest.importorskip("psutil")
    key = "k-" + "7" * 30
    s = Server("--onnx", str(exported.export), "--workers", "2", "--api-key", key, log_path=tmp_path / "log")
    try:
        s.wait_ready(headers={"authorization": f"Bearer {key}"})
        wait_for(lambda: s.log().count("ready: onnx") == 2)
        assert httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60).status_code == 401
        ok = httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60,
                        headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        workers = psutil.Process(s.proc.pid).children(recursive=True)
        assert workers, "uvicorn started worker processes"
        for process in [psutil.Process(s.proc.pid), *workers]:
            assert not any(key in value for value in process.environ().values()), process.cmdline()
    finally:
        s.stop()
    assert "visible to every user of this machine (ps)" in s.log()


def test_the_key_can_come_from_a_file_that_nothing_shows(exported, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n", "utf-8")
    s = Server("--onnx", str(exported.export), "--api-key-file", str(key_file), log_path=tmp_path / "log")
    try:
        s.wait_ready(headers={"authorization": "Bearer from-a-file"})
        asked = [httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60, headers=h).status_code
                 for h in ({}, {"authorization": "Bearer from-a-file"})]
    finally:
        s.stop()
    assert asked == [401, 200]
    assert "from-a-file" not in s.log() and "(ps)" not in s.log()


def test_capture_with_two_workers_keeps_every_answer_and_its_feedback_and_survives_its_store_deleted(
        exported, tmp_path):
    from lora_router.capture import CaptureStore

    store = tmp_path / "captures"
    questions = chain_questions(30)
    with Server("--onnx", str(exported.export), "--workers", "2", "--capture", str(store),
                log_path=tmp_path / "server.log") as s, s.client() as c:
        ids = []
        for i, q in enumerate(questions[:20]):
            r = c.post("/v1/ask", json={"question": q}, headers={"x-request-id": f"q-{i}"})
            assert r.status_code == 200 and r.json()["request_id"] == f"q-{i}"
            ids.append(f"q-{i}")
        batch = c.post("/v1/ask", json={"questions": questions[20:]}, headers={"x-request-id": "batch"}).json()
        ids += [a["request_id"] for a in batch]
        assert ids[20:] == [f"batch/{i}" for i in range(10)]
        # feedback may reach the other worker than the one that answered: readers merge the shards
        wait_for(lambda: set(ids) <= {r["id"] for r in CaptureStore(store).records(feedback=False)}, timeout=30)
        for i in range(0, 30, 3):
            r = c.post("/v1/feedback", json={"request_id": ids[i], "verdict": "down", "route": "general",
                                             "labels": {"question_classifier": "通用问题"}})
            assert r.status_code == 201, r.text
        assert c.post("/v1/feedback", json={"request_id": "q-0", "labels": {"question_classifier": "x"}}
                      ).status_code == 422
        records = {r["id"]: r for r in CaptureStore(store).records()}
        shutil.rmtree(store)  # deleted while serving: no request fails, capture starts again
        after = [c.post("/v1/ask", json={"question": q}, headers={"x-request-id": f"after-{i}"})
                 for i, q in enumerate(questions[:6])]
        assert [r.status_code for r in after] == [200] * 6
        wait_for(lambda: len(list(CaptureStore(store).records())) == 6, timeout=30)
    assert [records[i]["question"] for i in ids] == questions
    assert [len(records[i]["feedback"]) for i in ids] == [1 if n % 3 == 0 else 0 for n in range(30)]
    assert records["q-3"]["feedback"][0]["labels"] == {"question_classifier": "通用问题"}
    steps = records["q-0"]["answer"]["trace"]["steps"]
    assert {s["model"]["export"] for s in steps} == {exported.manifest["id"]}
