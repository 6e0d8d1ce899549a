"""question_answer: answer from the knowledge base (docs/labelling-guide.md §4).

The adapter is a cross-encoder that scores (user question, knowledge-base
question) pairs, so new knowledge-base entries need no retraining.
"""

from ..config import PAIR_RANKING, TaskSpec
from .registry import register_task

QUESTION_ANSWER = register_task(
    TaskSpec(
        name="question_answer",
        instruction="问题回答",
        kind=PAIR_RANKING,
        labels=(),
        description="answer a data-platform question from the knowledge base, or give no answer",
    )
)
