"""onnxruntime sessions: providers for a device, and thread settings for several sessions.

Several sessions in one process each keep their own intra-op thread pool.
By default those threads spin after each run, and idle sessions then steal
the cores from the busy one (figures: docs/performance.md, "Thread
spinning"). The runtime turns spinning off; benchmarks/export_figures.py
measures both.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DeviceError

DEVICES = ("cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return max(1, len(allowed))
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" not in fields or int(fields["processor"]) not in allowed:
            continue
        cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return max(1, len(cores) or len(allowed))


def providers_for(device: str) -> list:
    """The execution providers for ``device`` (cpu, cuda, cuda:N); ``DeviceError`` when not available."""
    import onnxruntime as ort

    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "cuda" or device.startswith("cuda:"):
        if CUDA_PROVIDER not in ort.get_available_providers():
            raise DeviceError(
                f"device {device!r} was asked for, but this onnxruntime ({ort.__version__}, providers: "
                f"{', '.join(ort.get_available_providers())}) has no {CUDA_PROVIDER}; install onnxruntime-gpu "
                "on a machine with an NVIDIA GPU (pip install onnxruntime-gpu), or use device 'cpu'"
            )
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise DeviceError(f"device {device!r} is not valid; use cuda or cuda:N (N a GPU number)")
        return [(CUDA_PROVIDER, {"device_id": int(index)}), CPU_PROVIDER]
    raise DeviceError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")


def session_options(threads: int | None = None, *, spinning: bool = False):
    """Options for one of several sessions: ``threads`` intra-op threads (default: physical cores)."""
    import onnxruntime as ort

    if threads is not None and threads < 1:
        raise DeviceError(f"threads must be >= 1, got {threads}; leave it unset for one per physical core")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The shared encoder's LoRA inputs are initializers on purpose (zero defaults);
    # onnxruntime warns about each one at load time. Errors are still logged.
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


def open_session(path: Path, device: str, options):
    """An inference session; ``DeviceError`` when ``device`` asked for a GPU it could not use."""
    import onnxruntime as ort

    providers = providers_for(device)
    session = ort.InferenceSession(str(path), options, providers=providers)
    if providers[0] != CPU_PROVIDER and CUDA_PROVIDER not in session.get_providers():
        raise DeviceError(
            f"device {device!r} was asked for and onnxruntime-gpu is installed, but it could not use a GPU "
            "(no CUDA device, or CUDA/cuDNN libraries missing); check nvidia-smi, or use device 'cpu'"
        )
    return session
