"""question_type_classifier: answer a data-platform question or act on it (docs/labelling-guide.md §2)."""

from ..config import SEQUENCE_CLASSIFICATION, TaskSpec
from .registry import register_task

ANSWER = "问题回答"
ACTION = "任务处理"

QUESTION_TYPE = register_task(
    TaskSpec(
        name="question_type_classifier",
        instruction="问题类型分类",
        kind=SEQUENCE_CLASSIFICATION,
        labels=(ANSWER, ACTION),
        description="type of a data-platform question: asks for knowledge, or asks for an action",
    )
)
