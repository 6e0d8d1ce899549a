"""The machine and software a benchmark ran on, and how busy other work kept it.

On a shared 2-core machine another process's threads turn PyTorch's OpenMP
barriers into waits for the scheduler (a tiny model's 2 ms forward took 300 ms
here), so every figure says how much CPU others used while it was measured.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from importlib import metadata
from pathlib import Path

# CPU flags that decide which kernels torch and onnxruntime pick.
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
PACKAGES = ("lora-router", "torch", "transformers", "peft", "onnxruntime", "onnxruntime-gpu", "optimum",
            "optimum-onnx", "onnx", "tokenizers", "numpy", "safetensors", "matplotlib")
BUSY_SHARE = 0.10
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_info() -> dict:
    """Model name and the flags that matter, from /proc/cpuinfo where there is one."""
    info: dict = {"model": platform.processor() or platform.machine(), "flags": []}
    path = Path("/proc/cpuinfo")
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and info["model"] in ("", platform.machine(), platform.processor()):
                info["model"] = value.strip()
            elif key == "flags" and not info["flags"]:
                flags = set(value.split())
                info["flags"] = [f for f in INTERESTING_FLAGS if f in flags]
                info["n_flags"] = len(flags)
    return info


def memory_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """Python's version and those of the packages that shape the figures (installed ones only)."""
    out = {"python": platform.python_version()}
    out.update({name: v for name in PACKAGES if (v := package_version(name))})
    return out


def machine() -> dict:
    """Date, CPU, cores and versions: the environment of the serve and Ray benchmarks."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_info(), "cores": cores(), "versions": versions()}


def environment(threads: int, device: dict) -> dict:
    """Everything a reader needs to judge or repeat the figures."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "cores": cores(),
        "cpu_count": os.cpu_count(),
        "memory_total_mb": memory_total_mb(),
        "gpu": gpu,
        "device": device,
        "versions": versions(),
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "onnxruntime_intra_op": threads,
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        },
    }



class BusyMachineWarning(UserWarning):
    """Other processes used a noticeable share of the CPUs during the measurements."""


def _machine_cpu_s() -> tuple[float, float] | None:
    """Busy and steal CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    v = [int(x) for x in fields] + [0] * 10
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMonitor:
    """Per phase: the share of all CPUs that other processes (not this one or its children) used."""

    def __init__(self) -> None:
        self.ncpu = os.cpu_count() or 1
        self.phases: dict[str, dict] = {}
        self._start: tuple | None = None
        self._name: str | None = None

    def _now(self) -> tuple:
        return time.perf_counter(), _machine_cpu_s(), _own_cpu_s()

    def begin(self, name: str) -> None:
        self.end()
        self._name, self._start = name, self._now()

    def end(self) -> None:
        if self._name is None or self._start is None:
            return
        (t0, m0, o0), (t1, m1, o1) = self._start, self._now()
        wall = t1 - t0
        row: dict = {"seconds": round(wall, 1)}
        if m0 is not None and m1 is not None and wall > 0:
            other = max(0.0, (m1[0] - m0[0]) - (o1 - o0))
            row["other_cpu_share"] = round(other / (wall * self.ncpu), 3)
            row["steal_share"] = round((m1[1] - m0[1]) / (wall * self.ncpu), 3)
        self.phases[self._name] = row
        self._name = self._start = None

    def report(self, timed: tuple[str, ...]) -> dict:
        """The phases, the busiest timed one, and a warning when others used more than 10% of the CPUs."""
        self.end()
        shares = [self.phases[p].get("other_cpu_share", 0.0) for p in timed if p in self.phases]
        worst = max(shares, default=0.0)
        out = {"phases": self.phases, "timed": list(timed), "max_other_cpu_share": worst,
               "loadavg_end": list(os.getloadavg()), "busy": worst > BUSY_SHARE}
        if out["busy"]:
            warnings.warn(
                f"other processes used up to {worst:.0%} of the CPUs while the benchmark measured; "
                "the timings are disturbed (run it again on a quiet machine)",
                BusyMachineWarning, stacklevel=3,
            )
        return out
