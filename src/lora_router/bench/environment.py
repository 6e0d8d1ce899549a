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
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_info() -> dict:
    """Model name and the flags that matter, from /proc/cpuinfo where there is one."""
    info: dict = {"model": platform.processor() or platform.machine(), "flags": []}
    path, fields = Path("/proc/cpuinfo"), {}
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else ():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    if "model name" in fields:
        info["model"] = fields["model name"]
    if "flags" in fields:
        flags = set(fields["flags"].split())
        info.update(flags=[f for f in INTERESTING_FLAGS if f in flags], n_flags=len(flags))
    return info


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """Date, CPU, cores and versions (Python's and the installed ones of ``PACKAGES``): the environment of the
    serve and Ray benchmarks."""
    versions = {"python": platform.python_version()}
    versions.update({name: v for name in PACKAGES if (v := package_version(name))})
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_info(), "cores": cores(), "versions": versions}


def environment(threads: int, device: dict) -> dict:
    """Everything a reader needs to judge or repeat the figures."""
    import torch

    m = machine()
    return {
        "date": m["date"],
        "platform": platform.platform(),
        "cpu": m["cpu"],
        "cores": m["cores"],
        "cpu_count": os.cpu_count(),
        "memory_total_mb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1),
        "gpu": {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
        if torch.cuda.is_available() else None,
        "device": device,
        "versions": m["versions"],
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "onnxruntime_intra_op": threads,
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        },
    }


class BusyMachineWarning(UserWarning):
    """Other processes used a noticeable share of the CPUs during the measurements."""


def _cpu_seconds() -> tuple[float, float, float]:
    """Busy and steal CPU seconds of the whole machine since boot (/proc/stat), and of this process and its children."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz, sum(os.times()[:4])


class CpuMonitor:
    """Per phase: the share of all CPUs that other processes (not this one or its children) used."""

    def __init__(self) -> None:
        self.ncpu = os.cpu_count() or 1
        self.phases: dict[str, dict] = {}
        self._running: tuple | None = None  # the phase measured: name, start time, CPU seconds at the start

    def begin(self, name: str) -> None:
        self.end()
        self._running = (name, time.perf_counter(), _cpu_seconds())

    def end(self) -> None:
        if self._running is None:
            return
        name, t0, (busy0, steal0, own0) = self._running
        wall, (busy1, steal1, own1) = time.perf_counter() - t0, _cpu_seconds()
        other = max(0.0, (busy1 - busy0) - (own1 - own0))
        self.phases[name] = {"seconds": round(wall, 1), "other_cpu_share": round(other / (wall * self.ncpu), 3),
                             "steal_share": round((steal1 - steal0) / (wall * self.ncpu), 3)}
        self._running = None

    def report(self, timed: tuple[str, ...]) -> dict:
        """The phases, the busiest timed one, and a warning when others used more than 10% of the CPUs."""
        self.end()
        worst = max((self.phases[p]["other_cpu_share"] for p in timed if p in self.phases), default=0.0)
        out = {"phases": self.phases, "timed": list(timed), "max_other_cpu_share": worst,
               "loadavg_end": list(os.getloadavg()), "busy": worst > BUSY_SHARE}
        if out["busy"]:
            warnings.warn(f"other processes used up to {worst:.0%} of the CPUs while the benchmark measured; the "
                          "timings are disturbed (run it again on a quiet machine)", BusyMachineWarning, stacklevel=3)
        return out
