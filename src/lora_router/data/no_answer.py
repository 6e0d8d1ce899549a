"""Questions known to have no answer besides question_answer's own: more examples for the no-answer decision.

The decision compares a question with questions known to have no answer
(``kb/examples.py``). question_answer's training split holds about a hundred
and fifty; the questions a platform's users type that no entry answers are far
more varied (small talk, general programming, life questions). The question
classifier's data already holds hundreds of those, hand-written and labelled
通用问题 or 无关问题: the chain stops such a question before question_answer,
and no entry of a data platform's knowledge base answers it. Training
question_answer therefore also compares with them (by default the bundled
question_classifier training split; ``--no-answer-examples FILE|bundled|none``).
They are examples only, not rows of the fit: the fit's share of questions
without an answer stays the training split's.

Measured on the tiny random base (``benchmarks/kb_noanswer.py``,
docs/performance.md): more no-answer recall on hand-written questions never used for fitting.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from .bundled import load_bundled
from .merge import BUNDLED
from .records import Record, read_records
from ..errors import ConfigError
from ..tasks.question_classifier import GENERAL, IRRELEVANT

NONE = "none"
# The outputs that say "no entry answers this": question_answer's "", the question classifier's scenes outside the platform.
NO_ANSWER_OUTPUTS = ("", GENERAL, IRRELEVANT)


def read_no_answer_examples(source: str | Path | None) -> list[str]:
    """The questions without an answer in ``source``: ``bundled`` (the question classifier's bundled
    training split), ``none`` or None (no examples), or a JSONL data file.

    A file's records count when their output is "" (question_answer's format)
    or 通用问题/无关问题 (question_classifier's), so a team passes its question
    classifier's training file as it is. A file with none of them is an error.
    """
    if source is None or str(source) == NONE:
        return []
    if str(source) == BUNDLED:
        return no_answer_questions(load_bundled("question_classifier", "train"))
    path = Path(source)
    questions = no_answer_questions(read_records(path))
    if not questions:
        raise ConfigError(f'no-answer examples {path}: no record has output "" or {GENERAL}/{IRRELEVANT}; '
                          "give question_answer or question_classifier data, or --no-answer-examples none")
    return questions


def no_answer_questions(records: Sequence[Record]) -> list[str]:
    """The inputs of ``records`` whose output says no entry answers them, each once, in order."""
    return list(dict.fromkeys(r.input for r in records if r.output in NO_ANSWER_OUTPUTS and r.input))


def usable_examples(examples: Sequence[str], held_out: Collection[str]) -> list[str]:
    """``examples`` without the questions in ``held_out``: a question that is scored is never its own example."""
    held = set(held_out)
    return [q for q in examples if q not in held]
