"""How question_answer retrieves and decides; saved in the adapter's manifest."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import JsonSettings
from ..errors import ConfigError
from .index import ANALYZERS

# What a manifest written before a setting existed meant by leaving it out: such an
# adapter keeps retrieving as it was evaluated (retrain it to get the newer defaults).
LEGACY_DEFAULTS = {"index_answers": False, "unknown_query_ngrams": False}


@dataclass
class AnswerSettings(JsonSettings):
    """Retrieval, re-ranking and the no-answer threshold (defaults measured on the bundled data).

    Training replaces ``threshold`` with the one fitted on its training split
    (``training/ranking.py``); the default is what that fit gives on the bundled data.
    It also fits ``decision``, which then decides in the threshold's place.
    """

    threshold: float = field(default=0.25, metadata={"help": "confidence below which there is no answer"})
    top_k: int = field(default=5, metadata={"help": "entries retrieved by TF-IDF and re-ranked"})
    pairs_per_entry: int = field(
        default=2, metadata={"help": "phrasings per retrieved entry that the cross-encoder scores"})
    relevance_weight: float = field(default=0.5, metadata={
        "help": "confidence = relevance**w * retrieval**(1-w); relevance = sigmoid(cross-encoder)"})
    analyzer: str = field(default="char_run_words", metadata={
        "help": "TF-IDF analyzer: char, char_wb, char_run (n-grams inside runs between spaces and punctuation), "
                "or char_run_words (char_run, with each Latin word whole)"})
    ngram_range: tuple[int, int] = field(default=(1, 2), metadata={"help": "character n-gram sizes"})
    sublinear_tf: bool = field(default=True, metadata={"help": "1 + log(tf) instead of tf"})
    index_answers: bool = field(default=True, metadata={
        "help": "an entry is retrieved by its phrasings and its answer text together (one document "
                "per entry); False: by its best-matching phrasing alone"})
    unknown_query_ngrams: bool = field(default=True, metadata={
        "help": "n-grams of the question that the knowledge base lacks lower its retrieval score"})
    decision: dict | None = field(default=None, metadata={
        "help": "the fitted no-answer model (kb/decision.py: features, mean, scale, coef, intercept, cutoff, "
                "and the training questions without an answer it compares with, no_answer_examples); "
                "None: answer when the top confidence reaches threshold"})

    def __post_init__(self) -> None:
        self.ngram_range = tuple(int(x) for x in self.ngram_range)  # type: ignore[assignment]
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.pairs_per_entry < 1:
            raise ConfigError(f"pairs_per_entry must be >= 1, got {self.pairs_per_entry}")
        if not 0.0 <= self.relevance_weight <= 1.0:
            raise ConfigError(f"relevance_weight must be in [0, 1], got {self.relevance_weight}")
        if self.analyzer not in ANALYZERS:
            raise ConfigError(f"analyzer {self.analyzer!r} is not valid; valid: {', '.join(ANALYZERS)}")
        if self.decision is not None:
            missing = {"features", "mean", "scale", "coef", "intercept", "cutoff"} - set(self.decision)
            reads_examples = "no_answer_similarity" in self.decision.get("features", ())
            if reads_examples and "no_answer_examples" not in self.decision:
                missing.add("no_answer_examples")
            if "residual_answerable" in self.decision.get("features", ()) and "residual_model" not in self.decision:
                missing.add("residual_model")
            if missing:
                raise ConfigError(f"decision lacks {sorted(missing)}; it is what training fits "
                                  "(retrain, or remove decision to decide by threshold)")
        if len(self.ngram_range) != 2 or not 1 <= self.ngram_range[0] <= self.ngram_range[1] <= 6:
            raise ConfigError(f"ngram_range must be (low, high) with 1 <= low <= high <= 6, got {self.ngram_range}")
