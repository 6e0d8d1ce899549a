"""Interleaved timing: every contender measured in the same rounds, so drift hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def interleaved(fns: dict[str, Callable[[], object]], runs: int | dict[str, int], warmup: int = 3) -> dict[str, list]:
    """Seconds of each timed call of every function, measured in rounds.

    Round ``r`` calls every function once, starting at a different one each
    round. ``runs`` may be per key: a key with fewer runs sits out the later
    rounds. Warm-up calls are made the same way and not kept.
    """
    per_key = runs if isinstance(runs, dict) else {k: runs for k in fns}
    keys = list(fns)
    for _ in range(warmup):
        for k in keys:
            fns[k]()
    times: dict[str, list] = {k: [] for k in keys}
    for r in range(max(per_key.values(), default=0)):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            if len(times[k]) >= per_key[k]:
                continue
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def summary(seconds: list) -> dict:
    """p50/p90/p99, mean, min and max in milliseconds, and the number of runs."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1000.0
    values = zip(("p50", "p90", "p99", "mean", "min", "max"), [*np.percentile(ms, [50, 90, 99]), ms.mean(), ms.min(),
                                                                ms.max()], strict=True)
    return {"n": int(ms.size), **{f"{name}_ms": round(float(v), 3) for name, v in values}}


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median milliseconds of ``runs`` calls of ``fn`` (no warm-up), to 0.01 ms."""
    return round(statistics.median(interleaved({"fn": fn}, runs, warmup=0)["fn"]) * 1000, 2)
