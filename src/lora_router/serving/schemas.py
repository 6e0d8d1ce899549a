"""Request bodies of the HTTP API (pydantic): what OpenAPI shows and what 422 names.

Unknown fields are refused, so a typo (``questoin``) is a 422 naming it, not a
silent default. ``PredictRequest`` also takes TEI's ``/predict`` fields, so a
client written for text-embeddings-inference works by changing the URL.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..capture.feedback import MAX_COMMENT_CHARS

ASK_EXAMPLES = [{"question": "帮我把sales_2024.csv导入到ODS层"},
                {"questions": ["ODS层和DWD层有什么区别？", "Python怎么给列表排序"]}]
PREDICT_EXAMPLES = [{"inputs": "数据清洗流程是什么？"}, {"inputs": ["把a.csv和b.xlsx合并", "今天天气怎么样"]}]


class AskRequest(BaseModel):
    """One question (``question``) or several (``questions``), answered through the chain."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": ASK_EXAMPLES})

    question: str | None = Field(None, description="one question; the answer is one object")
    questions: list[str] | None = Field(None, description="several questions; the answer is a list, in order")

    @model_validator(mode="after")
    def _one_of(self) -> AskRequest:
        if (self.question is None) == (self.questions is None):
            raise ValueError("give exactly one of 'question' (a string) or 'questions' (a list of strings)")
        return self

    def texts(self) -> tuple[list[str], str]:
        """The questions, and the field they came from (for error messages)."""
        return ([self.question], "question") if self.question is not None else (list(self.questions), "questions")


class ClassifyParameters(BaseModel):
    """What ``huggingface_hub.InferenceClient.text_classification`` sends beside ``inputs``."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(None, ge=1, description="keep the k best labels")
    function_to_apply: Literal["softmax"] | None = Field(None, description="only softmax (the default)")


class PredictRequest(BaseModel):
    """One task's input (``inputs``: a string or a list); TEI's ``/predict`` body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": PREDICT_EXAMPLES})

    inputs: str | list[str] = Field(..., description="a text, or a list of texts")
    truncate: bool = Field(True, description="cut inputs longer than the model takes (false: 413 instead)")
    raw_scores: bool = Field(False, description="TEI's field; only false is supported (scores are probabilities)")
    truncation_direction: Literal["right", "Right"] = Field("right", description="TEI's field; only right")
    parameters: ClassifyParameters | None = Field(None, description="the Hugging Face inference clients' options")

    @model_validator(mode="after")
    def _supported(self) -> PredictRequest:
        if self.raw_scores:
            raise ValueError("raw_scores=true is not supported: scores are calibrated probabilities")
        return self


FEEDBACK_EXAMPLES = [{"request_id": "3f2a9c0e", "verdict": "up"},
                     {"request_id": "3f2a9c0e", "verdict": "down", "route": "task",
                      "labels": {"question_type_classifier": "任务处理"}, "file_names": ["sales_2024.csv"],
                      "comment": "这是导入任务"},
                     {"request_id": "3f2a9c0e/1", "no_entry": True}]


class FeedbackRequest(BaseModel):
    """What was right or wrong about one answer, named by the ``request_id`` it came with."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": FEEDBACK_EXAMPLES})

    request_id: str = Field(..., min_length=1, max_length=200,
                            description="the answer's request_id (an answer of a batch: REQUEST_ID/INDEX)")
    verdict: Literal["up", "down"] | None = Field(None, description="thumbs up (right) or down (wrong)")
    route: str | None = Field(None, description="the right route: answer, task, general, out_of_scope, uncertain")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="the right label of a classification task: {task: label}")
    file_names: list[str] | None = Field(None, description="the right file names, each as written in the question")
    kb_id: str | None = Field(None, description="the knowledge-base entry that answers the question")
    no_entry: bool = Field(False, description="no knowledge-base entry answers the question")
    comment: str = Field("", max_length=MAX_COMMENT_CHARS, description="anything a reviewer should know")
