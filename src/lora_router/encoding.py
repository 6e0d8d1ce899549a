"""Text to model inputs and back, with ``tokenizers`` and numpy only (no torch).

Shared by training, the PyTorch router and the torch-free ONNX runtime, so the
three tokenise, pad and decode spans the same way. Offsets come from the fast
tokenizer's offset mapping, so a span's ``text == input[start:end]`` exactly.

The *encoding* of an adapter (``{"lowercase": bool}``) is how its text was
normalised before the vocabulary saw it; it is recorded in ``task.json`` and
in the export manifest, and every loader builds its ``TextEncoder`` from it.
bert-base-chinese ships ``do_lower_case: false`` with a vocabulary that has no
upper-case word at all, so without lower-casing "ODS", "CSV" and "Hive" all
reach the model as ``[UNK]``. Lower-casing is a ``tokenizers`` normalizer, which
keeps the alignment to the original text: offsets still index the user's text.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, normalizers

from .config import BIO_LABELS
from .errors import ConfigError, InputError

IGNORE_INDEX = -100
TOKENIZER_FILE = "tokenizer.json"
ENCODING_KEY = "encoding"
# What an adapter saved without an "encoding" field was trained with.
LEGACY_ENCODING = {"lowercase": False}
_UPPER_WORD = re.compile(r"^(?:##)?[a-z]*[A-Z][A-Za-z]*$")
_LOWER_WORD = re.compile(r"^(?:##)?[a-z]+$")


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
    problem = encoding_problem(text)
    if problem:
        raise InputError(f"text {problem}")
    return text


def encoding_problem(text: str) -> str | None:
    """Why the tokenizer cannot take ``text``, or None: a lone surrogate (JSON may carry one, UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds a lone surrogate ({text[exc.start]!r}) at character {exc.start}, which is not a "
                "Unicode character; send valid UTF-8")
    return None


def needs_lowercase(tokenizer: Tokenizer) -> bool:
    """Whether the vocabulary has lower-case words but no upper-case one (so upper case can only be ``[UNK]``).

    bert-base-chinese: 2,261 lower-case words, none upper-case, yet
    ``do_lower_case: false``. A cased vocabulary (bert-base-cased) has both and
    is left as it is.
    """
    vocab = tokenizer.get_vocab()
    upper = sum(1 for token in vocab if _UPPER_WORD.match(token))
    lower = sum(1 for token in vocab if _LOWER_WORD.match(token))
    return upper == 0 and lower > 0


def default_encoding(tokenizer: Tokenizer) -> dict:
    """The encoding a new adapter on this tokenizer is trained with."""
    return {"lowercase": needs_lowercase(tokenizer)}


def encoding_of(encoding: dict | None) -> dict:
    """The encoding an adapter was trained with, as its ``task.json`` (or an export's task entry) records it.

    An adapter saved before the field existed (``None``) keeps the encoding it
    was trained with: no lower-casing.
    """
    if encoding is None:
        return dict(LEGACY_ENCODING)
    unknown = sorted(set(encoding) - set(LEGACY_ENCODING))
    if unknown or not isinstance(encoding.get("lowercase", False), bool):
        raise ConfigError(
            f"encoding {encoding!r} is not one this lora-router reads (valid: {{\"lowercase\": true|false}}); "
            "upgrade lora-router or retrain the adapter"
        )
    return {**LEGACY_ENCODING, **encoding}


@dataclass
class Encoded:
    """One tokenised example (unpadded)."""

    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[int]
    truncated: bool = False


class TextEncoder:
    """Tokenise single texts or pairs with truncation, pad batches dynamically.

    ``lowercase``: lower-case the text the model sees (a normalizer added after
    the tokenizer's own); offsets still index the original text.

    Thread-safe: the tokenizer is configured once (its own copy, truncation on)
    and never changed afterwards.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128, *, lowercase: bool = False):
        self.max_length = max_length
        self.lowercase = bool(lowercase)
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        if self.lowercase:
            own = self.tokenizer.normalizer
            steps = [own, normalizers.Lowercase()] if own is not None else [normalizers.Lowercase()]
            self.tokenizer.normalizer = normalizers.Sequence(steps)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    @classmethod
    def for_adapter(cls, tokenizer: Tokenizer, max_length: int, encoding: dict | None) -> TextEncoder:
        """The encoder an adapter was trained with, from the encoding its ``task.json`` records."""
        return cls(tokenizer, max_length, **encoding_of(encoding))

    @property
    def encoding(self) -> dict:
        """What to record with an adapter trained through this encoder."""
        return {"lowercase": self.lowercase}

    def _wrap(self, enc, text: str, warn: bool) -> Encoded:
        truncated = bool(enc.overflowing)
        if truncated and warn:
            warnings.warn(
                f"input truncated to {self.max_length} tokens (it starts {text[:20]!r})",
                TruncationWarning,
                stacklevel=4,
            )
        return Encoded(
            input_ids=list(enc.ids),
            token_type_ids=list(enc.type_ids),
            offsets=[tuple(o) for o in enc.offsets],
            special=list(enc.special_tokens_mask),
            truncated=truncated,
        )

    def encode(self, text: str, pair: str | None = None, *, warn: bool = True) -> Encoded:
        enc = self.tokenizer.encode(text, pair) if pair is not None else self.tokenizer.encode(text)
        return self._wrap(enc, text, warn)

    def encode_batch(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, warn: bool = True
    ) -> list[Encoded]:
        """Encode many texts (or text pairs) at once in the tokenizer's native code."""
        items = list(zip(texts, pairs)) if pairs is not None else list(texts)
        return [self._wrap(e, t, warn) for e, t in zip(self.tokenizer.encode_batch(items), texts)]

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
