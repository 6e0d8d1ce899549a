"""Benchmark of ``lora-router serve``: requests/s and latency at 1, 8 and 32 clients, batching on and off.

A real server runs in a subprocess on 127.0.0.1; the clients are asyncio
tasks with one ``httpx.AsyncClient`` in this process, so on a small machine
they share the cores with the server (reported, not hidden). In-process
``OnnxRouter.ask`` is the ceiling: ``ask`` one question at a time (what HTTP
adds at one client) and ``ask_batch`` of 32 (what batching could reach).
Every question runs the whole 3-step chain (``fixture.bench_chain``). What
``--capture`` costs is measured apart: the service with and without it side by
side, at the top client count, in interleaved rounds, and so is what
``--shadow`` costs (the export shadowing itself: its chain run twice). The Ray suite
(``bench.ray``) drives its services with the same helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .timing import summary

logger = logging.getLogger(__name__)

CLIENTS = (1, 8, 32)
MODES = {"batching": [], "no_batching": ["--max-batch-requests", "1"]}
CAPTURE_ROUNDS = 4  # interleaved rounds of the capture comparison: these machines drift by 10% and more


def run_serve_bench(out_dir: str | Path, *, size: str = "base", export_dir: str | Path | None = None,
                    clients: tuple[int, ...] = CLIENTS, requests: int = 200, progress: bool = True) -> dict:
    """Measure the service on an export (made from a random ``size`` model when not given); write results."""
    from .environment import machine
    from .fixture import bundled_questions, fixture_export, write_bench_chain
    from .report import serve_markdown, write_results

    work = Path(tempfile.mkdtemp(prefix="lora-router-serve-bench-"))
    export_dir = Path(export_dir) if export_dir else fixture_export(work, size, progress=progress)
    chain_file = write_bench_chain(export_dir, work / "chain.json")
    questions = bundled_questions()
    results: dict = {"kind": "serve", "size": size, "export": str(export_dir), "questions": len(questions),
                     "requests_per_client_level": requests, "modes": {}, "in_process": {},
                     "load_average_before": os.getloadavg()}
    for mode, extra in MODES.items():
        results["modes"][mode] = _measure_server(export_dir, chain_file, extra, questions, clients, requests,
                                                 work / f"{mode}.log")
        logger.info("serve bench: %s done", mode)
    top = max(clients)
    results["capture"] = _measure_capture(export_dir, chain_file, questions, top, max(requests, 25 * top), work)
    logger.info("serve bench: capture done")
    results["shadow"] = _measure_shadow(export_dir, chain_file, questions, top, max(requests, 25 * top), work)
    logger.info("serve bench: shadow done")
    results.update(in_process=_measure_in_process(export_dir, chain_file, questions, requests),
                   load_average_after=os.getloadavg(), environment=machine())
    results["ratios"] = _ratios(results, clients)
    write_results(out_dir, results, serve_markdown(results))
    return results


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(export_dir: Path, chain: Path, port: int, log_path: Path,
            extra: Sequence[str] = ()) -> Iterator[str]:
    """``lora-router serve`` on ``export_dir`` in a subprocess until the block ends; yields its URL once ready."""
    with serving_process(export_dir, chain, port, log_path, extra) as (url, _):
        yield url


@contextlib.contextmanager
def serving_process(export_dir: Path, chain: Path, port: int, log_path: Path,
                    extra: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """As ``serving``, yielding the URL and the server's process."""
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", "from lora_router.cli import run; run()", "serve", "--onnx",
                                 str(export_dir), "--chain", str(chain), "--port", str(port), "--log-level", "warning",
                                 *extra], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, timeout=300, alive=lambda: proc.poll() is None,
                       died=lambda: f"server exited: {log_path.read_text(errors='replace')[-2000:]}")
            yield url, proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _measure_server(export_dir: Path, chain: Path, extra: list[str], questions: list[str], clients, requests: int,
                    log_path: Path) -> dict:
    with serving(export_dir, chain, free_port(), log_path, extra) as url:
        warm_up(url, questions)
        return {str(n): level(n, *run_load(url, questions, n, max(requests, 25 * n))) for n in clients}


def _measure_capture(export_dir: Path, chain: Path, questions: list[str], clients: int, requests: int,
                     work: Path, rounds: int = CAPTURE_ROUNDS) -> dict:
    """What ``--capture`` costs: the service without and with it side by side, in interleaved rounds.

    Requests/s of the two drift with whatever else the machine runs; the share
    of the capturing server's CPU time that capture took (its own counter
    against the process's CPU time) does not, and bounds the throughput cost
    of a CPU-bound service.
    """
    from statistics import median

    from ..capture import CaptureStore

    store = work / "captures"
    rates: dict[str, list[float]] = {"plain": [], "capture": []}
    with serving(export_dir, chain, free_port(), work / "plain.log") as plain, \
            serving_process(export_dir, chain, free_port(), work / "capture.log",
                            ["--capture", str(store)]) as (capturing, proc):
        urls = {"plain": plain, "capture": capturing}
        for url in urls.values():
            warm_up(url, questions)
        cpu_before, capture_before = _process_cpu_seconds(proc.pid), _metric(capturing, CAPTURE_CPU_METRIC)
        _interleaved_rounds(urls, rates, questions, clients, requests, rounds, "capture")
        process_cpu = _process_cpu_seconds(proc.pid) - cpu_before
        capture_cpu = _metric(capturing, CAPTURE_CPU_METRIC) - capture_before
    plain_rate, capture_rate = median(rates["plain"]), median(rates["capture"])
    return {"clients": clients, "requests_per_round": requests, "rounds": rounds,
            "requests_per_s": rates, "median_requests_per_s": {"plain": plain_rate, "capture": capture_rate},
            "throughput_cost": round(1 - capture_rate / plain_rate, 4),
            "capture_cpu_s": round(capture_cpu, 4), "server_cpu_s": round(process_cpu, 3),
            "capture_cpu_share": round(capture_cpu / process_cpu, 5) if process_cpu > 0 else None,
            "capture_cpu_us_per_answer": round(1e6 * capture_cpu / (rounds * requests), 1),
            "captured": len(CaptureStore(store)),
            "store_mb": round(sum(p.stat().st_size for p in store.rglob("*.jsonl")) / 2**20, 2)}


def _interleaved_rounds(urls: dict[str, str], rates: dict[str, list[float]], questions: list[str], clients: int,
                        requests: int, rounds: int, what: str) -> None:
    """Append each server's requests/s per round to ``rates``, the two servers taking turns to go first."""
    names = list(urls)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            latencies, wall, errors = run_load(urls[name], questions, clients, requests)
            if errors:
                raise RuntimeError(f"{errors} requests failed in the {what} comparison ({name})")
            rates[name].append(round(len(latencies) / wall, 2))


CAPTURE_CPU_METRIC = "lora_router_capture_cpu_seconds_total"
SHADOW_METRICS = {"shadowed": "lora_router_shadow_questions_total", "dropped": "lora_router_shadow_dropped_total"}


def _measure_shadow(export_dir: Path, chain: Path, questions: list[str], clients: int, requests: int,
                    work: Path, rounds: int = CAPTURE_ROUNDS) -> dict:
    """What ``--shadow`` costs: the service without and with the export shadowing itself, in interleaved rounds.

    The candidate is the served export (its own chain.json, not the bench
    chain): the candidate's work is the chain once more per question, on the
    shadow thread. ``shadowed`` and ``dropped`` (the shadow queue was full)
    say how much of it was done.
    """
    from statistics import median

    rates: dict[str, list[float]] = {"plain": [], "shadow": []}
    with serving(export_dir, chain, free_port(), work / "plain-shadow.log") as plain, \
            serving(export_dir, chain, free_port(), work / "shadow.log", ["--shadow", str(export_dir)]) as shadowing:
        urls = {"plain": plain, "shadow": shadowing}
        for url in urls.values():
            warm_up(url, questions)
        _interleaved_rounds(urls, rates, questions, clients, requests, rounds, "shadow")
        counts = {key: _metric_sum(shadowing, name) for key, name in SHADOW_METRICS.items()}
    plain_rate, shadow_rate = round(median(rates["plain"]), 2), round(median(rates["shadow"]), 2)
    return {"clients": clients, "requests_per_round": requests, "rounds": rounds, "requests_per_s": rates,
            "median_requests_per_s": {"plain": plain_rate, "shadow": shadow_rate},
            "throughput_ratio": round(shadow_rate / plain_rate, 4), **{k: int(v) for k, v in counts.items()}}


def _metric_sum(url: str, name: str) -> float:
    """A counter of the service's /metrics summed over its labels (0 when it has no sample yet)."""
    import httpx

    return sum(float(line.split()[-1]) for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _metric(url: str, name: str) -> float:
    """One counter of the service's /metrics."""
    import httpx

    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{url}/metrics has no {name}")


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout: float = 600, alive=lambda: True, died=lambda: "the service exited") -> None:
    """Poll ``url``/ready until 200; ``RuntimeError(died())`` when ``alive()`` says the service died, else
    ``TimeoutError``."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(died())
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout} s")


async def load_requests(url: str, questions: list[str], clients: int, total: int) -> tuple[list[float], float, int]:
    """``total`` POST /v1/ask from ``clients`` concurrent clients: (latencies in s, wall s, non-200 count)."""
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            r = await http.post(f"{url}/v1/ask", json={"question": questions[i % len(questions)]})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(http) for _ in range(clients))), timeout=1200)
        return latencies, time.perf_counter() - t0, errors


def run_load(url: str, questions: list[str], clients: int, total: int) -> tuple[list[float], float, int]:
    """``load_requests`` run to the end."""
    return asyncio.run(load_requests(url, questions, clients, total))


def warm_up(url: str, questions: list[str]) -> None:
    """40 requests from 4 clients: connections, lazy parts, the first batches."""
    run_load(url, questions, 4, 40)


def level(clients: int, latencies: list[float], wall: float, errors: int) -> dict:
    """One client level's figures: requests, errors, requests/s and the latency summary."""
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / wall, 2), **summary(latencies)}


def _measure_in_process(export_dir: Path, chain: Path, questions: list[str], requests: int) -> dict:
    from ..backends.onnx import OnnxRouter

    router = OnnxRouter(export_dir, chain=chain)
    for q in questions[:10]:
        router.ask(q)
    one, wall_one = _calls(lambda i: router.ask(questions[i % len(questions)]), requests)
    chunks = [[questions[(b * 32 + k) % len(questions)] for k in range(32)] for b in range(max(3, requests // 32))]
    batches, wall_batch = _calls(lambda b: router.ask_batch(chunks[b]), len(chunks))
    return {"ask": {"requests_per_s": round(requests / wall_one, 2), **summary(one)},
            "ask_batch_32": {"questions_per_s": round(32 * len(chunks) / wall_batch, 2), **summary(batches)},
            "layout": router.layout, "precision": router.precision}


def _calls(fn, n: int) -> tuple[list[float], float]:
    """Seconds of each call ``fn(i)`` for i < ``n``, and of them all."""
    times, t_all = [], time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - t_all


def _ratios(results: dict, clients) -> dict:
    """What batching buys at the top client count; what HTTP adds to the in-process ask at one client."""
    modes, top, alone = results["modes"], str(max(clients)), results["in_process"]["ask"]["p50_ms"]
    out = {f"batching_gain_at_{top}_clients": round(
        modes["batching"][top]["requests_per_s"] / modes["no_batching"][top]["requests_per_s"], 2)}
    for mode, suffix in (("batching", ""), ("no_batching", "_no_batching")) if "1" in modes["batching"] else ():
        out[f"http_p50_minus_in_process_ask_p50_ms_at_1_client{suffix}"] = round(modes[mode]["1"]["p50_ms"] - alone, 3)
    if "capture" in results:  # the CPU share: requests/s side by side drift with the machine's other work
        out[f"capture_cpu_share_at_{results['capture']['clients']}_clients"] = results["capture"]["capture_cpu_share"]
    return out
