"""Shared layout: one encoder graph whose LoRA matrices are inputs, one adapter file per task.

Optimum exports the plain base ``BertModel`` (with ``pooler_output`` added to
its outputs); then, for every module some task's LoRA targets, the graph gets
a LoRA branch next to the module's MatMul::

    y = X @ W  (+ b)           ->   y = X @ W (+ b) + (X @ A) @ B

``A`` (in x r) and ``B`` (r x out, LoRA scaling folded in) are graph inputs
that also have zero initializers of the same name: no adapter gives the base
model, and onnxruntime's multi-LoRA (``LoraAdapter`` +
``RunOptions.add_active_adapter``) feeds a task's matrices from its
``.onnx_adapter`` file without copying. The modules are found by their
weights (the exported initializer equals the PyTorch weight exactly), not by
node names, which depend on the exporter. The parity gate then checks the
result against PyTorch (docs/performance.md: a hand-written LoRA export once traced
a graph that did not match).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import SPAN_EXTRACTION, TaskSpec
from ..errors import ExportError
from ..modeling.heads import HEAD_FILE

LORA_NODE_PREFIX = "/lora/"


@dataclass
class LoraMatrices:
    """One module's LoRA of one task: ``A`` (in x r) and ``B`` (r x out, scaled)."""

    module: str
    a: np.ndarray
    b: np.ndarray

    @property
    def rank(self) -> int:
        return self.a.shape[1]


def lora_ranks(loras: dict[str, dict[str, LoraMatrices]]) -> dict[str, int]:
    """Per module, the largest rank any task's LoRA has there (``loras``: task -> module path -> matrices)."""
    ranks: dict[str, int] = {}
    for matrices in loras.values():
        for module, m in matrices.items():
            ranks[module] = max(ranks.get(module, 0), m.rank)
    return ranks


def input_names(module: str) -> tuple[str, str]:
    return f"lora.{module}.A", f"lora.{module}.B"


def lora_matrices(peft_model, task: str) -> dict[str, LoraMatrices]:
    """The LoRA matrices of a loaded adapter (before merging), by base module path."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, LoraMatrices] = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        key = next(iter(module.lora_A), None)
        if key is None:
            continue
        path = name.removeprefix("base_model.model.")
        if module.use_dora.get(key, False):
            raise ExportError(f"task {task!r}: its adapter uses DoRA on {path}, which the shared layout cannot "
                              "express as two input matrices; export with layout='merged'")
        a_layer, b_layer = module.lora_A[key], module.lora_B[key]
        if not hasattr(a_layer, "weight") or a_layer.weight.dim() != 2 or getattr(b_layer, "bias", None) is not None:
            raise ExportError(f"task {task!r}: its adapter on {path} is not a plain linear LoRA; "
                              "export with layout='merged'")
        scaling = float(module.scaling[key])
        a = a_layer.weight.detach().float().numpy().T
        b = (b_layer.weight.detach().float().numpy().T * scaling).astype(np.float32)
        out[path] = LoraMatrices(path, np.ascontiguousarray(a), np.ascontiguousarray(b))
    config = next(iter(peft_model.peft_config.values()))
    if getattr(config, "modules_to_save", None) or getattr(config, "bias", "none") != "none":
        raise ExportError(f"task {task!r}: its adapter also trains whole modules or biases "
                          f"(modules_to_save={config.modules_to_save}, bias={config.bias!r}), which the shared layout "
                          "does not carry; export with layout='merged'")
    if not out:
        raise ExportError(f"task {task!r}: its adapter has no LoRA layers; train it again")
    return out


def export_encoder(base, out_dir: Path, *, opset: int | None = None) -> None:
    """The plain base encoder to ONNX with Optimum, outputs ``last_hidden_state`` and ``pooler_output``."""
    from optimum.exporters.onnx.model_configs import BertOnnxConfig

    from .merged import export_onnx

    class EncoderOnnxConfig(BertOnnxConfig):
        @property
        def outputs(self):
            return {"last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}}

    if getattr(base.config, "add_pooling_layer", True) is False or base.pooler is None:
        raise ExportError("the base model has no pooler; the shared layout needs BertModel with its pooler")
    config = EncoderOnnxConfig(copy.deepcopy(base.config), task="feature-extraction")
    export_onnx(base, out_dir, "feature-extraction", opset=opset, custom_onnx_configs={"model": config})


def add_lora_inputs(model_path: Path, base_state: dict[str, np.ndarray], ranks: dict[str, int]) -> list[str]:
    """Rewrite ``model_path`` with a LoRA branch for each module in ``ranks``; return the new node names.

    ``base_state`` maps a module path to its PyTorch weight (out x in).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    branches: dict[str, list] = {}
    for module, rank in sorted(ranks.items()):
        w = base_state[module]
        node = _find_linear(graph, weights, w, module)
        x, y = node.input[0], node.output[0]
        a_name, b_name = input_names(module)
        n_in, n_out = w.shape[1], w.shape[0]
        graph.initializer.extend([numpy_helper.from_array(np.zeros((n_in, rank), np.float32), a_name),
                                  numpy_helper.from_array(np.zeros((rank, n_out), np.float32), b_name)])
        graph.input.extend([helper.make_tensor_value_info(a_name, TensorProto.FLOAT, [n_in, rank]),
                            helper.make_tensor_value_info(b_name, TensorProto.FLOAT, [rank, n_out])])
        p = f"{LORA_NODE_PREFIX}{module}/"
        merged = f"{p}output"
        for consumer, i in consumers.get(y, []):
            consumer.input[i] = merged
        if any(out.name == y for out in graph.output):
            raise ExportError(f"LoRA module {module!r} feeds a graph output directly; not supported")
        nodes = [helper.make_node("MatMul", [x, a_name], [f"{p}xa"], name=f"{p}MatMul_A"),
                 helper.make_node("MatMul", [f"{p}xa", b_name], [f"{p}xab"], name=f"{p}MatMul_B"),
                 helper.make_node("Add", [y, f"{p}xab"], [merged], name=f"{p}Add")]
        branches[y] = nodes
    ordered = [n for node in graph.node for n in (node, *branches.get(node.output[0], ()))]  # a branch after its linear
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))
    return [n.name for nodes in branches.values() for n in nodes]


def _find_linear(graph, weights: dict, w: np.ndarray, module: str):
    """The MatMul (weight stored as W^T) or Gemm (transB=1, W) that applies ``w``."""
    from onnx import helper, numpy_helper

    hits = []
    for node in graph.node:
        if len(node.input) < 2 or node.input[1] not in weights:
            continue
        init = weights[node.input[1]]
        if node.op_type == "MatMul":
            expect = w.T
        elif node.op_type == "Gemm" and {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("transB"):
            expect = w
        else:
            continue
        if tuple(init.dims) == expect.shape and np.array_equal(numpy_helper.to_array(init), expect):
            hits.append(node)
    if len(hits) != 1:
        raise ExportError(
            f"found {len(hits)} nodes applying the weight of {module!r} in the exported encoder (expected 1); "
            "the shared layout cannot place its LoRA; export with layout='merged'"
        )
    return hits[0]


def lora_inputs(matrices: dict[str, LoraMatrices], ranks: dict[str, int]) -> dict[str, np.ndarray]:
    """A task's LoRA matrices as the shared encoder's inputs, zero-padded to its rank per module."""
    params = {}
    for module, m in matrices.items():
        pad = ranks[module] - m.rank  # zero columns of A and rows of B add nothing
        a_name, b_name = input_names(module)
        params[a_name] = np.pad(m.a, ((0, 0), (0, pad)))
        params[b_name] = np.pad(m.b, ((0, pad), (0, 0)))
    return params


def write_adapter(path: Path, matrices: dict[str, LoraMatrices], ranks: dict[str, int]) -> None:
    """A task's ``.onnx_adapter``: its matrices, zero-padded to the encoder's rank per module."""
    import onnxruntime as ort

    params = {name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in lora_inputs(matrices, ranks).items()}
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.export_adapter(str(path))


def head_reads(spec: TaskSpec) -> str:
    """The encoder output a task's head reads (like BertForTokenClassification / ...SequenceClassification)."""
    return "last_hidden_state" if spec.kind == SPAN_EXTRACTION else "pooler_output"


def write_head(path: Path, task_dir: Path) -> None:
    """The head as numpy arrays (``weight``: out x hidden, ``bias``)."""
    from safetensors.numpy import load_file

    state = load_file(str(task_dir / HEAD_FILE))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, weight=state["classifier.weight"].astype(np.float32),
                 bias=state["classifier.bias"].astype(np.float32))
