"""Soak benchmark of ``lora-router serve``: good clients alone, then with hostile and abandoned traffic beside them.

``lora-router bench --serve --soak 10m`` runs a real server on 127.0.0.1 for
the duration: the first half only good clients ask (``POST /v1/ask``, one
question each, back to back), the second half the same good clients ask
while bad clients send a tenth of all requests: questions the tokenizer
refuses (a lone surrogate), 64 questions whose client leaves at once, a
``text/plain`` body, a body that stalls and is dropped, a 32 KiB header, a
keyless 1 MiB body to ``/health``. It reports the good requests' throughput
and p99 in each half (and their ratio), what each bad kind was answered, and
the server's RSS and open file descriptors at the start and the end.

Not in CI: it runs for minutes. A test runs it for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from .serve import free_port, serving, warm_up
from .timing import summary

logger = logging.getLogger(__name__)

BAD_SHARE = 0.10
BAD_KINDS = ("lone_surrogate", "abandoned", "not_json", "stalled_body", "huge_header", "keyless_body_to_health")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``1h`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def run_soak(out_dir: str | Path, *, duration_s: float, size: str = "tiny", export_dir: str | Path | None = None,
             clients: int = 16, bad_clients: int = 4, progress: bool = True) -> dict:
    """Serve an export (a random ``size`` model when not given) for ``duration_s``; write and return the results."""
    from .environment import machine
    from .fixture import bundled_questions, fixture_export, write_bench_chain
    from .report import write_results

    work = Path(tempfile.mkdtemp(prefix="lora-router-soak-"))
    export_dir = Path(export_dir) if export_dir else fixture_export(work, size, progress=progress)
    chain_file = write_bench_chain(export_dir, work / "chain.json")
    questions = bundled_questions()
    port = free_port()
    with serving(export_dir, chain_file, port, work / "server.log") as url:
        pid = _server_pid(port)
        warm_up(url, questions)
        start = _resources(pid)
        clean = asyncio.run(_phase(url, port, questions, duration_s / 2, clients, 0))
        mixed = asyncio.run(_phase(url, port, questions, duration_s / 2, clients, bad_clients))
        end = _settled(pid, start)
    results = {"kind": "soak", "size": size, "export": str(export_dir), "duration_s": duration_s,
               "good_clients": clients, "bad_clients": bad_clients, "bad_share_target": BAD_SHARE,
               "clean": clean, "mixed": mixed, "server": {"start": start, "end": end},
               "environment": machine(), "load_average": os.getloadavg()}
    results["ratios"] = {
        "good_throughput_mixed_vs_clean": round(mixed["good"]["requests_per_s"] / clean["good"]["requests_per_s"], 3),
        "good_p99_mixed_vs_clean": round(mixed["good"]["p99_ms"] / clean["good"]["p99_ms"], 3),
        "bad_share": round(mixed["bad_sent"] / max(1, mixed["bad_sent"] + mixed["good"]["requests"]), 3)}
    write_results(out_dir, results, soak_markdown(results))
    return results


async def _phase(url: str, port: int, questions: list[str], seconds: float, clients: int, bad_clients: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    bad: dict[str, dict[str, int]] = {kind: {} for kind in BAD_KINDS}
    sent = {"bad": 0}
    stop = time.monotonic() + seconds
    kinds = itertools.cycle(BAD_KINDS)

    async def good(http: httpx.AsyncClient, k: int) -> None:
        for i in itertools.count(k * 7):
            if time.monotonic() >= stop:
                return
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/ask", json={"question": questions[i % len(questions)]})
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            if code == "200":
                latencies.append(time.perf_counter() - t0)
            else:
                errors[code] = errors.get(code, 0) + 1

    async def hostile() -> None:
        while time.monotonic() < stop:
            # Keep bad requests at BAD_SHARE of all: wait while they are ahead of the good ones.
            if sent["bad"] >= BAD_SHARE / (1 - BAD_SHARE) * (len(latencies) + sum(errors.values())):
                await asyncio.sleep(0.01)
                continue
            kind = next(kinds)
            sent["bad"] += 1
            try:
                answer = await asyncio.wait_for(BAD_REQUESTS[kind](port), 30)
            except (OSError, asyncio.TimeoutError) as exc:  # noqa: UP041 - distinct on Python 3.10
                answer = type(exc).__name__
            bad[kind][answer] = bad[kind].get(answer, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(good(http, k) for k in range(clients)), *(hostile() for _ in range(bad_clients)))
        wall = time.perf_counter() - t0
    return {"seconds": round(wall, 2), "bad_sent": sent["bad"], "bad_answers": bad, "good_errors": errors,
            "good": {"requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 2),
                     **summary(latencies)}}


async def _exchange(port: int, data: bytes, *, close_at_once: bool = False, stall_s: float = 0.0) -> str:
    """Send ``data`` on a new connection; the status answered, or what happened instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_at_once:
            return "left"
        if stall_s:
            await asyncio.sleep(stall_s)
            return "left_stalled"
        line = await reader.readline()
        return line.split(b" ")[1].decode() if line.startswith(b"HTTP/1.1 ") else "closed"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _post(path: str, body: bytes, content_type: str = "application/json", length: int | None = None,
          extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n").encode() + extra + b"\r\n" + body


BAD_REQUESTS = {
    "lone_surrogate": lambda port: _exchange(port, _post("/v1/ask", b'{"question": "\\ud800 \\u6570\\u636e"}')),
    "abandoned": lambda port: _exchange(port, _post("/v1/ask", json.dumps(
        {"questions": [f"数据清洗流程是什么？第{i}个" for i in range(64)]}).encode()), close_at_once=True),
    "not_json": lambda port: _exchange(port, _post("/v1/ask", b'{"question": "x"}', content_type="text/plain")),
    "stalled_body": lambda port: _exchange(port, _post("/v1/ask", b'{"question": "', length=64), stall_s=0.5),
    "huge_header": lambda port: _exchange(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                                          + b"a" * 32768 + b"\r\n\r\n"),
    "keyless_body_to_health": lambda port: _exchange(port, _post("/health", b"x" * 65536, length=1 << 20)),
}


def _server_pid(port: int) -> int | None:
    """The pid listening on ``port`` (Linux, from /proc); None where it cannot be found."""
    try:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                return int(pid)
    except OSError:
        return None
    return None


def _settled(pid: int | None, start: dict, timeout_s: float = 15.0) -> dict:
    """``_resources`` once the server has closed the connections of the clients that just left (at most
    ``timeout_s``): descriptors still open then are a leak, not a connection closing."""
    deadline = time.monotonic() + timeout_s
    now = _resources(pid)
    while now["fds"] is not None and now["fds"] > start["fds"] and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _resources(pid)
    return now


def _resources(pid: int | None) -> dict:
    """RSS in MB and open file descriptors of ``pid`` (None where /proc cannot say)."""
    if pid is None:
        return {"rss_mb": None, "fds": None}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return {"rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (OSError, AttributeError):
        return {"rss_mb": None, "fds": None}


def soak_markdown(results: dict) -> str:
    """The soak run as a short markdown report."""
    clean, mixed, ratios = results["clean"]["good"], results["mixed"]["good"], results["ratios"]
    start, end = results["server"]["start"], results["server"]["end"]
    lines = [f"# Soak: `lora-router serve`, {results['duration_s']:g} s, {results['good_clients']} good clients",
             "", "| half | good req/s | good p50 ms | good p99 ms | good errors | bad sent |",
             "|---|---|---|---|---|---|",
             f"| good only | {clean['requests_per_s']} | {clean['p50_ms']} | {clean['p99_ms']} | "
             f"{sum(results['clean']['good_errors'].values())} | 0 |",
             f"| with bad traffic | {mixed['requests_per_s']} | {mixed['p50_ms']} | {mixed['p99_ms']} | "
             f"{sum(results['mixed']['good_errors'].values())} | {results['mixed']['bad_sent']} |", "",
             f"Good throughput with bad traffic: {ratios['good_throughput_mixed_vs_clean']:.2f}x of good only; "
             f"p99 {ratios['good_p99_mixed_vs_clean']:.2f}x; bad requests were {ratios['bad_share']:.0%} of all.", "",
             f"Server: RSS {start['rss_mb']} -> {end['rss_mb']} MB, open fds {start['fds']} -> {end['fds']}.", "",
             "| bad kind | answered |", "|---|---|"]
    for kind, answers in results["mixed"]["bad_answers"].items():
        lines.append(f"| {kind} | {', '.join(f'{k}: {v}' for k, v in sorted(answers.items())) or '-'} |")
    return "\n".join(lines) + "\n"
