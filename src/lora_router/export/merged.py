"""Merged layout: adapter merged into a copy of the base, head attached, ONNX through Optimum.

The result is a standard Transformers model (``BertForSequenceClassification``
or ``BertForTokenClassification``), so Optimum exports it as it exports any
BERT, and Optimum's ``ORTModelFor...`` classes load the folder it writes.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from ..config import BIO_LABELS, PAIR_RANKING, SPAN_EXTRACTION, TaskSpec
from ..errors import ExportError
from ..modeling.heads import HEAD_FILE


def optimum_task(spec: TaskSpec) -> str:
    return "token-classification" if spec.kind == SPAN_EXTRACTION else "text-classification"


def head_labels(spec: TaskSpec) -> list[str]:
    """Label names of the head's outputs, for the model's ``id2label``."""
    if spec.kind == SPAN_EXTRACTION:
        return list(BIO_LABELS)
    if spec.kind == PAIR_RANKING:
        return ["relevance"]
    return list(spec.labels)


def load_adapter(base, task_dir: Path):
    """``task_dir``'s PEFT adapter on a copy of ``base`` (the base itself stays untouched)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base), str(task_dir)).eval()


def merged_model(peft_model, task_dir: Path, spec: TaskSpec):
    """The adapter merged into its encoder (``merge_and_unload``), with the task's head, as a Transformers model."""
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification, BertForTokenClassification

    encoder = peft_model.merge_and_unload()
    config = copy.deepcopy(encoder.config)
    labels = head_labels(spec)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.finetuning_task = spec.name
    if spec.kind == PAIR_RANKING:
        config.problem_type = "regression"  # one relevance logit per (question, phrasing) pair
    per_token = spec.kind == SPAN_EXTRACTION
    cls = BertForTokenClassification if per_token else BertForSequenceClassification
    config.architectures = [cls.__name__]
    model = cls(config)
    state = encoder.state_dict()
    if per_token:  # BertForTokenClassification's encoder has no pooler
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    model.bert.load_state_dict(state, strict=True)
    head = load_file(str(task_dir / HEAD_FILE))  # {"classifier.weight", "classifier.bias"}, as in BertFor...
    model.load_state_dict(head, strict=False)
    missing = {"classifier.weight", "classifier.bias"} - set(head)
    if missing:
        raise ExportError(f"{task_dir / HEAD_FILE} lacks {sorted(missing)}; train the task again")
    return model.eval()


def export_onnx(model, out_dir: Path, task: str, *, opset: int | None = None, custom_onnx_configs=None,
                preprocessors=None) -> None:
    """``model`` to ``out_dir/model.onnx`` with Optimum; the folder also gets its config.json."""
    from optimum.exporters.onnx import onnx_export_from_model

    with warnings.catch_warnings():
        # TorchScript tracing warns about constants in the attention mask code; they are harmless here.
        warnings.filterwarnings("ignore", category=Warning, module=r"(torch|transformers|optimum)\.")
        # No Optimum validation: the parity gate checks far stricter, against the unmerged router.
        onnx_export_from_model(model, out_dir, task=task, opset=opset, do_validation=False,
                               custom_onnx_configs=custom_onnx_configs, preprocessors=preprocessors)
