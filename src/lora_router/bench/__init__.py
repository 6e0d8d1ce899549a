"""``lora-router bench``: latency, memory, cold start and training of every way to answer.

``run_bench(size, device, out_dir)`` builds a random model and adapters,
times the contenders (the original tool's PeftModel per task, the Router,
PEFT mixed batches, the ONNX runtime) in one run and writes results.json,
results.md and chart.png. torch is imported only when a benchmark runs.
"""

from .load import BusyMachineWarning
from .run import GpuUnavailableWarning, run_bench

__all__ = ["BusyMachineWarning", "GpuUnavailableWarning", "run_bench"]
