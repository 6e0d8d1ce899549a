"""The Ray Serve scenario of test_ray_serve.py, run inside a private network and PID namespace.

Ray's services listen on every interface, so test_ray_serve.py runs this
script under ``unshare --net --pid --fork --mount-proc`` with only loopback
up; the HTTP clients run here too, inside the same namespace. Each step is
bounded in count and time.

``lora-router serve --engine ray`` starts the cluster, with two replicas
and two exports (one per replica at a time), the default one shadowed by a
candidate (``--shadow``, a share of its questions); then:

1. ``answers``: questions over HTTP through Ray's proxy (the default export);
   ``shadow``: ``/metrics`` of a replica counts shadowed questions;
2. ``load``: 16 concurrent clients while one replica's process is killed;
3. ``multiplex``: requests naming export ``a``, ``b``, or none;
4. ``promote``: under 16 concurrent clients, a new version of export ``a`` is
   swapped into its folder and promoted with ``POST /admin/reload``, rolled
   back with ``POST /admin/rollback``, promoted again with SIGHUP to the
   server, and a candidate without parity figures is refused;
5. ``cleanup``: SIGTERM to the server, its exit code, the Ray processes still alive.

Every request bears the key (``--api-key-file``); ``keyless`` records what
one without it gets.

It prints one JSON summary on stdout (and writes it to ``--out``); the test
asserts on it. Answers are compared here with the ones the test computed
with ``OnnxRouter.ask`` (``--expected``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import httpx  # noqa: E402

from support.serve import same_answer  # noqa: E402

URL = "http://127.0.0.1:8000"
AUTH: dict = {}  # the key's header, set in main
REPLICA_TITLE = "ServeReplica:lora-router:LoraRouter"
RAY_PROCESSES = ("raylet", "gcs_server", "ServeReplica", "ServeController", "ProxyActor", "dashboard",
                 "log_monitor", "default_worker", "ray::")
CLIENTS = 16
LOAD_REQUESTS = 320  # at least; more while the killed replica is being replaced
RETRY_STATUSES = {503}
MAX_TRIES = 60
SHADOW_SHARE = 0.2  # enough for the counts to show soon, little work added to the other phases
SHADOW_ROUNDS = 20


def processes(*needles: str) -> list[dict]:
    """Processes (in this PID namespace) whose command line holds one of ``needles``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if cmd and state != "Z" and any(n in cmd for n in needles):
            out.append({"pid": int(entry.name), "cmd": cmd[:160]})
    return out


def replica_pids() -> list[int]:
    return sorted(p["pid"] for p in processes(REPLICA_TITLE))


def running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get("lora-router")
    if app is None:
        return 0
    return app.deployments["LoraRouter"].replica_states.get("RUNNING", 0)


def wait_for(condition, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


async def post(http: httpx.AsyncClient, path: str, body: dict, headers: dict | None = None) -> tuple:
    """(response, retries): a connection error or a 503 is retried, anything else is returned."""
    retries = 0
    while True:
        try:
            r = await http.post(path, json=body, headers=headers)
            if r.status_code not in RETRY_STATUSES or retries >= MAX_TRIES:
                return r, retries
        except httpx.TransportError:
            if retries >= MAX_TRIES:
                raise
        retries += 1
        await asyncio.sleep(0.2)


def scenario_answers(questions: list[str], expected: dict) -> dict:
    got = []
    with httpx.Client(base_url=URL, timeout=60, headers=AUTH) as http:
        for q in questions:
            r = http.post("/v1/ask", json={"question": q})
            got.append(r.json() if r.status_code == 200 else {"status": r.status_code, "body": r.text[:300]})
        batch = http.post("/v1/ask", json={"questions": questions})
    return {"questions": len(questions), "replicas_running": running_replicas(), "replica_pids": replica_pids(),
            "equal": sum(same_answer(a, e) for a, e in zip(got, expected["a"])),
            "batch_equal": batch.status_code == 200 and same_answer(batch.json(), expected["a"]),
            "first_mismatch": next(({"got": a, "expected": e} for a, e in zip(got, expected["a"])
                                    if not same_answer(a, e)), None)}


def shadowed(metrics_text: str) -> dict[str, float]:
    """A replica's shadowed questions by result (agree / disagree), from its ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "lora_router_shadow_questions_total":
                out[sample.labels["result"]] = out.get(sample.labels["result"], 0) + sample.value
    return out


def scenario_shadow(questions: list[str], deadline_s: float = 60) -> dict:
    """Ask the default export until the ``/metrics`` of the replica that answers counts shadowed questions.

    Each replica counts its own shadow, and a request for ``/metrics`` reaches either one: a round asks the
    questions again (a share of them is shadowed) and reads ``/metrics`` once more, bounded in rounds and time.
    """
    t_end = time.monotonic() + deadline_s
    out: dict = {"rounds": 0, "counted": {}, "metrics_status": None}
    with httpx.Client(base_url=URL, timeout=60, headers=AUTH) as http:
        while out["rounds"] < SHADOW_ROUNDS and time.monotonic() < t_end:
            out["rounds"] += 1
            r = http.get("/metrics")
            out["metrics_status"] = r.status_code
            if r.status_code == 200:
                out["counted"] = shadowed(r.text)
                if sum(out["counted"].values()) > 0:
                    break
            http.post("/v1/ask", json={"questions": questions})
    return out


async def _load(questions: list[str], expected: list, kill_after: int, deadline_s: float) -> dict:
    done = 0
    failed: list[dict] = []
    mismatches = 0
    retried_requests = 0
    retries = 0
    stop = asyncio.Event()
    killed: dict = {}
    replaced = asyncio.Event()
    counter = iter(range(10**9))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done, mismatches, retried_requests, retries
        while not stop.is_set():
            i = next(counter)
            q = i % len(questions)
            try:
                r, n = await post(http, "/v1/ask", {"question": questions[q]})
            except httpx.TransportError as exc:
                failed.append({"error": repr(exc)})
                continue
            retries += n
            retried_requests += n > 0
            if r.status_code != 200:
                failed.append({"status": r.status_code, "body": r.text[:300]})
            elif not same_answer(r.json(), expected[q]):
                mismatches += 1
            done += 1

    async def conductor() -> None:
        while done < kill_after:
            await asyncio.sleep(0.05)
        pids = replica_pids()
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        killed.update(pid=victim, at_request=done, replicas_before=pids)
        t0 = time.monotonic()
        while True:
            now = replica_pids()
            if victim not in now and len(now) == 2 and await asyncio.to_thread(running_replicas) == 2:
                killed.update(replaced_in_s=round(time.monotonic() - t0, 2), replicas_after=now,
                              requests_at_replacement=done)
                replaced.set()
                return
            await asyncio.sleep(0.25)

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=URL, timeout=60, limits=limits, headers=AUTH) as http:
        t0 = time.monotonic()
        workers = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        watcher = asyncio.create_task(conductor())
        while time.monotonic() - t0 < deadline_s:
            if replaced.is_set() and done >= max(LOAD_REQUESTS, killed["requests_at_replacement"] + 2 * CLIENTS):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*workers)
        watcher.cancel()
        wall = time.monotonic() - t0
    return {"clients": CLIENTS, "requests": done + len([f for f in failed if "error" in f]), "answered": done,
            "failed": len(failed), "failures": failed[:5], "mismatches": mismatches,
            "retried_requests": retried_requests, "retries": retries, "killed": killed,
            "replaced": replaced.is_set(), "seconds": round(wall, 1)}


def scenario_multiplex(questions: list[str], expected: dict) -> dict:
    out: dict = {"equal": {"a": 0, "b": 0, "default": 0}, "asked": {"a": 0, "b": 0, "default": 0}}
    with httpx.Client(base_url=URL, timeout=60, headers=AUTH) as http:
        for _ in range(2):
            for i, q in enumerate(questions):
                for name in ("a", "b", "default"):
                    headers = {} if name == "default" else {"serve_multiplexed_model_id": name}
                    r = http.post("/v1/ask", json={"question": q}, headers=headers)
                    want = expected["a" if name == "default" else name][i]
                    out["asked"][name] += 1
                    out["equal"][name] += r.status_code == 200 and same_answer(r.json(), want)
        out["thresholds"] = {name: http.get("/v1/tasks", headers={"serve_multiplexed_model_id": name}).json()
                             .get("thresholds") for name in ("a", "b")}
        out["hyphen_header"] = http.get("/v1/tasks", headers={"serve-multiplexed-model-id": "b"}).json().get(
            "thresholds")
        unknown = http.post("/v1/ask", json={"question": questions[0]}, headers={"serve_multiplexed_model_id": "zz"})
        out["unknown"] = {"status": unknown.status_code, **unknown.json()}
        path = http.post("/v1/ask", json={"question": questions[0]},
                         headers={"serve_multiplexed_model_id": "../a"})
        out["path_id"] = {"status": path.status_code, **path.json()}
    return out


def without_trace(answer: dict) -> dict:
    """An answer but for its trace, which names the version that gave it."""
    return {k: v for k, v in answer.items() if k != "trace"}


def put_in(template: str, served: str, tag: str) -> None:
    """A copy of the export ``template`` swapped into ``served`` as ``lora-router export --out`` does."""
    from lora_router.export.previous import swap_in

    copy = Path(served).parent / f".candidate-{tag}"
    shutil.copytree(template, copy)
    swap_in(copy, Path(served))


async def _promote(args, server: subprocess.Popen, log_path: Path, questions: list[str], expected: list,
                   deadline_s: float) -> dict:
    """Promote, roll back, promote by SIGHUP and refuse a candidate, all under ``CLIENTS`` clients."""
    answers: list[dict] = []
    events: dict = {"replicas_before": replica_pids()}
    stop = asyncio.Event()
    counter = iter(range(10**9))
    t_end = time.monotonic() + deadline_s

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set() and time.monotonic() < t_end:
            q = next(counter) % len(questions)
            record: dict = {"t0": time.monotonic()}
            try:
                r, record["retries"] = await post(http, "/v1/ask", {"question": questions[q]})
            except httpx.TransportError as exc:
                answers.append({**record, "error": repr(exc)})
                continue
            record["status"] = r.status_code
            if r.status_code == 200:
                body = r.json()
                record["versions"] = sorted({step["model"]["version"] for step in body["trace"]["steps"]})
                record["equal"] = same_answer(without_trace(body), without_trace(expected[q]))
            else:
                record["body"] = r.text[:300]
            answers.append(record)

    async def more(n: int) -> None:
        target = len(answers) + n
        while len(answers) < target and time.monotonic() < t_end:
            await asyncio.sleep(0.05)

    async def admin(http: httpx.AsyncClient, name: str, path: str) -> None:
        t0 = time.monotonic()
        r = await http.post(path, timeout=300)
        events[name] = {"sent": t0, "done": time.monotonic(), "status": r.status_code, "body": r.json()}

    async def conductor(http: httpx.AsyncClient) -> None:
        await more(2 * CLIENTS)
        await asyncio.to_thread(put_in, args.candidate_a, args.served_a, "v2")
        await admin(http, "reload", "/admin/reload")
        await more(2 * CLIENTS)
        await admin(http, "rollback", "/admin/rollback")
        await more(2 * CLIENTS)
        await asyncio.to_thread(put_in, args.candidate_a, args.served_a, "v2-again")
        promoted_before = log_path.read_bytes().count(b"reloaded export")
        t0 = time.monotonic()
        server.send_signal(signal.SIGHUP)
        while log_path.read_bytes().count(b"reloaded export") == promoted_before and time.monotonic() < t_end:
            await asyncio.sleep(0.1)
        events["sighup"] = {"sent": t0, "done": time.monotonic(),
                            "logged": log_path.read_bytes().count(b"reloaded export") > promoted_before}
        await more(2 * CLIENTS)
        await asyncio.to_thread(put_in, args.unchecked_a, args.served_a, "unchecked")
        await admin(http, "refused", "/admin/reload")
        await more(2 * CLIENTS)
        events["replicas_after"] = replica_pids()
        stop.set()

    limits = httpx.Limits(max_connections=CLIENTS + 1, max_keepalive_connections=CLIENTS + 1)
    async with httpx.AsyncClient(base_url=URL, timeout=60, limits=limits, headers=AUTH) as http:
        t0 = time.monotonic()
        workers = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        try:
            await asyncio.wait_for(conductor(http), deadline_s)
        finally:
            stop.set()
            await asyncio.gather(*workers)
    for record in answers:
        record["t0"] -= t0
    for event in events.values():
        if isinstance(event, dict) and "sent" in event:
            event["sent"] = round(event["sent"] - t0, 2)
            event["done"] = round(event["done"] - t0, 2)
    return {"clients": CLIENTS, "answers": answers, "events": events, "seconds": round(time.monotonic() - t0, 1)}


def scenario_keyless() -> dict:
    with httpx.Client(base_url=URL, timeout=60) as http:
        ask = http.post("/v1/ask", json={"question": "数据清洗流程是什么？"})
        reload = http.post("/admin/reload")
    return {"ask": ask.status_code, "reload": reload.status_code}


def logged(temp_dir: str, text: str) -> int:
    """How many times the cluster's processes logged ``text`` (stderr files: each line once)."""
    logs = {log.resolve() for log in Path(temp_dir).glob("ray/session_*/logs/*.err")}  # session_latest is a link
    return sum(log.read_text(errors="replace").count(text) for log in logs)


def start_server(args, log) -> subprocess.Popen:
    """``lora-router serve --engine ray`` with two replicas and two exports, one export per replica at a time;
    the default export (``a``) shadowed by ``--shadow-a``."""
    command = [sys.executable, "-c", "from lora_router.cli import run; run()", "serve", "--engine", "ray",
               "--export", f"a={args.served_a}", "--export", f"b={args.export_b}", "--default-export", "a",
               "--api-key-file", args.key_file,
               "--shadow", args.shadow_a, "--shadow-share", str(SHADOW_SHARE),
               "--replicas", "2", "--max-exports-per-replica", "1", "--precision", "fp32", "--port", "8000"]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ,
                            "RAY_TMPDIR": args.temp_dir})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--served-a", required=True, help="export a's folder: versions are swapped in here")
    parser.add_argument("--candidate-a", required=True, help="a new version of export a, to promote")
    parser.add_argument("--unchecked-a", required=True, help="a version of export a without parity figures")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--export-b", required=True)
    parser.add_argument("--shadow-a", required=True, help="a copy of export a, the candidate shadowing it")
    parser.add_argument("--expected", required=True, help="JSON: questions, and answers of a and b")
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline-s", type=float, default=150)
    args = parser.parse_args()
    data = json.loads(Path(args.expected).read_text("utf-8"))
    questions = data["questions"]
    AUTH["authorization"] = "Bearer " + Path(args.key_file).read_text("utf-8").strip()
    summary: dict = {"namespace": {"pid": os.getpid(), "interfaces": sorted(n for _, n in socket.if_nameindex())}}
    t_all = time.monotonic()
    # Every wait in this script is bounded; this bounds the whole run on top.
    threading.Timer(args.deadline_s + 300, lambda: os._exit(3)).start()
    log_path = Path(args.temp_dir) / "server.log"
    log = open(log_path, "wb")
    server = start_server(args, log)
    try:
        up = wait_for(lambda: b"serving on" in log_path.read_bytes() or server.poll() is not None, 180)
        if not up or server.poll() is not None:
            raise RuntimeError(f"the server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        summary["deploy_s"] = round(time.monotonic() - t_all, 1)
        import ray

        os.environ["RAY_TMPDIR"] = args.temp_dir
        ray.init(address="auto", log_to_driver=False, logging_level="warning")  # to read serve.status()
        summary["answers"] = scenario_answers(questions, data["expected"])
        summary["shadow"] = {**scenario_shadow(questions),
                             "announced": b"shadowing the default export" in log_path.read_bytes()}
        summary["load"] = asyncio.run(_load(questions, data["expected"]["a"], kill_after=3 * CLIENTS,
                                            deadline_s=args.deadline_s))
        summary["load"]["replayed_by_proxy"] = logged(args.temp_dir, "stopped before answering")
        summary["multiplex"] = scenario_multiplex(questions[:6], data["expected"])
        summary["multiplex"]["evictions"] = logged(args.temp_dir, "stopped on this replica")
        summary["keyless"] = scenario_keyless()
        summary["promote"] = asyncio.run(_promote(args, server, log_path, questions, data["expected"]["a"],
                                                  deadline_s=args.deadline_s))
        ray.shutdown()
    except Exception as exc:  # noqa: BLE001 - reported in the summary, the test fails on it
        import traceback

        summary["error"] = traceback.format_exc()[-3000:]
        print(f"scenario failed: {exc!r}", file=sys.stderr)
    finally:
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(90)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 90 s"
        wait_for(lambda: not processes(*RAY_PROCESSES), 30)
        log.close()
        summary["cleanup"] = {"server_exit": code, "seconds": round(time.monotonic() - t0, 1),
                              "left": processes(*RAY_PROCESSES),
                              "server_log_tail": log_path.read_text(errors="replace")[-1500:]}
        summary["total_s"] = round(time.monotonic() - t_all, 1)
        text = json.dumps(summary, ensure_ascii=False)
        Path(args.out).write_text(text, "utf-8")
        print(text, flush=True)
    os._exit(0)  # the timer thread must not hold the exit


if __name__ == "__main__":
    sys.exit(main())
