"""The decision trace on every answer: what each step decided, how sure, against what bar, by which model."""

from __future__ import annotations

import numpy as np
import pytest

from lora_router.adapters import TaskManifest
from lora_router.capture import CaptureStore, CaptureWriter
from lora_router.core import TaskPredictor
from lora_router.core.chain import Chain
from lora_router.core.trace import decision_trace, unknown_model
from lora_router.encoding import TextEncoder, load_tokenizer
from lora_router.modeling.base import tokenizer_files_dir
from lora_router.tasks import get_task

SCENE_LOGITS = [2.0, 0.5, 0.0]  # 数据平台相关问题 0.74, 通用问题 0.17, 无关问题 0.09
TYPE_LOGITS = [0.1, 0.0]  # 问题回答 0.52 < the chain's 0.6: uncertain


class TwoClassifiers:
    """The chain's two classifiers with fixed logits, and the identity an export would give them."""

    chain_path = None
    source = "fixed"

    def __init__(self):
        tokenizer = load_tokenizer(str(tokenizer_files_dir()))
        self.specs = {t: get_task(t) for t in ("question_classifier", "question_type_classifier")}
        self.encoders = {t: TextEncoder(tokenizer, 32) for t in self.specs}
        self.manifests = {t: TaskManifest(task=spec, base_model={}) for t, spec in self.specs.items()}
        self.identities = {t: {"task": t, "adapter": f"{i}" * 16, "export": "0123456789ab", "version": "v7"}
                           for i, t in enumerate(self.specs)}

    def logits(self, task, encoded):
        row = SCENE_LOGITS if task == "question_classifier" else TYPE_LOGITS
        return np.array([row] * len(encoded), dtype=np.float32)

    def answerer(self, task, knowledge_base):
        raise AssertionError("no knowledge base here")


def test_every_step_says_what_it_decided_how_sure_against_what_bar_and_by_which_model():
    answer = TaskPredictor(TwoClassifiers()).ask("数据清洗流程是什么？")
    scene, kind = answer["trace"]["steps"]
    probabilities = answer["steps"][0]["result"]["probabilities"]
    assert scene["task"] == "question_classifier" and scene["label"] == "数据平台相关问题"
    assert scene["probability"] == answer["steps"][0]["result"]["confidence"]
    assert scene["margin"] == pytest.approx(probabilities["数据平台相关问题"] - probabilities["通用问题"], abs=1e-6)
    assert (scene["threshold"], scene["passed"]) == (0.5, True)
    assert scene["model"] == {"task": "question_classifier", "adapter": "0" * 16, "export": "0123456789ab",
                              "version": "v7"}
    assert scene["ms"] == answer["steps"][0]["ms"]
    # the second step stopped the chain: below its bar, and the trace says so
    assert answer["route"] == "uncertain" and answer["uncertain_step"] == "question_type_classifier"
    assert (kind["label"], kind["threshold"], kind["passed"]) == ("问题回答", 0.6, False)
    assert kind["model"]["adapter"] == "1" * 16
    assert "request_id" not in answer["trace"]  # only the service names requests


def test_the_fields_of_an_answer_stay_where_they_were():
    answer = TaskPredictor(TwoClassifiers()).ask("数据清洗流程是什么？")
    assert list(answer)[:5] == ["question", "steps", "route", "file_names", "answer"]


def test_the_file_name_and_knowledge_base_steps_have_their_own_figures():
    answer = {"question": "q", "route": "answer", "file_names": [], "answer": None, "steps": [
        {"task": "file_name_pick", "ms": 1.0, "result": {"file_names": ["a.csv", "b.csv"], "spans": [
            {"text": "a.csv", "start": 0, "end": 5, "score": 0.9}, {"text": "b.csv", "start": 6, "end": 11,
                                                                   "score": 0.7}]}},
        {"task": "question_answer", "ms": 2.0, "result": {"answer": "", "kb_id": None, "confidence": 0.4,
                                                          "candidates": [{"id": "kb-1", "score": 0.4},
                                                                         {"id": "kb-2", "score": 0.1}]}}]}
    files, kb = decision_trace(answer, Chain.load(), unknown_model, {"question_answer": 0.55})["steps"]
    assert (files["label"], files["probability"], files["margin"], files["passed"]) == (None, 0.7, None, True)
    assert (kb["label"], kb["probability"], kb["threshold"], kb["passed"]) == (None, 0.4, 0.55, False)
    assert kb["margin"] == pytest.approx(0.3)
    assert kb["model"] == {"task": "question_answer", "adapter": None, "export": None, "version": None}


def test_an_answer_asked_with_capture_is_kept_with_its_trace_and_names_its_id(tmp_path):
    with CaptureWriter(tmp_path) as capture:
        router = TaskPredictor(TwoClassifiers(), capture=capture)
        first, second = router.ask_batch(["数据清洗流程是什么？", "今天天气怎么样"])
    records = list(CaptureStore(tmp_path).records())
    assert [r["id"] for r in records] == [first["request_id"], second["request_id"]]
    assert records[0]["answer"]["trace"] == first["trace"]
    assert records[1]["question"] == "今天天气怎么样"
