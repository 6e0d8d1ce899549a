"""The service with capture on: every answer names its request and is kept; POST /v1/feedback; a store that
fails costs no request. In process (no model runs: a canned predictor); the real server is in test_serve.py."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from lora_router.capture import CaptureStore  # noqa: E402
from lora_router.serving.app import create_app  # noqa: E402
from lora_router.serving.settings import ServeSettings  # noqa: E402
from support.canned import CHAT_Q, KB_Q, TASK_Q, CannedPredictor  # noqa: E402


def service_client(folder, **settings) -> TestClient:
    settings = ServeSettings(capture=str(folder), **settings)
    return TestClient(create_app(predictor=CannedPredictor(), settings=settings, handle_sighup=False))


def captured(client: TestClient) -> None:
    """Wait until the service has written what it answered."""
    assert client.app.state.service.capture.drain(10)


def metric(client: TestClient, line_start: str) -> float:
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(line_start)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_each_answer_names_its_request_and_is_captured_with_its_trace(tmp_path):
    with service_client(tmp_path) as client:
        one = client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-1"}).json()
        many = client.post("/v1/ask", json={"questions": [KB_Q, CHAT_Q]}, headers={"x-request-id": "req-2"}).json()
        unnamed = client.post("/v1/ask", json={"question": CHAT_Q}).json()
        captured(client)
        assert metric(client, "lora_router_captured_total") == 4
    assert one["request_id"] == one["trace"]["request_id"] == "req-1"
    assert [a["request_id"] for a in many] == ["req-2/0", "req-2/1"]
    assert unnamed["request_id"]  # the id the service made for the request
    assert [s["task"] for s in one["trace"]["steps"]] == [s["task"] for s in one["steps"]]
    records = {r["id"]: r for r in CaptureStore(tmp_path).records()}
    assert set(records) == {"req-1", "req-2/0", "req-2/1", unnamed["request_id"]}
    assert records["req-1"]["answer"] == one and records["req-1"]["question"] == TASK_Q
    assert records["req-2/1"]["answer"]["route"] == "general"


def test_feedback_is_stored_beside_the_answer_it_names(tmp_path):
    with service_client(tmp_path) as client:
        client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-1"})
        r = client.post("/v1/feedback", json={"request_id": "req-1", "verdict": "down", "route": "task",
                                              "labels": {"question_type_classifier": "任务处理"},
                                              "file_names": ["sales_2024.csv"], "comment": "文件名对了"})
        assert r.status_code == 201, r.text
        assert client.post("/v1/feedback", json={"request_id": "req-1", "verdict": "up"}).status_code == 201
        assert metric(client, 'lora_router_feedback_total{verdict="down"}') == 1
    feedback = CaptureStore(tmp_path).find("req-1")["feedback"]
    assert [f["verdict"] for f in feedback] == ["down", "up"]
    assert feedback[0] == r.json()["feedback"]
    assert feedback[0]["labels"] == {"question_type_classifier": "任务处理"} and feedback[0]["comment"] == "文件名对了"


def test_feedback_on_no_captured_answer_is_404_and_feedback_that_does_not_fit_is_422(tmp_path):
    with service_client(tmp_path) as client:
        client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-1"})
        unknown = client.post("/v1/feedback", json={"request_id": "never-asked", "verdict": "up"})
        assert (unknown.status_code, unknown.json()["error_type"]) == (404, "not_found")
        label = client.post("/v1/feedback", json={"request_id": "req-1",
                                                  "labels": {"question_classifier": "天气"}})
        assert label.status_code == 422 and "not a label of question_classifier" in label.json()["error"]
        task = client.post("/v1/feedback", json={"request_id": "req-1", "labels": {"question_clasifier": "通用问题"}})
        assert task.status_code == 422 and "question_clasifier" in task.json()["error"]
        name = client.post("/v1/feedback", json={"request_id": "req-1", "file_names": ["orders.csv"]})
        assert name.status_code == 422 and "not written in the question" in name.json()["error"]
        typo = client.post("/v1/feedback", json={"request_id": "req-1", "verdit": "up"})
        assert typo.status_code == 422 and "verdit" in typo.json()["error"]
        verdict = client.post("/v1/feedback", json={"request_id": "req-1", "verdict": "meh"})
        assert verdict.status_code == 422
    assert CaptureStore(tmp_path).find("req-1")["feedback"] == []


def test_without_capture_feedback_says_how_to_turn_it_on():
    app = create_app(predictor=CannedPredictor(), settings=ServeSettings(), handle_sighup=False)
    with TestClient(app) as client:
        answer = client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-1"}).json()
        r = client.post("/v1/feedback", json={"request_id": "req-1", "verdict": "up"})
    assert answer["request_id"] == "req-1"
    assert r.status_code == 404 and "--capture" in r.json()["error"]


def test_a_store_that_cannot_be_written_costs_no_request(tmp_path):
    blocked = tmp_path / "store"
    blocked.write_text("a file where the capture folder should be")
    with service_client(blocked) as client:
        answers = [client.post("/v1/ask", json={"question": q}) for q in (TASK_Q, KB_Q, CHAT_Q) * 3]
        captured(client)
        assert [r.status_code for r in answers] == [200] * 9
        assert metric(client, 'lora_router_capture_dropped_total{reason="error"}') == 9
        r = client.post("/v1/feedback", json={"request_id": answers[0].json()["request_id"], "verdict": "up"})
        assert r.status_code == 404  # nothing was captured, so there is nothing to give feedback on


def test_a_store_deleted_while_serving_costs_no_request_and_capture_resumes(tmp_path):
    folder = tmp_path / "store"
    with service_client(folder) as client:
        assert client.post("/v1/ask", json={"question": TASK_Q}).status_code == 200
        captured(client)
        shutil.rmtree(folder)
        after = client.post("/v1/ask", json={"question": KB_Q}, headers={"x-request-id": "after"})
        assert after.status_code == 200
        captured(client)
        assert client.post("/v1/feedback", json={"request_id": "after", "no_entry": True}).status_code == 201
    assert [r["id"] for r in CaptureStore(folder).records()] == ["after"]


def test_a_full_store_drops_its_oldest_answers_and_metrics_count_them(tmp_path):
    with service_client(tmp_path, capture_max_mb=0.02) as client:  # 20 KiB: a few dozen answers
        ids = [f"req-{i}" for i in range(120)]
        for request_id in ids:
            r = client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": request_id})
            assert r.status_code == 200
        captured(client)
        dropped = metric(client, 'lora_router_capture_dropped_total{reason="oldest"}')
        writer = client.app.state.service.capture
    kept = [r["id"] for r in CaptureStore(tmp_path).records()]
    assert kept == ids[-len(kept):] and dropped == 120 - len(kept) > 0
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.jsonl")) <= writer.max_bytes


def test_feedback_that_cannot_be_saved_is_503_and_the_answers_go_on(tmp_path):
    with service_client(tmp_path) as client:
        client.post("/v1/ask", json={"question": TASK_Q}, headers={"x-request-id": "req-1"})
        captured(client)
        (tmp_path / "feedback").write_text("a file where the feedback folder should be")
        r = client.post("/v1/feedback", json={"request_id": "req-1", "verdict": "up"})
        assert (r.status_code, r.json()["error_type"]) == (503, "unavailable")
        assert client.post("/v1/ask", json={"question": KB_Q}).status_code == 200


def test_feedback_right_after_the_answer_finds_it(tmp_path):
    with service_client(tmp_path) as client:
        for i in range(20):  # no drain between: the answer may still be queued when its feedback comes
            client.post("/v1/ask", json={"question": KB_Q}, headers={"x-request-id": f"r{i}"})
            assert client.post("/v1/feedback", json={"request_id": f"r{i}", "verdict": "up"}).status_code == 201
    assert len(CaptureStore(tmp_path).feedback()) == 20


def test_the_python_client_gives_feedback_and_raises_the_library_errors(tmp_path):
    import httpx

    from lora_router.client import Client, InvalidInputError, ServiceError

    with service_client(tmp_path) as http:
        def in_process(request: httpx.Request) -> httpx.Response:  # the client's requests, to the app in process
            r = http.request(request.method, request.url.path, content=request.content, headers=request.headers)
            return httpx.Response(r.status_code, headers=r.headers, content=r.content)

        router = Client("http://testserver", transport=httpx.MockTransport(in_process))
        answer = router.ask(TASK_Q)
        line = router.feedback(answer["request_id"], verdict="down", file_names=["sales_2024.csv"], comment="对")
        with pytest.raises(InvalidInputError, match="not a label of question_classifier"):
            router.feedback(answer["request_id"], labels={"question_classifier": "天气"})
        with pytest.raises(ServiceError) as unknown:
            router.feedback("never-asked", verdict="up")
    assert unknown.value.status == 404
    assert (line["verdict"], line["file_names"], line["comment"]) == ("down", ["sales_2024.csv"], "对")
    assert CaptureStore(tmp_path).find(answer["request_id"])["feedback"] == [line]
