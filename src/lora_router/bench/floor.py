"""The floor: how fast this machine could run one encoder step at best, measured here and now.

Two limits bound an int8 step of a BERT encoder, whatever the software:

* **compute**: its multiply-adds (the linear layers' weights times the
  tokens, plus attention's scores and mixing) at this machine's int8 matmul
  peak, measured as a large onnxruntime ``MatMulInteger`` (uint8 x int8, the
  kernel int8 models run) on the threads the contenders use;
* **memory**: its int8 weights read once, at this machine's memory bandwidth,
  measured as a copy of an array far larger than the caches (numpy, one
  chunk per thread; a copy reads and writes each byte).

The floor of a step is the larger of the two: neither can be hidden behind
the other. Both limits take the best of their runs, not the median: a limit
is what the machine can do, and other work on a shared machine only ever
slows a run down. A contender's step or chain divided by it says how far there is
left to go, on the same machine in the same run.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GEMM_SHAPE = (512, 768, 3072)  # M x K x N: a bert-base feed-forward layer over 512 tokens, 2.4 G operations
COPY_MB = 256
RUNS = 15


def int8_matmul_peak(threads: int, runs: int = RUNS, shape: tuple[int, int, int] = GEMM_SHAPE) -> dict:
    """Operations per second (a multiply-add counts 2) of onnxruntime's int8 GEMM, best of ``runs`` calls."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ..backends.onnx.sessions import session_options

    m, k, n = shape
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    seconds = _best_seconds(lambda: session.run(None, {"a": a}), runs)
    return {"gops": round(2 * m * k * n / seconds / 1e9, 1), "shape_mkn": [m, k, n], "best_ms": round(seconds * 1e3, 3),
            "runs": runs, "threads": threads, "kernel": "onnxruntime MatMulInteger, uint8 x int8"}


def memory_bandwidth(threads: int, runs: int = RUNS, megabytes: int = COPY_MB) -> dict:
    """Bytes per second moved by copying a ``megabytes`` array (read + write), one chunk per thread."""
    n = megabytes * 2**20
    src = np.ones(n, dtype=np.uint8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, threads + 1, dtype=np.int64)
    chunks = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(threads) as pool:  # np.copyto releases the GIL: the chunks copy in parallel
        seconds = _best_seconds(lambda: list(pool.map(lambda c: np.copyto(*c), chunks)), runs)
    return {"gb_per_s": round(2 * n / seconds / 1e9, 2), "array_mb": megabytes, "best_ms": round(seconds * 1e3, 3),
            "runs": runs, "threads": threads, "method": "numpy copy, read + write counted"}


def step_work(hidden: int, layers: int, intermediate: int, tokens: int) -> dict:
    """Operations (a multiply-add counts 2) and int8 weight bytes of one encoder step over ``tokens`` tokens."""
    per_layer_weights = 4 * hidden * hidden + 2 * hidden * intermediate  # q, k, v, output; feed-forward in and out
    linear = 2 * tokens * per_layer_weights * layers
    attention = 2 * 2 * tokens * tokens * hidden * layers  # scores QK^T and mixing by V
    return {"operations": linear + attention, "weight_bytes": per_layer_weights * layers}


def floor(config: dict, threads: int, lengths: tuple[int, ...] = (16, 64), runs: int = RUNS) -> dict:
    """This machine's peak and bandwidth, and the floor in ms of one step at each of ``lengths`` tokens.

    ``config``: the encoder's ``hidden_size``, ``num_hidden_layers`` and ``intermediate_size``.
    """
    peak = int8_matmul_peak(threads, runs)
    bandwidth = memory_bandwidth(threads, runs)
    steps = {}
    for tokens in lengths:
        work = step_work(config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"], tokens)
        compute_ms = work["operations"] / (peak["gops"] * 1e9) * 1e3
        memory_ms = work["weight_bytes"] / (bandwidth["gb_per_s"] * 1e9) * 1e3
        steps[str(tokens)] = {**work, "compute_ms": round(compute_ms, 3), "memory_ms": round(memory_ms, 3),
                              "floor_ms": round(max(compute_ms, memory_ms), 3),
                              "bound": "compute" if compute_ms >= memory_ms else "memory"}
    return {"int8_matmul": peak, "memory": bandwidth, "step": steps,
            "encoder": {k: config[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size")}}


def versus_floor(results: dict) -> dict:
    """Each contender's step (batch 1, p50, mean over the chain's tasks) and chain as multiples of the floor.

    ``step_16``, ``step_64``: a step at that many tokens / the floor of one step there.
    ``chain``: the 3-step chain on a 16-token question / the floor of one 16-token step.
    """
    fl = results.get("floor") or {}
    step_floor = {n: s["floor_ms"] for n, s in fl.get("step", {}).items()}
    out = {}
    for key, by_task in results["per_task_latency"].items():
        row = {}
        for n, floor_ms in step_floor.items():
            values = [by_len[n]["p50_ms"] for by_len in by_task.values() if by_len.get(n, {}).get("n")]
            if values and floor_ms:
                row[f"step_{n}"] = round(statistics.mean(values) / floor_ms, 2)
        chain = results["chain_latency"].get(key, {})
        if chain.get("n") and step_floor.get("16"):
            row["chain"] = round(chain["p50_ms"] / step_floor["16"], 2)
        out[key] = row
    return out


def _best_seconds(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
