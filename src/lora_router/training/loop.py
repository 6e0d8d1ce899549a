"""The torch pieces of training: a PEFT encoder with a task head, forward, evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, LoraSettings, TaskSpec
from ..core.results import extraction_result
from ..encoding import TextEncoder, char_spans
from ..evaluation.metrics import classification_metrics, span_metrics
from ..modeling.heads import TaskHead
from .examples import Example, collate


def add_lora(base, lora: LoraSettings):
    """Wrap the base encoder with a fresh LoRA adapter named ``default`` (on ``lora.layers`` only, when given)."""
    from peft import LoraConfig, get_peft_model

    from ..errors import ConfigError

    n_layers = base.config.num_hidden_layers
    if lora.layers and lora.layers[-1] >= n_layers:
        raise ConfigError(f"lora layers {list(lora.layers)} go past the base's {n_layers} layers; "
                          f"valid: 0-{n_layers - 1}")
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias="none",
                        layers_to_transform=list(lora.layers) or None, layers_pattern="layer" if lora.layers else None)
    return get_peft_model(base, config)


def to_tensors(arrays: dict[str, np.ndarray], device: str = "cpu") -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def forward(model, head: TaskHead, arrays: dict[str, np.ndarray], device: str = "cpu") -> torch.Tensor:
    """Logits of ``head`` over the encoder's output for a padded batch."""
    t = to_tensors({k: arrays[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, device)
    return head(model(**t))


def loss_fn(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.kind == SPAN_EXTRACTION:
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    if spec.kind == SEQUENCE_CLASSIFICATION:
        return torch.nn.functional.cross_entropy(logits, labels)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float())


@torch.no_grad()
def predict_logits(model, head, examples: Sequence[Example], encoder: TextEncoder, batch_size: int = 32) -> list:
    """Per-example logits (numpy), batched with dynamic padding."""
    was_training = model.training
    model.eval()
    head.eval()
    out = []
    for i in range(0, len(examples), batch_size):
        out.extend(forward(model, head, collate(examples[i : i + batch_size], encoder)).float().numpy())
    if was_training:
        model.train()
        head.train()
    return out


def evaluate_examples(spec: TaskSpec, model, head, examples: Sequence[Example], encoder: TextEncoder) -> dict:
    """Metrics of a classification or extraction task on encoded examples."""
    logits = predict_logits(model, head, examples, encoder)
    if spec.kind == SEQUENCE_CLASSIFICATION:
        gold = [int(e.target) for e in examples]  # type: ignore[arg-type]
        pred = [int(np.argmax(lg)) for lg in logits]
        return classification_metrics(gold, pred, spec.labels)
    gold_spans, pred_spans = [], []
    for e, lg in zip(examples, logits):
        text = e.record.input  # type: ignore[union-attr]
        gold_spans.append(char_spans(text, e.record.output))  # type: ignore[union-attr, arg-type]
        found = extraction_result(text, e.enc, lg)["spans"]
        pred_spans.append([(s["start"], s["end"]) for s in found])
    return span_metrics(gold_spans, pred_spans)
