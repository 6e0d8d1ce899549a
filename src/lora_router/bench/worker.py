"""A fresh process that loads one contender and answers: cold start and resident memory.

Run as ``python -m lora_router.bench.worker SPEC.json OUT.json T0``; ``T0`` is
the parent's ``time.time()`` just before it started this process, so the cold
start includes the interpreter's own start-up and every import. Results go
to ``OUT.json``. An ONNX contender never imports torch here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, in MB (MiB)."""
    current = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        import resource

        peak = current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(current, 1), round(peak, 1)


def measure(spec: dict, t0: float) -> dict:
    """Load, answer once (cold start), answer ``repeats`` more times, read the memory."""
    mode = spec.get("mode", "ask")
    if mode == "import_torch":
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        return _done(t0, spec)
    if mode == "import_onnx":
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        return _done(t0, spec)

    from ..core.chain import Chain
    from ..tasks import get_task
    from .contenders import TORCH_KEYS, load_contender
    from .fixture import bench_chain

    key = spec["key"]
    if key in TORCH_KEYS:
        import torch

        torch.set_num_threads(spec["threads"])
    chain = Chain.from_dict(bench_chain({t: get_task(t) for t in spec["chain_tasks"]}, tuple(spec["chain_tasks"])))
    t_load = time.time()
    contender = load_contender(
        key, base_dir=Path(spec["base_dir"]), hub_dir=Path(spec["hub_dir"]),
        export_dir=Path(spec["export_dir"]) if spec.get("export_dir") else None, tasks=spec["tasks"], chain=chain,
        device=spec["device"], fp16=spec.get("fp16", False), threads=spec["threads"],
    )
    loaded = time.time()

    def answer() -> None:
        if mode == "predict":
            contender.predict_batch(spec["chain_tasks"][0], [spec["text"]])
        else:
            contender.ask(spec["text"])

    answer()
    first = time.time()
    rss_first, _ = rss_mb()
    for _ in range(spec.get("repeats", 3)):
        answer()
    out = _done(t0, spec)
    out.update(cold_start_s=round(first - t0, 4), import_s=round(t_load - t0, 4), load_s=round(loaded - t_load, 4),
               rss_first_answer_mb=rss_first)
    return out


def _done(t0: float, spec: dict) -> dict:
    current, peak = rss_mb()
    return {"key": spec.get("key"), "mode": spec.get("mode", "ask"), "rss_mb": current, "peak_rss_mb": peak,
            "wall_s": round(time.time() - t0, 4), "torch_imported": "torch" in sys.modules}


def main(argv: list[str]) -> int:
    spec_path, out_path, t0 = argv[0], argv[1], float(argv[2])
    spec = json.loads(Path(spec_path).read_text("utf-8"))
    result = measure(spec, t0)
    Path(out_path).write_text(json.dumps(result), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
