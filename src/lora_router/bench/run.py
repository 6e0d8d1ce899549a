"""``run_bench``: build the models, time every contender in one run, write the report."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from ..errors import ConfigError
from .contenders import CONTENDERS, ONNX_KEYS, ONNX_VARIANTS, TORCH_KEYS
from .environment import cores

logger = logging.getLogger(__name__)

SIZES = ("tiny", "base")
DEVICES = ("cpu", "cuda")
# Fewer runs where one call takes seconds: (a2) per-task latency, batch-32 throughput, fresh processes.
DEFAULTS = {
    "tiny": {"runs": 50, "warmup": 3, "slow_runs": 5, "throughput_runs": 10, "cold_runs": 1, "train_steps": 10},
    "base": {"runs": 50, "warmup": 5, "slow_runs": 10, "throughput_runs": 10, "cold_runs": 3, "train_steps": 8},
}


class GpuUnavailableWarning(UserWarning):
    """``device="cuda"`` was asked for without a usable GPU; the benchmark ran on CPU."""


def run_bench(
    size: str = "tiny",
    device: str = "cpu",
    out_dir: str | Path = "bench-results",
    *,
    runs: int | None = None,
    warmup: int | None = None,
    slow_runs: int | None = None,
    throughput_runs: int | None = None,
    cold_runs: int | None = None,
    train_steps: int | None = None,
    contenders: tuple[str, ...] | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Benchmark every contender on a random ``size`` model and write results.json, results.md, chart.png.

    ``runs`` timed runs (after ``warmup``) for per-task latency and the chain;
    ``slow_runs`` for (a2)'s per-task latency; ``throughput_runs`` batches of
    32; ``cold_runs`` fresh processes per contender; ``train_steps`` training
    steps per padding mode. The models go into ``work_dir`` (a temporary
    folder, removed afterwards, when not given). Returns the results dict.
    """
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    keys = tuple(contenders or CONTENDERS)
    unknown = [k for k in keys if k not in CONTENDERS]
    if unknown:
        raise ConfigError(f"unknown contender(s) {unknown}; valid: {', '.join(CONTENDERS)}")
    opts = dict(DEFAULTS[size])
    given = {"runs": runs, "warmup": warmup, "slow_runs": slow_runs, "throughput_runs": throughput_runs,
             "cold_runs": cold_runs, "train_steps": train_steps}
    opts.update({k: v for k, v in given.items() if v is not None})
    for name, value in opts.items():
        if value < (0 if name == "warmup" else 1):
            raise ConfigError(f"{name} must be >= {0 if name == 'warmup' else 1}, got {value}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="lora-router-bench-")) if own_work else Path(work_dir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    try:
        from .measure import measure_all

        results = measure_all(size, _device_info(device), work, keys, opts, progress)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)

    from .report import write_chart, write_markdown

    (out_dir / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", "utf-8")
    write_markdown(results, out_dir / "results.md")
    write_chart(results, out_dir / "chart.png")
    return results


def _device_info(device: str) -> dict:
    """The device asked for and the one used; a warning when a GPU was asked for and is not there."""
    import torch

    info = {"requested": device, "used": device, "fp16": False, "threads": cores(), "note": None}
    if device == "cuda":
        if torch.cuda.is_available():
            info["fp16"] = True
            info["gpu"] = torch.cuda.get_device_name(0)
        else:
            info["used"] = "cpu"
            info["note"] = "no CUDA GPU visible to PyTorch; ran on CPU instead"
            warnings.warn("--device cuda: PyTorch sees no CUDA GPU here; benchmarking on CPU instead",
                          GpuUnavailableWarning, stacklevel=3)
    return info


__all__ = ["CONTENDERS", "ONNX_KEYS", "ONNX_VARIANTS", "TORCH_KEYS", "GpuUnavailableWarning", "run_bench"]
