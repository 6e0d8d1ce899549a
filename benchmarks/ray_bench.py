"""Ray Serve against plain ``lora-router serve``: requests/s and p50/p99 latency, 1 and 16 clients.

Four services on the same export and machine, side by side: ``serve``
(uvicorn, one process, onnxruntime on every core), and on Ray Serve behind
its HTTP proxy: one replica with as many threads (the proxy's cost), one
replica with one thread, and two replicas with one thread each (what a
second replica buys). They are measured in interleaved rounds, so a change
in the machine's load falls on all of them alike. Every question runs the
whole 3-step chain (``lora_router.bench.fixture.bench_chain``); the clients
are asyncio tasks in this process and share the cores with the services.

Ray's services listen on every network interface, so run this in a network
namespace of its own (as root)::

    unshare --net --pid --fork --mount-proc sh -c \\
        'ip link set lo up && python benchmarks/ray_bench.py --out benchmarks/results/ray-cpu'

The export is a random base-size model (int8, layout multi) made first unless
``--export DIR`` names one; ``--work-dir`` keeps it for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lora_router.bench.serve import load_requests, wait_ready, write_bench_chain

logger = logging.getLogger("ray_bench")

CLIENTS = (1, 16)
PORT = 8000  # Ray Serve's proxy
PLAIN_PORT = 8080


def make_export(work: Path, size: str) -> Path:
    """A random ``size`` base with four random adapters, exported int8 in layout multi (no parity gate: speed only)."""
    from lora_router.bench.fixture import build_fixture
    from lora_router.export import export_hub

    out = work / f"export-{size}"
    if (out / "manifest.json").is_file():
        return out
    fixture = build_fixture(work / f"fixture-{size}", size)
    export_hub(str(fixture.base_dir), str(fixture.hub_dir), str(out), quantize="int8", layout="multi", parity=False,
               progress=False)
    return out


def bundled_questions() -> list[str]:
    from lora_router.data.bundled import bundled_dir

    lines = (bundled_dir() / "chain" / "test.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines]


def measure(urls: dict[str, str], questions: list[str], clients, requests: int, rounds: int) -> dict:
    """Every service at every client count, in ``rounds`` interleaved rounds (the order rotates each round),
    so a change in the machine's load falls on every service alike."""
    from lora_router.bench.timing import summary

    for url in urls.values():
        asyncio.run(load_requests(url, questions, 4, 40))  # warm-up: connections, lazy parts, the first batches
    names = list(urls)
    raw = {name: {n: ([], 0.0, 0) for n in clients} for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            for n in clients:
                latencies, wall, errors = asyncio.run(load_requests(urls[name], questions, n,
                                                           max(requests, 20 * n) // rounds))
                seen = raw[name][n]
                raw[name][n] = (seen[0] + latencies, seen[1] + wall, seen[2] + errors)
        logger.info("round %d/%d done", r + 1, rounds)
    out = {}
    for name in names:
        out[name] = {}
        for n in clients:
            latencies, wall, errors = raw[name][n]
            out[name][str(n)] = {"clients": n, "requests": len(latencies), "errors": errors,
                                 "requests_per_s": round(len(latencies) / wall, 2), **summary(latencies)}
    return out


# name: (replicas, onnxruntime threads per replica)
RAY_SERVICES = {"ray_1_replica_2_threads": (1, 2), "ray_1_replica_1_thread": (1, 1),
                "ray_2_replicas_1_thread": (2, 1)}


def run_all(export: Path, chain: Path, questions, clients, requests: int, rounds: int, work: Path,
            temp_dir: Path) -> dict:
    """Start plain ``serve`` and the Ray services side by side, measure them interleaved, stop them."""
    from lora_router.bench.environment import cores
    from lora_router.serving.ray import ExportCatalog, build_app, connect

    n_cores = cores()
    log = open(work / "serve.log", "wb")
    plain = subprocess.Popen([sys.executable, "-c", "from lora_router.cli import run; run()", "serve", "--onnx",
                              str(export), "--chain", str(chain), "--port", str(PLAIN_PORT), "--log-level",
                              "warning"], stdout=log, stderr=subprocess.STDOUT)
    # One logical CPU per replica: every replica starts at once; the cores are shared as the threads say.
    cluster = connect(init_options=dict(num_cpus=sum(r for r, _ in RAY_SERVICES.values()), include_dashboard=False,
                                        log_to_driver=False, _temp_dir=str(temp_dir),
                                        object_store_memory=100 * 2**20, logging_level="warning"))
    try:
        urls = {"serve": f"http://127.0.0.1:{PLAIN_PORT}"}
        for name, (replicas, threads) in RAY_SERVICES.items():
            app = build_app(ExportCatalog(exports={"default": str(export)}),
                            {"chain": str(chain), "precision": "int8", "threads": threads},
                            num_replicas=replicas, replica_cpus=1)
            urls[name] = cluster.run(app, port=PORT, app_name=name, route_prefix=f"/{name}")
        for url in urls.values():
            wait_ready(url, alive=lambda: plain.poll() is None)
        results = measure(urls, questions, clients, requests, rounds)
        results["serve_threads"] = n_cores
        return results
    finally:
        cluster.shutdown(None)
        plain.send_signal(signal.SIGTERM)
        try:
            plain.wait(60)
        except subprocess.TimeoutExpired:
            plain.kill()
        log.close()


LABELS = {"serve": "`lora-router serve` (uvicorn, 1 process, {t} threads)",
          "ray_1_replica_2_threads": "Ray Serve, 1 replica, 2 threads",
          "ray_1_replica_1_thread": "Ray Serve, 1 replica, 1 thread",
          "ray_2_replicas_1_thread": "Ray Serve, 2 replicas, 1 thread each"}


def markdown(results: dict) -> str:
    env = results["environment"]
    rows = ["| service | clients | requests | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    for name, levels in results["services"].items():
        label = LABELS.get(name, name).format(t=results["serve_threads"])
        for n, r in levels.items():
            rows.append(f"| {label} | {n} | {r['requests']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
                        f"{r['p99_ms']:.1f} | {r['errors']} |")
    lines = [f"# Ray Serve against `lora-router serve` ({results['size']} export, int8, layout multi)", "",
             f"CPU: {env['cpu'].get('model', '?')}, {env['cores']} cores; load average before "
             f"{results['load_average_before'][0]:.1f}, after {results['load_average_after'][0]:.1f}. Every question "
             f"runs the 3-step chain; {results['questions']} different questions. The four services run side by "
             f"side and are measured in {results['rounds']} interleaved rounds. Clients run in the benchmark "
             "process and share the cores with the services.", "", *rows, ""]
    for key, value in results["ratios"].items():
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    return "\n".join(lines) + "\n"


def ratios(services: dict) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray-cpu")
    parser.add_argument("--export", type=Path, default=None, help="an export to serve [default: make one]")
    parser.add_argument("--size", choices=("tiny", "base"), default="base", help="of the export made")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the export made here")
    parser.add_argument("--requests", type=int, default=120, help="requests per level (at least 20 per client)")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (each takes requests/rounds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    from lora_router.bench.environment import cores, cpu_info, versions

    in_namespace = [n for _, n in socket.if_nameindex()] == ["lo"]
    if not in_namespace:
        logger.warning("not in a network namespace of its own: Ray's services listen on every interface")
    clients = tuple(int(n) for n in args.clients.split(","))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lr-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    export = args.export or make_export(work, args.size)
    chain = write_bench_chain(export, work / "bench-chain.json")
    questions = bundled_questions()
    base = json.loads((export / "manifest.json").read_text("utf-8")).get("base_model", {})
    size = {768: "base", 128: "tiny"}.get(base.get("hidden_size"), f"hidden size {base.get('hidden_size')}")
    results: dict = {"kind": "ray-serve", "size": size, "random_base": base.get("random"),
                     "export": str(export), "questions": len(questions), "requests_per_level": args.requests,
                     "network_namespace": in_namespace, "load_average_before": os.getloadavg()}
    temp_dir = Path(tempfile.mkdtemp(prefix="lr-ray-", dir="/tmp"))
    try:
        services = run_all(export, chain, questions, clients, args.requests, args.rounds, work, temp_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    results["serve_threads"] = services.pop("serve_threads")
    results["services"] = services
    results["rounds"] = args.rounds
    results["load_average_after"] = os.getloadavg()
    results["environment"] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_info(), "cores": cores(),
                              "versions": versions(), "ray": _version("ray")}
    results["ratios"] = ratios(results["services"])
    results["duration_s"] = round(time.monotonic() - t_all, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", "utf-8")
    (args.out / "results.md").write_text(markdown(results), "utf-8")
    print(markdown(results))
    return 0


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
