"""question_classifier: which scene a question belongs to (docs/labelling-guide.md §1)."""

from ..config import SEQUENCE_CLASSIFICATION, TaskSpec
from .registry import register_task

PLATFORM = "数据平台相关问题"
GENERAL = "通用问题"
IRRELEVANT = "无关问题"

SCENE = register_task(
    TaskSpec(
        name="question_classifier",
        instruction="问题场景分类",
        kind=SEQUENCE_CLASSIFICATION,
        labels=(PLATFORM, GENERAL, IRRELEVANT),
        description="scene: data-platform question, general question, or off-topic",
    )
)
