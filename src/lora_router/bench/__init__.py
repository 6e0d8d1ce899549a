"""``lora-router bench``: one harness, four suites, over one fixture, worker, timing, environment and report.

- chain (``run_bench``): latency, memory, cold start and training of every way
  to answer (the original tool's PeftModel per task, the Router, PEFT mixed
  batches, the ONNX runtime) on a random model; results.json, results.md, chart.png;
- serve (``run_serve_bench``): ``lora-router serve`` under 1 to 32 clients;
- ray (``run_ray_bench``): Ray Serve against ``lora-router serve``;
- export figures (``run_export_figures``): sizes, memory, cold start and parity of an export.

torch is imported only when a benchmark runs; ``benchmarks/*.py`` are thin entry points.
"""

from .chain import GpuUnavailableWarning, run_bench
from .environment import BusyMachineWarning

__all__ = ["BusyMachineWarning", "GpuUnavailableWarning", "run_bench"]
