"""Static int8: activation scales calibrated once on the task's training texts, so a row never depends on its batch.

Dynamic int8 (``quantize.py``) takes one activation scale per call, from the
whole batch: a row's answer then moves with its batch-mates, and every MatMul
pays for scanning its input at run time. Here each MatMul with a constant
weight becomes onnxruntime's ``MatMulIntegerToFloat`` (the kernel dynamic int8
runs too) fed by a ``QuantizeLinear`` with a fixed scale and zero point::

    x -> QuantizeLinear(scale_x, zp_x) -> uint8 --+
                                                  MatMulIntegerToFloat -> float y
    W -> int8, one scale per output column  ------+

Every step is elementwise or exact integer arithmetic, so a row gets the same
bits alone or in any batch (``tests/test_static_int8.py``). The scales come
from running the float graph on calibration inputs (min and max of each
quantised tensor over every calibration batch). The word embeddings are
stored int8 too (``Gather`` of int8 rows, then ``DequantizeLinear``), as the
dynamic export does, so the file and the memory stay the size of the dynamic
one's. Nodes named in ``exclude`` stay float (the shared layout's LoRA branch,
the one-call layouts' task masks).

This is a pass of its own rather than onnxruntime's ``quantize_static``: on
these versions its QDQ output also quantises the residual path (the
``QuantizeLinear``/``DequantizeLinear`` pair on a layer's input feeds the
residual ``Add``) and attention's activation-by-activation MatMuls, and its
QOperator output re-quantises every MatMul output to uint8; both cost
accuracy, and neither is faster (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ExportError

MS_DOMAIN = "com.microsoft"
# CPUs whose int8 kernel (VPMADDUBSW, no VNNI) can saturate 16-bit sums: weights keep 7 bits there, as
# onnxruntime's reduce_range advises.
REDUCED_RANGE_TARGETS = ("avx2", "avx512")
# A Gather of a float table at least this large (the word embeddings) is stored int8.
GATHER_MIN_ELEMENTS = 1 << 20
CALIBRATION_BATCH = 16


def quantize_static_int8(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]], *,
                         target: str = "avx512_vnni", exclude: Iterable[str] = ()) -> dict:
    """``src`` (float ONNX) -> ``dst`` with static int8 MatMuls; return what the manifest records about it.

    ``calibration``: feeds of ``src``'s inputs (padded batches of the task's own
    training texts). ``ExportError`` when it is empty or the graph has no
    MatMul to quantise.
    """
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    skip = set(exclude)
    weights = {init.name: init for init in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.name not in skip and n.input[1] in weights
               and len(weights[n.input[1]].dims) == 2]
    if not matmuls:
        raise ExportError(f"{src}: no MatMul with a constant weight to quantise")
    activations = sorted({n.input[0] for n in matmuls})
    ranges = calibrate(model, activations, calibration)
    weight_max = 63 if target in REDUCED_RANGE_TARGETS else 127
    _rewrite(model, matmuls, ranges, weight_max)
    gathers = _quantize_gathers(model, skip)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))
    _drop_unused_initializers(model)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"matmuls": len(matmuls), "activation_tensors": len(activations), "gathers": gathers,
            "weight_bits": 8 if weight_max == 127 else 7}


def calibrate(model, tensors: list[str], feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(min, max) of each of ``tensors`` over every calibration feed, running ``model`` in onnxruntime."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in tensors if t not in known)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    # the shared encoder's LoRA matrices are initializers that a feed may override (onnxruntime lists them apart)
    inputs = {i.name for i in (*session.get_inputs(), *session.get_overridable_initializers())}
    low = dict.fromkeys(tensors, np.inf)
    high = dict.fromkeys(tensors, -np.inf)
    seen = 0
    for feed in feeds:
        values = session.run(tensors, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(tensors, values):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
        seen += 1
    if not seen:
        raise ExportError("static int8 needs calibration inputs (the task's training texts), and got none")
    return {t: (low[t], high[t]) for t in tensors}


def activation_scale(low: float, high: float) -> tuple[float, int]:
    """uint8 scale and zero point covering [low, high] (and 0, which must be exact)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0
    if not np.isfinite(scale) or scale <= 0.0:
        return 1.0, 0
    return float(np.float32(scale)), int(np.clip(round(-low / scale), 0, 255))


def weight_scales(w: np.ndarray, weight_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output column: int8 weights (symmetric, zero point 0) and their float32 scales."""
    scale = np.abs(w).max(axis=0) / weight_max
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -weight_max, weight_max).astype(np.int8)
    return q, scale


def _rewrite(model, matmuls, ranges: dict[str, tuple[float, float]], weight_max: int) -> None:
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    # the exporter often reads a bias through an Identity of its initializer
    constants = dict(weights)
    constants.update({n.output[0]: weights[n.input[0]] for n in graph.node
                      if n.op_type == "Identity" and n.input[0] in weights})
    quantized: dict[str, str] = {}  # float tensor -> its uint8 tensor (Q, K and V share one)
    new_inits, q_nodes, replace, dropped = [], {}, {}, set()
    for node in matmuls:
        x = node.input[0]
        if x not in quantized:
            scale, zp = activation_scale(*ranges[x])
            base = f"{x}_static_q"
            new_inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{base}.scale"),
                          numpy_helper.from_array(np.array(zp, np.uint8), f"{base}.zero_point")]
            q_nodes[x] = helper.make_node("QuantizeLinear", [x, f"{base}.scale", f"{base}.zero_point"], [base],
                                          name=f"{base}/QuantizeLinear")
            quantized[x] = base
        w_name = node.input[1]
        q, scale = weight_scales(numpy_helper.to_array(weights[w_name]).astype(np.float32), weight_max)
        new_inits += [numpy_helper.from_array(q, f"{w_name}_int8"), numpy_helper.from_array(scale, f"{w_name}_scale")]
        xq = quantized[x]
        inputs = [xq, f"{w_name}_int8", f"{xq}.scale", f"{w_name}_scale", f"{xq}.zero_point"]
        outputs = list(node.output)
        bias_add = _bias_add(node, consumers, constants, graph_outputs, q.shape[1])
        if bias_add is not None:  # the bias goes into the kernel, as onnxruntime fuses it for dynamic int8
            add, bias = bias_add
            inputs += ["", bias]  # no weight zero point (symmetric), then the bias
            outputs = list(add.output)
            dropped.add(id(add))
        replace[id(node)] = helper.make_node("MatMulIntegerToFloat", inputs, outputs,
                                             name=f"{node.name}_static_int8", domain=MS_DOMAIN)
    ordered = []
    placed: set[str] = set()
    for node in graph.node:
        if id(node) in dropped:
            continue
        new = replace.get(id(node))
        if new is not None:
            x = node.input[0]
            if x not in placed:  # the QuantizeLinear right before the first MatMul that reads it
                ordered.append(q_nodes[x])
                placed.add(x)
            ordered.append(new)
        else:
            ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)


def _bias_add(node, consumers: dict, constants: dict, graph_outputs: set, width: int):
    """``(add, bias tensor)`` when the MatMul's only reader adds a constant bias of its width; else None."""
    y = node.output[0]
    readers = consumers.get(y, [])
    if y in graph_outputs or len(readers) != 1 or readers[0].op_type != "Add":
        return None
    add = readers[0]
    other = add.input[1] if add.input[0] == y else add.input[0]
    init = constants.get(other)
    if init is None or tuple(init.dims) != (width,) or init.data_type != 1:
        return None
    return add, other


def _quantize_gathers(model, skip: set[str]) -> int:
    """Large float tables read by Gather (the word embeddings) stored int8 with one scale; how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    count, ordered = 0, []
    for node in graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" and node.name not in skip else None
        if table is None or table.data_type != 1 or int(np.prod(table.dims)) < GATHER_MIN_ELEMENTS:
            ordered.append(node)
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        scale = float(np.abs(w).max() / 127) or 1.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        name = table.name
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                  numpy_helper.from_array(np.array(scale, np.float32), f"{name}_int8.scale"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{name}_int8.zero_point")])
        gathered = f"{node.output[0]}_int8"
        ordered.append(helper.make_node("Gather", [f"{name}_int8", node.input[1]], [gathered],
                                        name=f"{node.name}_int8", **{a.name: helper.get_attribute_value(a)
                                                                     for a in node.attribute}))
        ordered.append(helper.make_node("DequantizeLinear", [gathered, f"{name}_int8.scale", f"{name}_int8.zero_point"],
                                        list(node.output), name=f"{node.name}_dequantize"))
        count += 1
    del graph.node[:]
    graph.node.extend(ordered)
    return count


def _drop_unused_initializers(model) -> None:
    """The float weights that were replaced by their int8 copies."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
