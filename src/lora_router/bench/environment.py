"""The machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

# CPU flags that decide which kernels torch and onnxruntime pick.
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
PACKAGES = ("lora-router", "torch", "transformers", "peft", "onnxruntime", "onnxruntime-gpu", "optimum",
            "optimum-onnx", "onnx", "tokenizers", "numpy", "safetensors", "matplotlib")
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


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


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
