"""Static against dynamic int8 on the same merged model, in one run: is the default the faster one?

Static int8 (the export's default) calibrates activation scales once, so a row
never depends on its batch-mates; dynamic int8 computes a scale per call. The
bench exports the first chain task once more with ``int8_scheme="dynamic"``
(merged layout, no gate: the same weights) and times both models in
interleaved rounds: batch 1 at each length, and 3 rows of 16 tokens.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .timing import interleaved, summary

SCHEMES = ("static", "dynamic")


def scheme_comparison(base_dir: Path, hub_dir: Path, static_export: Path, work: Path, task: str,
                      texts: dict[int, str], *, threads: int, runs: int, warmup: int) -> dict:
    """p50 of one ``task`` step in each scheme, and dynamic's time over static's (>1: static is faster)."""
    from ..backends.onnx import OnnxRouter
    from .fixture import export_for_bench

    done = export_for_bench(base_dir, hub_dir, work / "onnx-dynamic", tasks=[task], layout="merged", gate=False,
                            int8_scheme="dynamic")
    if "error" in done:
        return {"error": done["error"]}
    routers = {scheme: OnnxRouter(folder, layout="merged", precision="int8", tasks=[task], threads=threads)
               for scheme, folder in (("static", static_export), ("dynamic", Path(done["dir"])))}
    shapes = {str(n): [texts[n]] for n in sorted(texts)}
    shapes[f"3x{min(texts)}"] = [texts[min(texts)]] * 3
    out: dict = {"task": task, "layout": "merged", "steps": {}}
    for shape, batch in shapes.items():
        fns = {scheme: partial(r.predict_batch, task, batch) for scheme, r in routers.items()}
        stats = {scheme: summary(t) for scheme, t in interleaved(fns, runs, warmup).items()}
        out["steps"][shape] = {**stats, "dynamic_over_static": round(stats["dynamic"]["p50_ms"]
                                                                     / stats["static"]["p50_ms"], 2)}
    return out
