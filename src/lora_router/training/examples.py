"""Training examples per task kind: token ids plus the target the loss needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION, TaskSpec
from ..data import Record
from ..encoding import IGNORE_INDEX, Encoded, TextEncoder, bio_labels, char_spans


@dataclass
class Example:
    enc: Encoded
    target: int | float | list[int]
    record: Record | None = None


def make_examples(spec: TaskSpec, records: Sequence[Record], encoder: TextEncoder) -> list[Example]:
    """Encode records of a classification or extraction task."""
    out = []
    for r in records:
        enc = encoder.encode(r.input, warn=False)
        if spec.kind == SEQUENCE_CLASSIFICATION:
            target: int | list[int] = spec.labels.index(r.output)  # type: ignore[arg-type]
        elif spec.kind == SPAN_EXTRACTION:
            target = bio_labels(enc, char_spans(r.input, r.output))  # type: ignore[arg-type]
        else:
            raise ValueError(f"make_examples does not build {spec.kind} examples")
        out.append(Example(enc, target, r))
    return out


def collate(batch: Sequence[Example], encoder: TextEncoder, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Pad a batch (to its longest unless ``pad_to``) and stack the targets."""
    arrays = encoder.pad([e.enc for e in batch], pad_to)
    first = batch[0].target
    if isinstance(first, list):  # per-token labels, padding ignored by the loss
        labels = np.full(arrays["input_ids"].shape, IGNORE_INDEX, dtype=np.int64)
        for i, e in enumerate(batch):
            labels[i, : len(e.target)] = e.target  # type: ignore[arg-type]
    else:  # a float relevance (pair ranking) or a class index
        labels = np.asarray([e.target for e in batch], dtype=np.float32 if isinstance(first, float) else np.int64)
    arrays["labels"] = labels
    return arrays
