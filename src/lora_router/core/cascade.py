"""The cheap first pass (``--cascade``): a character n-gram model decides a classification step when it is sure.

``lora-router eval`` already fits, beside every classification adapter, a
character 1-3-gram TF-IDF + logistic-regression baseline; on short questions
it is often as right as the adapter at a thousandth of the cost. With the
cascade on, a step first asks that model and calls the adapter only when the
model's confidence is below the step's threshold (fitted at export on the
held-out split so that the step's accuracy stays within a bound of the better
of the two alone: ``lora_router.export.cascade``).

This module runs the fitted model with numpy alone: the deploy install
(onnxruntime, tokenizers, numpy) needs nothing new. The model is two files
in the export folder: ``cascade/<task>.json`` (the n-gram vocabulary, in
column order, and how text is cut) and ``cascade/<task>.npz`` (idf, the
logistic regression's coefficients and intercepts). It reproduces
scikit-learn's ``TfidfVectorizer(analyzer="char", sublinear_tf=True)`` +
``LogisticRegression.predict_proba`` exactly (tests check it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportFormatError
from .results import ClassificationResult

MODEL_KIND = "char-ngram-tfidf-logistic-regression"
NGRAM = "ngram"  # ``decided_by`` of a step the n-gram model decided
ADAPTER = "adapter"  # ... and of one the adapter decided
_WHITE_SPACES = re.compile(r"\s\s+")  # as scikit-learn's vectorizers normalise white space


@dataclass
class NgramModel:
    """Character n-gram TF-IDF + logistic regression, in numpy.

    ``vocabulary`` maps each n-gram to its column; ``coef`` is (classes, columns)
    and ``classes`` the index, among ``labels``, of each row (a label absent
    from training has none and gets probability 0). A two-class model is kept
    as two rows, the first zero, so one softmax serves both cases.
    """

    labels: list[str]
    classes: list[int]
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    ngram_range: tuple[int, int] = (1, 3)
    lowercase: bool = True

    def ngrams(self, text: str) -> list[str]:
        """The character n-grams of ``text``, as scikit-learn's ``analyzer="char"`` cuts them."""
        if self.lowercase:
            text = text.lower()
        text = _WHITE_SPACES.sub(" ", text)
        low, high = self.ngram_range
        return [text[i : i + n] for n in range(low, min(high, len(text)) + 1) for i in range(len(text) - n + 1)]

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns and L2-normalised sublinear TF-IDF values of ``text`` (unknown n-grams dropped)."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        for gram in self.ngrams(text):
            column = vocabulary.get(gram)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
        values = (np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts))) + 1.0) * self.idf[columns]
        norm = float(np.sqrt(values @ values))
        return columns, (values / norm if norm > 0 else values)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, labels) probabilities over every label of the task."""
        out = np.zeros((len(texts), len(self.labels)))
        for row, text in enumerate(texts):
            columns, values = self.features(text)
            logits = self.coef[:, columns] @ values + self.intercept
            logits = np.exp(logits - logits.max())
            out[row, self.classes] = logits / logits.sum()
        return out

    # ------------------------------------------------------------ files
    def save(self, json_path: Path, arrays_path: Path) -> None:
        """Write the vocabulary and settings as JSON, the weights as a plain ``.npz`` (no pickles)."""
        words = [""] * len(self.vocabulary)
        for gram, column in self.vocabulary.items():
            words[column] = gram
        doc = {"kind": MODEL_KIND, "labels": self.labels, "classes": self.classes,
               "ngram_range": list(self.ngram_range), "lowercase": self.lowercase, "vocabulary": words}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, ensure_ascii=False) + "\n", "utf-8")
        with open(arrays_path, "wb") as fh:
            np.savez(fh, idf=self.idf, coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, json_path: Path, arrays_path: Path) -> NgramModel:
        """The model ``save`` wrote; ``ExportFormatError`` naming the file when it does not read."""
        try:
            doc = json.loads(Path(json_path).read_text("utf-8"))
            if doc.get("kind") != MODEL_KIND:
                raise ValueError(f"kind {doc.get('kind')!r}, expected {MODEL_KIND!r}")
            with np.load(arrays_path, allow_pickle=False) as arrays:
                idf, coef, intercept = arrays["idf"], arrays["coef"], arrays["intercept"]
            words, classes = list(doc["vocabulary"]), [int(c) for c in doc["classes"]]
            if coef.shape != (len(classes), len(words)) or idf.shape != (len(words),) or \
                    intercept.shape != (len(classes),):
                raise ValueError(f"weights of shape {coef.shape} do not fit {len(classes)} classes and "
                                 f"{len(words)} n-grams")
            low, high = (int(n) for n in doc["ngram_range"])
            return cls(labels=list(doc["labels"]), classes=classes,
                       vocabulary={gram: i for i, gram in enumerate(words)}, idf=idf, coef=coef,
                       intercept=intercept, ngram_range=(low, high), lowercase=bool(doc["lowercase"]))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ExportFormatError(f"cascade model {json_path} does not read ({exc}); export again with "
                                    "--cascade") from None


@dataclass
class CascadeStep:
    """One classification step's first pass: its n-gram model and the confidence at which it decides alone.

    ``threshold`` None: the fit found no confidence at which the model may
    decide (the adapter answers every question).
    """

    model: NgramModel
    threshold: float | None

    def first_pass(self, texts: Sequence[str]) -> list[ClassificationResult | None]:
        """Per text, the n-gram model's result when it is sure enough, else None (ask the adapter)."""
        if self.threshold is None or not texts:
            return [None] * len(texts)
        out: list[ClassificationResult | None] = []
        for probs in self.model.probabilities(texts):
            sure = float(probs.max()) >= self.threshold
            out.append(_result(probs, self.model.labels) if sure else None)
        return out


def _result(probs: np.ndarray, labels: Sequence[str]) -> ClassificationResult:
    best = int(probs.argmax())
    return {"predicted_label": labels[best], "confidence": round(float(probs[best]), 6),
            "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probs)}, "decided_by": NGRAM}
