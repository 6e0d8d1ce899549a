"""Text to model inputs and back, with ``tokenizers`` and numpy only (no torch).

Shared by training, the PyTorch router and the torch-free ONNX runtime, so the
three tokenise, pad and decode spans the same way. Offsets come from the fast
tokenizer's offset mapping, so a span's ``text == input[start:end]`` exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from .config import BIO_LABELS
from .errors import InputError

IGNORE_INDEX = -100
TOKENIZER_FILE = "tokenizer.json"


class TruncationWarning(UserWarning):
    """An input longer than the model takes was cut."""


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The fast tokenizer of a model folder (its ``tokenizer.json``)."""
    return Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE))


def check_text(text: object) -> str:
    """The text to answer, or ``InputError`` for what cannot be answered."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("text is empty or only whitespace; give a question")
    return text


@dataclass
class Encoded:
    """One tokenised example (unpadded)."""

    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[int]
    truncated: bool = False
    sequence_ids: list[int | None] = field(default_factory=list)


class TextEncoder:
    """Tokenise single texts or pairs with truncation, pad batches dynamically."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0

    def encode(self, text: str, pair: str | None = None, *, warn: bool = True) -> Encoded:
        full = self.tokenizer.encode(text, pair) if pair is not None else self.tokenizer.encode(text)
        truncated = len(full.ids) > self.max_length
        if truncated:
            self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
            try:
                enc = self.tokenizer.encode(text, pair) if pair is not None else self.tokenizer.encode(text)
            finally:
                self.tokenizer.no_truncation()
            if warn:
                warnings.warn(
                    f"input of {len(full.ids)} tokens truncated to {self.max_length} "
                    f"(it starts {text[:20]!r})",
                    TruncationWarning,
                    stacklevel=3,
                )
        else:
            enc = full
        return Encoded(
            input_ids=list(enc.ids),
            token_type_ids=list(enc.type_ids),
            offsets=[tuple(o) for o in enc.offsets],
            special=list(enc.special_tokens_mask),
            truncated=truncated,
            sequence_ids=list(enc.sequence_ids),
        )

    def pad(self, batch: Sequence[Encoded], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """Pad to the longest example (dynamic padding) or to ``pad_to``."""
        width = pad_to or max(len(e.input_ids) for e in batch)
        n = len(batch)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(batch):
            k = len(e.input_ids)
            ids[i, :k] = e.input_ids
            types[i, :k] = e.token_type_ids
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def char_spans(text: str, names: Sequence[str]) -> list[tuple[int, int]]:
    """Character ranges of ``names`` in ``text``, searched in order of appearance."""
    spans, pos = [], 0
    for name in names:
        start = text.find(name, pos)
        if start < 0:
            start = text.find(name)
        if start < 0:
            continue
        spans.append((start, start + len(name)))
        pos = start + len(name)
    return spans


def bio_labels(enc: Encoded, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Token labels (indices into ``BIO_LABELS``) for character spans; specials ignored."""
    labels = []
    for (s, e), special in zip(enc.offsets, enc.special):
        if special:
            labels.append(IGNORE_INDEX)
            continue
        label = BIO_LABELS.index("O")
        for a, b in spans:
            if s >= a and e <= b and e > s:
                label = BIO_LABELS.index("B") if s == a or not _inside_before(enc, s, a) else BIO_LABELS.index("I")
                break
        labels.append(label)
    return labels


def _inside_before(enc: Encoded, s: int, a: int) -> bool:
    """Whether a token of the same span starts before character ``s``."""
    return any(not sp and a <= ts < s for (ts, _), sp in zip(enc.offsets, enc.special))


def decode_spans(text: str, enc: Encoded, probs: np.ndarray) -> list[dict]:
    """Spans from per-token BIO probabilities: ``text == input[start:end]`` exactly."""
    b, i = BIO_LABELS.index("B"), BIO_LABELS.index("I")
    best = probs.argmax(-1)
    spans: list[dict] = []
    current: list[int] = []

    def close() -> None:
        if current:
            start, end = enc.offsets[current[0]][0], enc.offsets[current[-1]][1]
            score = float(np.mean([probs[t, best[t]] for t in current]))
            spans.append({"text": text[start:end], "start": int(start), "end": int(end), "score": round(score, 6)})
            current.clear()

    for t, ((s, e), special) in enumerate(zip(enc.offsets, enc.special)):
        if special or e <= s:
            close()
            continue
        if best[t] == b or (best[t] == i and not current):
            close()
            current.append(t)
        elif best[t] == i:
            current.append(t)
        else:
            close()
    close()
    return spans


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
