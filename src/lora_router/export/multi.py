"""One-call layouts: every task of an export in one encoder graph, one row per (task, text).

The graph takes the texts once and says per row which text and which task it is::

    input_ids, attention_mask, token_type_ids   [texts, seq]
    row_text, row_task                          [rows]     (int64)
    -> last_hidden_state [rows, seq, hidden], pooler_output [rows, hidden]

Every LoRA'd linear layer carries all tasks' matrices side by side, as
constants: ``A_all`` (in x T*R: task t's ``A`` in columns t*R..t*R+r) and
``B_all`` (T*R x out, LoRA scaling folded in). A row's task picks its block
with a 0/1 mask, so per row::

    y = x @ W + b + ((x @ A_all) * mask[row_task]) @ B_all  ==  x @ W + b + (x @ A_t) @ B_t

(the other tasks' blocks add exact zeros). Rows of different tasks therefore
run in one ``session.run``. The LoRA matrices being constants, not inputs,
nothing is copied per call and the int8 quantiser may treat them like any
other weight. (The alternative, per-row LoRA matrices fed as a leading batch
dimension of MatMul inputs, copies rows x 2 matrices per module and call and
keeps the LoRA path float.)

Layout ``multi`` gathers the rows right after the embeddings. Layout
``trunk`` runs the layers below every task's lowest LoRA layer once per text
(the trunk) and gathers the rows after it: a question going through three
tasks pays for the trunk once. It needs every task's adapter to leave the
lower layers alone (``train --layers 6-11``).

A leaner graph than the plain export: each layer's attention core
(softmax(QK^T/sqrt(d) + mask)V over the heads) is one onnxruntime
``com.microsoft.MultiHeadAttention`` node instead of some 25 reshape,
transpose, shape and matmul nodes, and it stays float under int8 (the plain
int8 export quantises the two activation-by-activation matmuls of attention
as well). The graph therefore needs onnxruntime, which is what runs it.

The graph is traced from the base's own PyTorch modules (embeddings, layers,
pooler), and the parity gate compares it with the PyTorch router, with the
merged models, and mixed-task batches with single-task ones.
"""

from __future__ import annotations

import copy
import functools
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ExportError
from .shared import LoraMatrices, lora_ranks

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "row_text", "row_task")
OUTPUTS = ("last_hidden_state", "pooler_output")
DEFAULT_OPSET = 17
MS_DOMAIN = "com.microsoft"
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def lowest_layer(module: str) -> int:
    """The encoder layer a module path is in; -1 before the layers (embeddings), a large number after."""
    m = _LAYER.match(module)
    if m:
        return int(m.group(1))
    return -1 if module.startswith("embeddings") else 1 << 30


def trunk_layers(loras: dict[str, dict[str, LoraMatrices]], num_layers: int) -> int:
    """How many lower layers no task adapts: the trunk. ``ExportError`` naming the tasks when none.

    ``loras``: task -> module path -> matrices.
    """
    lowest = {t: min(lowest_layer(m) for m in mats) for t, mats in loras.items()}
    offenders = [t for t, low in lowest.items() if low <= 0]
    if offenders or not lowest:
        listed = ", ".join(repr(t) for t in offenders)
        raise ExportError(
            f"the trunk layout needs every task to leave the lower layers alone, but task(s) {listed} put LoRA on "
            f"layer 0 (or the embeddings) of {num_layers}; retrain with upper layers only (lora-router train "
            f"--task {offenders[0] if offenders else 'TASK'} --layers {num_layers // 2}-{num_layers - 1}), "
            "or export without layout 'trunk'"
        )
    return min(min(lowest.values()), num_layers)


def check_trunk_hub(hub, names) -> None:
    """Refuse the trunk layout before any work when a task's adapter puts LoRA on layer 0 (or on all layers)."""
    import json

    offenders = {}
    for t in names:
        try:
            config = json.loads((hub.task_dir(t) / "adapter_config.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue  # lora_matrices reads the adapter itself and trunk_layers checks again
        layers = config.get("layers_to_transform")
        layers = [layers] if isinstance(layers, int) else layers
        if not layers:
            offenders[t] = "all layers"
        elif 0 in layers:
            offenders[t] = "layers " + ",".join(str(i) for i in sorted(layers))
    if offenders:
        listed = ", ".join(f"{t!r} ({where})" for t, where in offenders.items())
        raise ExportError(
            f"the trunk layout needs every task to leave the lower layers alone, but task(s) {listed} put LoRA on "
            f"layer 0; retrain with upper layers only (lora-router train --task {next(iter(offenders))} "
            "--layers 6-11 on bert-base's 12 layers), or export without layout 'trunk'"
        )


def task_order(loras: dict[str, dict[str, LoraMatrices]]) -> list[str]:
    """Row task ids are indices into this list."""
    return list(loras)


def build_module(base, loras: dict[str, dict[str, LoraMatrices]], trunk: int):
    """The torch module traced into the one-call graph (``trunk`` = 0 for layout multi)."""
    import torch

    multi_lora_linear, one_call_encoder = _modules()
    tasks = task_order(loras)
    ranks = lora_ranks(loras)
    widths = sorted(set(ranks.values()))
    model = copy.deepcopy(base).eval()
    for module, rank in ranks.items():
        linear = model.get_submodule(module)  # the adapter was loaded onto this base: its modules are there
        if not isinstance(linear, torch.nn.Linear):
            raise ExportError(f"LoRA on {module!r} ({type(linear).__name__}) is not on a linear layer; "
                              "export with layout='merged'")
        n_in, n_out = linear.in_features, linear.out_features
        a_all = np.zeros((n_in, len(tasks) * rank), np.float32)
        b_all = np.zeros((len(tasks) * rank, n_out), np.float32)
        for i, t in enumerate(tasks):
            m = loras[t].get(module)
            if m is not None:
                a_all[:, i * rank : i * rank + m.rank] = m.a
                b_all[i * rank : i * rank + m.rank, :] = m.b
        parent, _, child = module.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child,
                multi_lora_linear(linear, a_all, b_all, widths.index(rank)))
    # Per width: row t of the mask is 1 on task t's block of columns (t*rank .. t*rank+rank-1), 0 elsewhere.
    masks = [np.repeat(np.eye(len(tasks), dtype=np.float32), rank, axis=1) for rank in widths]
    return one_call_encoder(model, masks, trunk)


@functools.cache
def _modules():
    """The torch classes, defined once on first use (torch is imported only at export)."""
    import torch
    from torch import nn

    class MultiLoraLinear(nn.Module):
        def __init__(self, base: nn.Linear, a_all: np.ndarray, b_all: np.ndarray, mask_index: int):
            super().__init__()
            self.base = base
            self.multi_lora = Lora(a_all, b_all)
            self.mask_index = mask_index
            self.masks: list | None = None  # set by the encoder for each forward

        def forward(self, x):
            return self.base(x) + self.multi_lora(x, self.masks[self.mask_index])

    class Lora(nn.Module):
        def __init__(self, a_all: np.ndarray, b_all: np.ndarray):
            super().__init__()
            self.register_buffer("a", torch.from_numpy(a_all))
            self.register_buffer("b", torch.from_numpy(b_all))

        def forward(self, x, mask):
            return torch.matmul(torch.matmul(x, self.a) * mask, self.b)

    class Attention(torch.autograd.Function):
        """Scaled dot-product attention over the heads; exported as one com.microsoft MultiHeadAttention."""

        @staticmethod
        def forward(ctx, q, k, v, padding_mask, num_heads: int):
            b, s, d = q.shape

            def heads(x):
                return x.view(b, s, num_heads, d // num_heads).transpose(1, 2)

            bias = (1.0 - padding_mask[:, None, None, :].to(q.dtype)) * torch.finfo(q.dtype).min
            out = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=bias)
            return out.transpose(1, 2).reshape(b, s, d)

        @staticmethod
        def symbolic(g, q, k, v, padding_mask, num_heads: int):
            # inputs: query, key, value, (bias), key_padding_mask; the empty bias is put in after export
            out = g.op(f"{MS_DOMAIN}::MultiHeadAttention", q, k, v, padding_mask, num_heads_i=num_heads)
            out.setType(q.type())  # same shape and type as the query
            return out

    class FusedSelfAttention(nn.Module):
        """BERT self-attention whose softmax(QK^T/sqrt(d) + mask)V is one fused node; takes a 0/1 padding mask."""

        def __init__(self, original):
            super().__init__()
            self.query, self.key, self.value = original.query, original.key, original.value
            self.num_heads = original.num_attention_heads

        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            q, k, v = self.query(hidden_states), self.key(hidden_states), self.value(hidden_states)
            return Attention.apply(q, k, v, attention_mask, self.num_heads), None

    class OneCallEncoder(nn.Module):
        def __init__(self, bert, masks: list[np.ndarray], trunk: int):
            super().__init__()
            self.bert = bert
            self.trunk = trunk
            for i, mask in enumerate(masks):
                self.register_buffer(f"task_mask_{i}", torch.from_numpy(mask))
            self.n_masks = len(masks)
            self.lora_layers = [m for m in bert.modules() if isinstance(m, MultiLoraLinear)]
            for layer in bert.encoder.layer:
                layer.attention.self = FusedSelfAttention(layer.attention.self)

        def forward(self, input_ids, attention_mask, token_type_ids, row_text, row_task):
            masks = [getattr(self, f"task_mask_{i}").index_select(0, row_task).unsqueeze(1)
                     for i in range(self.n_masks)]
            for layer in self.lora_layers:
                layer.masks = masks
            bert = self.bert
            hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            extended = attention_mask.to(torch.int32)  # the fused attention takes the 0/1 padding mask
            layers = bert.encoder.layer
            for layer in layers[: self.trunk]:
                hidden = layer(hidden, attention_mask=extended)[0]
            hidden = hidden.index_select(0, row_text)
            extended = extended.index_select(0, row_text)
            for layer in layers[self.trunk :]:
                hidden = layer(hidden, attention_mask=extended)[0]
            return hidden, bert.pooler(hidden)

    return MultiLoraLinear, OneCallEncoder


def export_one_call(base, loras: dict[str, dict[str, LoraMatrices]], path: Path, *, trunk: int = 0,
                    opset: int | None = None) -> dict:
    """Trace the one-call encoder to ``path``; return what the manifest records about it.

    ``{"tasks", "trunk_layers", "lora_modules", "lora_ranks", "float_nodes"}``: ``float_nodes``
    are the nodes int8 quantisation must leave alone (the row -> task mask lookup: 0/1 values that
    feed every LoRA branch). The LoRA matrices themselves are quantised like the base weights.
    """
    import onnx
    import torch

    if getattr(base, "pooler", None) is None:
        raise ExportError("the base model has no pooler; the one-call layouts need BertModel with its pooler")
    module = build_module(base, loras, trunk)
    ids = torch.tensor([[101, 2769, 4638, 102], [101, 2769, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    example = (ids, mask, torch.zeros_like(ids), torch.tensor([0, 1, 0], dtype=torch.long),
               torch.tensor([0, 0, len(loras) - 1], dtype=torch.long))
    dynamic = {"input_ids": {0: "texts", 1: "sequence"}, "attention_mask": {0: "texts", 1: "sequence"},
               "token_type_ids": {0: "texts", 1: "sequence"}, "row_text": {0: "rows"}, "row_task": {0: "rows"},
               "last_hidden_state": {0: "rows", 1: "sequence"}, "pooler_output": {0: "rows"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=Warning, module=r"(torch|transformers)\.")
        torch.onnx.export(module, example, str(path), input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes=dynamic, opset_version=opset or DEFAULT_OPSET, do_constant_folding=True,
                          custom_opsets={MS_DOMAIN: 1}, dynamo=False)
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "MultiHeadAttention" and node.domain == MS_DOMAIN and len(node.input) == 4:
            node.input.insert(3, "")  # no fused projection bias: the mask is input 4, key_padding_mask
    onnx.save(model, str(path))
    onnx.checker.check_model(model)
    masks = {init.name for init in model.graph.initializer if init.name.startswith("task_mask_")}
    float_nodes = [n.name for n in model.graph.node if masks.intersection(n.input)]
    ranks = lora_ranks(loras)
    return {"tasks": task_order(loras), "trunk_layers": trunk, "lora_modules": sorted(ranks),
            "lora_ranks": ranks, "float_nodes": float_nodes}


def write_optimized(src: Path, dst: Path) -> dict:
    """``src`` as onnxruntime optimises it (fusions, level "extended"), saved to ``dst``; what the manifest records.

    Opening the saved graph skips most of a session's start-up (base size, int8: about 0.25 -> 0.1 s).
    The fusions are CPU kernels of this onnxruntime version: the runtime opens this file only on the
    CPU with the same version, and the plain graph otherwise.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return {"onnxruntime": ort.__version__, "level": "extended", "device": "cpu"}
