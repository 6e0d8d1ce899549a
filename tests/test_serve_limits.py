"""``lora-router serve`` against clients that are slow, large, hostile or gone: a real server on 127.0.0.1.

Each test is a row of issue 16's table: what was sent, and what the service
must answer. Every loop is bounded in count and time, every wait polls with
a deadline, and every server is stopped by its test.
"""

from __future__ import annotations

import json
import re
import socket
import threading

import httpx
import pytest

from support.serve import SAMPLES, Server, wait_for

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def guarded(exported, tmp_path_factory):
    """One server for the tests of head limits, media types and hosts (each needs only its own flag)."""
    with Server("--onnx", str(exported.export), "--header-timeout", "1", "--allowed-host", "127.0.0.1",
                "--allowed-host", "*.example.com", log_path=tmp_path_factory.mktemp("guarded") / "log") as s:
        yield s


def _metric(url: str, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _head(path: str, body: bytes = b"", content_type: str = "application/json", extra: str = "",
          length: int | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n{extra}\r\n").encode()


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def _read_reply(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body), or what came before the peer closed."""
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            match = re.search(rb"content-length: *(\d+)", head, re.I)
            if match and len(rest) >= int(match.group(1)):
                return data
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:  # closed with our unread bytes still coming: what came before is the reply
            return data
        if not chunk:
            return data
        data += chunk


def test_clients_that_leave_at_once_have_their_work_dropped_and_counted(exported, tmp_path):
    # One row per forward pass, so that 640 questions are a lot of passes and leaving early saves most.
    with Server("--onnx", str(exported.export), "--max-batch-requests", "1", log_path=tmp_path / "log") as s:
        body = json.dumps({"questions": [f"{SAMPLES[i % 6]} {i}" for i in range(64)]}).encode()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
                sock.sendall(_head("/v1/ask", body) + body)
        wait_for(lambda: _metric(s.url, "lora_router_requests_total", status="499") == 10, timeout=60)
        wait_for(lambda: _metric(s.url, "lora_router_requests_in_flight") == 0, timeout=60)
        computed = _metric(s.url, "lora_router_batch_size_count")
        assert httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60).status_code == 200
    # Every question has at least one step: answering them all would take 640 passes or more.
    assert computed < 320, f"{computed:.0f} forward passes for questions nobody waited for"
    assert "Traceback" not in s.log()


def test_a_request_past_its_deadline_gets_504_with_its_request_id_and_its_work_stops(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--request-timeout", "0.001", "--max-batch-requests", "1",
                log_path=tmp_path / "log") as s:
        questions = [SAMPLES[i % 6] * 20 for i in range(64)]  # far more than a millisecond of work
        r = httpx.post(f"{s.url}/v1/ask", json={"questions": questions}, headers={"x-request-id": "late-1"},
                       timeout=60)
        assert r.status_code == 504, r.text
        assert r.json()["request_id"] == "late-1" == r.headers["x-request-id"]
        assert r.json()["error_type"] == "timeout" and "--request-timeout" in r.json()["error"]
        wait_for(lambda: _metric(s.url, "lora_router_abandoned_requests_total", reason="timeout") == 1)
        assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200
    assert "Traceback" not in s.log()


def test_the_queue_is_bounded_by_questions_and_its_429_says_when_to_retry(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--max-queued-questions", "64", "--max-batch-requests", "1",
                log_path=tmp_path / "log") as s:
        body = {"questions": [SAMPLES[i % 6] for i in range(64)]}
        replies: list[httpx.Response] = []

        def ask(start: threading.Barrier) -> None:
            start.wait(30)
            replies.append(httpx.post(f"{s.url}/v1/ask", json=body, timeout=120))

        for _ in range(5):  # bounded: 8 requests of a full queue at once overlap in the first round or so
            start = threading.Barrier(8)
            threads = [threading.Thread(target=ask, args=(start,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if any(r.status_code == 429 for r in replies):
                break
    codes = [r.status_code for r in replies]
    assert set(codes) == {200, 429}, codes
    refused = next(r for r in replies if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error_type"] == "overloaded" and "--max-queued-questions" in refused.json()["error"]


def test_a_head_too_large_is_431_and_one_too_slow_is_408(guarded):
    s = guarded
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(20_000)) + b"\r\n"
    for head in (big, many):
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            try:
                sock.sendall(head)
            except ConnectionError:  # the server may close before taking it all; its answer came first
                pass
            reply = _read_reply(sock)
        assert _status(reply) == 431, reply[:200]
        assert b"--max-header-bytes" in reply
    trickling = [socket.create_connection(("127.0.0.1", s.port), timeout=20) for _ in range(50)]
    try:
        for sock in trickling:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200, "others are served meanwhile"
        replies = [_read_reply(sock) for sock in trickling]
    finally:
        for sock in trickling:
            sock.close()
    assert {_status(r) for r in replies} == {408}
    assert httpx.get(f"{s.url}/health", timeout=10, headers={"x-big": "a" * 8000}).status_code == 200


def test_stalled_bodies_stop_counting_against_the_limit_and_time_out(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--max-concurrent-requests", "16", "--body-timeout", "3",
                log_path=tmp_path / "log") as s:
        body = json.dumps({"question": SAMPLES[0]}).encode()
        stalled = [socket.create_connection(("127.0.0.1", s.port), timeout=20) for _ in range(16)]
        try:
            for sock in stalled:
                sock.sendall(_head("/v1/ask", body) + body[:5])
            wait_for(lambda: _metric(s.url, "lora_router_requests_in_flight") == 0, timeout=20)
            ok = httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[1]}, timeout=60)
            replies = [_read_reply(sock) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()
    assert ok.status_code == 200
    assert {_status(r) for r in replies} == {408} and b"--body-timeout" in replies[0]


def test_more_requests_than_allowed_get_429_while_bodies_keep_coming(exported, tmp_path):
    with Server("--onnx", str(exported.export), "--max-concurrent-requests", "2", log_path=tmp_path / "log") as s:
        body = json.dumps({"question": SAMPLES[0]}).encode()
        done = threading.Event()
        held = [socket.create_connection(("127.0.0.1", s.port), timeout=30) for _ in range(2)]

        def trickle(sock: socket.socket) -> None:  # a byte every 0.2 s: slow, but moving, so it counts
            sock.sendall(_head("/v1/ask", body))
            for byte in body[:-1]:
                if done.wait(0.2):
                    return
                sock.sendall(bytes([byte]))

        threads = [threading.Thread(target=trickle, args=(sock,), daemon=True) for sock in held]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: _metric(s.url, "lora_router_requests_in_flight") == 2, timeout=20)
            refused = httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[1]}, timeout=10)
            assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200, "probes are never refused"
        finally:
            done.set()
            for t in threads:
                t.join(10)
            for sock in held:
                sock.close()
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["error_type"] == "overloaded"
        wait_for(lambda: _metric(s.url, "lora_router_requests_in_flight") == 0, timeout=20)
        assert httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[1]}, timeout=10).status_code == 200


def test_a_body_is_never_read_where_none_is_taken_nor_without_the_key(exported, tmp_path):
    s = Server("--onnx", str(exported.export), log_path=tmp_path / "log", env={"LORA_ROUTER_API_KEY": "s3cret"})
    try:
        s.wait_ready(headers={"authorization": "Bearer s3cret"})
        # Each head announces 1 MiB that is never sent: an answer proves the server did not wait to read it.
        for head in (_head("/health", length=1 << 20), _head("/v1/ask", length=1 << 20),
                     b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                     b"Content-Length: 1048576\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
                sock.sendall(head)
                reply = _read_reply(sock)
            assert _status(reply) in (400, 401, 405), reply[:200]
            assert b"connection: close" in reply.lower()
    finally:
        s.stop()


def test_a_post_that_is_not_json_is_415(guarded):
    s = guarded
    body = json.dumps({"question": SAMPLES[0]})
    codes = {kind: httpx.post(f"{s.url}/v1/ask", content=body, headers={"content-type": kind}, timeout=60)
             for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                          "application/json; charset=utf-8")}
    bare = httpx.post(f"{s.url}/v1/ask", content=body, timeout=60)
    assert {k: r.status_code for k, r in codes.items()} == {
    "text/plain": 415, "application/x-www-form-urlencoded": 415, "multipart/form-data": 415,
    "application/json; charset=utf-8": 200}
    assert bare.status_code == 415 and "application/json" in bare.json()["error"]
    assert codes["text/plain"].json()["error_type"] == "unsupported_media_type"


def test_allowed_host_answers_only_the_names_given(guarded):
    s = guarded
    codes = {host: httpx.get(f"{s.url}/v1/tasks", headers={"host": host}, timeout=10).status_code
             for host in ("127.0.0.1", f"127.0.0.1:{s.port}", "api.example.com", "example.com.evil.net",
                          "evil.net")}
    refused = httpx.get(f"{s.url}/v1/tasks", headers={"host": "evil.net"}, timeout=10).json()
    assert codes == {"127.0.0.1": 200, f"127.0.0.1:{s.port}": 200, "api.example.com": 200,
                 "example.com.evil.net": 400, "evil.net": 400}
    assert "--allowed-host" in refused["error"]


def test_a_short_soak_reports_good_traffic_with_and_without_bad_and_the_servers_resources(exported, tmp_path):
    from lora_router.bench.soak import parse_duration, run_soak

    assert parse_duration("10m") == 600 and parse_duration("30s") == 30 and parse_duration("2") == 2
    results = run_soak(tmp_path / "soak", duration_s=8, export_dir=exported.export, clients=4, bad_clients=1,
                       progress=False)
    clean, mixed = results["clean"], results["mixed"]
    assert clean["good"]["requests"] > 0 and mixed["good"]["requests"] > 0
    assert clean["good_errors"] == {} and mixed["good_errors"] == {}, "good requests never fail"
    assert mixed["bad_sent"] >= 6 and clean["bad_sent"] == 0, "every bad kind was sent in the second half"
    expected = {"lone_surrogate": {"422"}, "abandoned": {"left"}, "not_json": {"415"}, "stalled_body": {"left_stalled"},
                "huge_header": {"431"}, "keyless_body_to_health": {"405"}}
    assert {kind: set(answers) for kind, answers in mixed["bad_answers"].items()} == expected
    server = results["server"]
    assert server["start"]["rss_mb"] > 0 and server["end"]["fds"] > 0
    assert "with bad traffic" in (tmp_path / "soak" / "results.md").read_text("utf-8")
