"""Request bodies of the HTTP API (pydantic): what OpenAPI shows and what 422 names.

Unknown fields are refused, so a typo (``questoin``) is a 422 naming it, not a
silent default. ``PredictRequest`` also takes TEI's ``/predict`` fields, so a
client written for text-embeddings-inference works by changing the URL.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
