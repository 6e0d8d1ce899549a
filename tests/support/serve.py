"""A real ``lora-router serve`` in a subprocess on 127.0.0.1, for the service's tests.

Every server is stopped by the test that started it (``Server`` is a context
manager); every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

STARTUP_S = 90
SAMPLES = ["帮我把sales_2024.csv导入到ODS层", "ODS层和DWD层有什么区别？", "Python怎么给列表排序", "今天天气怎么样",
           "数据清洗流程是什么？", "把/data/raw/user_log.parquet和orders.csv合并"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CliProcess:
    """``lora-router COMMAND ARGS --host 127.0.0.1 --port P`` on a free loopback port, its output in ``log_path``;
    ``stop()`` (SIGTERM, then kill) and ``log()``."""

    def __init__(self, command: list[str], *args: str, log_path: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from lora_router.cli import run; run()", *command, "--host", "127.0.0.1",
             "--port", str(self.port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", errors="replace")


class Server(CliProcess):
    """``lora-router serve ARGS`` on a free loopback port; ``url``, ``client()``, ``stop()``, ``log()``."""

    def __init__(self, *args: str, log_path: Path, env: dict | None = None):
        super().__init__(["serve"], *args, log_path=log_path, env=env)

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60), **kw)

    def wait_ready(self, headers: dict | None = None) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2, headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {STARTUP_S} s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)



def same_answer(a, b, tol: float = 1e-4) -> bool:
    """Equal but for timings, request ids, and scores within ``tol`` (fp32 batches differ in the last digits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {"ms", "warnings", "request_id"}
        return all(same_answer(a.get(k), b.get(k), tol) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_answer(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return abs(a - b) <= tol
    return a == b


def wait_for(condition, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` after ``timeout`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


class Load:
    """Clients asking in a loop on threads until stopped (bounded by ``limit`` requests each)."""

    def __init__(self, url: str, clients: int = 8, limit: int = 400, retry_connect: bool = False,
                 headers: dict | None = None):
        self.url, self.limit, self.retry_connect, self.headers = url, limit, retry_connect, headers
        self.codes: list[int] = []
        self.answers: list[dict] = []  # every 200's JSON
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(clients)]

    def _run(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60, headers=self.headers) as c:
            for i in range(self.limit):
                if self.stop_event.is_set():
                    return
                try:
                    r = c.post("/v1/ask", json={"question": SAMPLES[(k + i) % len(SAMPLES)]})
                    self.codes.append(r.status_code)
                    if r.status_code == 200:
                        self.answers.append(r.json())
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    return

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
