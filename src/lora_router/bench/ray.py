"""Ray Serve against plain ``lora-router serve``: requests/s and p50/p99 latency, 1 and 16 clients.

Four services on the same export and machine, side by side: ``serve``
(uvicorn, one process, onnxruntime on every core), and on Ray Serve behind
its HTTP proxy: one replica with as many threads (the proxy's cost), one
replica with one thread, and two replicas with one thread each (what a
second replica buys). They are measured in interleaved rounds, so a change
in the machine's load falls on all of them alike. Every question runs the
whole 3-step chain (``fixture.bench_chain``); the clients are asyncio tasks
in this process and share the cores with the services. Ray's services listen
on every network interface: run it in a network namespace of its own
(``benchmarks/ray_bench.py`` says how).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from .serve import level, run_load, serving, wait_ready, warm_up

logger = logging.getLogger(__name__)

CLIENTS = (1, 16)
PORT = 8000  # Ray Serve's proxy
PLAIN_PORT = 8080
# name: (replicas, onnxruntime threads per replica)
RAY_SERVICES = {"ray_1_replica_2_threads": (1, 2), "ray_1_replica_1_thread": (1, 1),
                "ray_2_replicas_1_thread": (2, 1)}


def run_ray_bench(out_dir: str | Path, *, export_dir: str | Path | None = None, size: str = "base",
                  work_dir: str | Path | None = None, requests: int = 120, clients: tuple[int, ...] = CLIENTS,
                  rounds: int = 4) -> dict:
    """Measure plain ``serve`` and the Ray services on an export (a random ``size`` one, int8, layout multi,
    made in ``work_dir`` unless given); write results.json and results.md to ``out_dir``."""
    from .environment import cores, machine, package_version
    from .fixture import bundled_questions, fixture_export, write_bench_chain
    from .report import ray_markdown, write_results

    in_namespace = [n for _, n in socket.if_nameindex()] == ["lo"]
    if not in_namespace:
        logger.warning("not in a network namespace of its own: Ray's services listen on every interface")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="lr-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    # no parity gate: speed only
    export = Path(export_dir) if export_dir else fixture_export(work, size, layout="multi", gate=False)
    chain = write_bench_chain(export, work / "bench-chain.json")
    questions = bundled_questions()
    base = json.loads((export / "manifest.json").read_text("utf-8")).get("base_model", {})
    size = {768: "base", 128: "tiny"}.get(base.get("hidden_size"), f"hidden size {base.get('hidden_size')}")
    results: dict = {"kind": "ray-serve", "size": size, "random_base": base.get("random"),
                     "export": str(export), "questions": len(questions), "requests_per_level": requests,
                     "network_namespace": in_namespace, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="lr-ray-", dir="/tmp", ignore_cleanup_errors=True) as temp_dir:
        services = _run_services(export, chain, questions, clients, requests, rounds, work, Path(temp_dir))
    results.update(serve_threads=cores(), services=services, rounds=rounds, load_average_after=os.getloadavg(),
                   environment=dict(machine(), ray=package_version("ray")), ratios=ratios(services),
                   duration_s=round(time.monotonic() - t_all, 1))
    write_results(out_dir, results, ray_markdown(results))
    return results


def _run_services(export: Path, chain: Path, questions, clients, requests: int, rounds: int, work: Path,
                  temp_dir: Path) -> dict:
    """Start plain ``serve`` and the Ray services side by side, measure them interleaved, stop them."""
    from ..serving.ray import ExportCatalog, build_app
    from ..serving.ray_host import connect

    with serving(export, chain, PLAIN_PORT, work / "serve.log") as plain_url:
        # One logical CPU per replica: every replica starts at once; the cores are shared as the threads say.
        cluster = connect(init_options=dict(num_cpus=sum(r for r, _ in RAY_SERVICES.values()),
                                            include_dashboard=False, log_to_driver=False, _temp_dir=str(temp_dir),
                                            object_store_memory=100 * 2**20, logging_level="warning"))
        try:
            urls = {"serve": plain_url}
            for name, (replicas, threads) in RAY_SERVICES.items():
                app = build_app(ExportCatalog(exports={"default": str(export)}),
                                {"chain": str(chain), "precision": "int8", "threads": threads},
                                num_replicas=replicas, replica_cpus=1)
                urls[name] = cluster.run(app, port=PORT, app_name=name, route_prefix=f"/{name}")
            for url in urls.values():
                wait_ready(url)
            return measure(urls, questions, clients, requests, rounds)
        finally:
            cluster.shutdown(None)


def measure(urls: dict[str, str], questions: list[str], clients, requests: int, rounds: int) -> dict:
    """Every service at every client count, in ``rounds`` interleaved rounds (the order rotates each round),
    so a change in the machine's load falls on every service alike."""
    for url in urls.values():
        warm_up(url, questions)
    names = list(urls)
    raw = {name: {n: ([], 0.0, 0) for n in clients} for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            for n in clients:
                latencies, wall, errors = run_load(urls[name], questions, n, max(requests, 20 * n) // rounds)
                seen = raw[name][n]
                raw[name][n] = (seen[0] + latencies, seen[1] + wall, seen[2] + errors)
        logger.info("round %d/%d done", r + 1, rounds)
    return {name: {str(n): level(n, *raw[name][n]) for n in clients} for name in names}


def ratios(services: dict) -> dict:
    """The proxy's cost and what a second replica buys, at the top client count."""
    plain = services["serve"]
    top = str(max(int(n) for n in plain))
    r12, r11, r21 = (services[k] for k in RAY_SERVICES)
    return {
        "ray_proxy_p50_cost_ms_at_1_client": round(r12["1"]["p50_ms"] - plain["1"]["p50_ms"], 2),
        f"ray_1_replica_throughput_vs_serve_at_{top}_clients": round(
            r12[top]["requests_per_s"] / plain[top]["requests_per_s"], 2),
        f"ray_2_replicas_vs_1_replica_1_thread_at_{top}_clients": round(
            r21[top]["requests_per_s"] / r11[top]["requests_per_s"], 2),
        f"ray_2_replicas_vs_1_replica_2_threads_at_{top}_clients": round(
            r21[top]["requests_per_s"] / r12[top]["requests_per_s"], 2),
    }
