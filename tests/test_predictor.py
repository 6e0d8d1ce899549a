"""TaskPredictor over any Backend, and the one PredictorOptions every caller passes: no torch, no onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lora_router.adapters import TaskManifest
from lora_router.backends.source import ModelSource
from lora_router.core import Backend, MixedBackend, PredictorOptions, TaskPredictor
from lora_router.encoding import TextEncoder, load_tokenizer
from lora_router.errors import ConfigError, InputError
from lora_router.modeling.base import tokenizer_files_dir
from lora_router.tasks import get_task

SCENE = get_task("question_classifier")
JSON = {"content-type": "application/json"}


class LookupBackend:
    """A backend in a few lines: fixed logits per text, so the predictor is what is tested."""

    chain_path = None
    source = "lookup"

    def __init__(self, logits: dict[str, list[float]], temperature: float | None = None):
        tokenizer = load_tokenizer(str(tokenizer_files_dir()))
        self.specs = {SCENE.name: SCENE}
        self.encoders = {SCENE.name: TextEncoder(tokenizer, 32)}
        calibration = {"temperature": temperature} if temperature else None
        self.manifests = {SCENE.name: TaskManifest(task=SCENE, base_model={}, calibration=calibration)}
        self.table = logits
        self.calls = 0

    def logits(self, task, encoded):
        self.calls += 1
        texts = [self.encoders[task].tokenizer.decode(e.input_ids).replace(" ", "") for e in encoded]
        return np.array([self.table.get(t, [0.0, 0.0, 1.0]) for t in texts], dtype=np.float32)

    def answerer(self, task, knowledge_base):
        raise AssertionError("no pair-ranking task here")


@pytest.fixture
def backend():
    return LookupBackend({"数据清洗流程是什么？": [3.0, 0.0, 0.0], "今天天气怎么样": [0.0, 0.2, 0.1]})


def test_any_object_with_logits_is_a_backend_and_the_predictor_makes_the_results(backend):
    assert isinstance(backend, Backend) and not isinstance(backend, MixedBackend)
    predictor = TaskPredictor(backend)
    result = predictor.predict("question_classifier", "数据清洗流程是什么？")
    assert result["predicted_label"] == "数据平台相关问题"
    assert set(result["probabilities"]) == set(SCENE.labels)
    assert not predictor.speculate  # a backend that cannot run mixed rows never speculates


def test_the_temperature_of_the_task_manifest_is_applied_in_one_place():
    logits = {"数据清洗流程是什么？": [3.0, 0.0, 0.0]}
    plain = TaskPredictor(LookupBackend(logits)).predict("question_classifier", "数据清洗流程是什么？")
    soft = TaskPredictor(LookupBackend(logits, temperature=3.0)).predict("question_classifier", "数据清洗流程是什么？")
    assert soft["confidence"] < plain["confidence"]
    assert soft["predicted_label"] == plain["predicted_label"]


def test_options_thresholds_reach_the_chain(backend):
    low = TaskPredictor(backend, PredictorOptions(thresholds={"question_classifier": 0.9}))
    answer = low.ask("今天天气怎么样")
    assert answer["route"] == "uncertain" and answer["uncertain_step"] == "question_classifier"
    assert low.chain.steps["question_classifier"].threshold == 0.9


def test_predictor_options_check_themselves_once():
    with pytest.raises(ConfigError, match="unknown layout 'fused'; valid: trunk, multi, shared, merged"):
        PredictorOptions(layout="fused")
    with pytest.raises(ConfigError, match="threshold for 'question_classifier' must be in"):
        PredictorOptions(thresholds={"question_classifier": 1.5})
    with pytest.raises(ConfigError, match="unknown field"):
        PredictorOptions.from_dict({"precison": "fp32"})


def test_options_travel_whole_as_json_inside_a_model_source(tmp_path):
    options = PredictorOptions(precision="fp32", layout="multi", thresholds={"question_classifier": 0.7},
                               knowledge_base=str(tmp_path / "kb.jsonl"), threads=2, speculate=False)
    assert PredictorOptions.from_json(options.to_json()) == options
    source = ModelSource(onnx=str(tmp_path), options=options)
    again = ModelSource.from_json(source.to_json())
    assert again == source and isinstance(again.options, PredictorOptions)
    assert json.loads(source.to_json())["options"]["thresholds"] == {"question_classifier": 0.7}


def test_replace_keeps_the_other_options_and_checks_again():
    options = PredictorOptions(precision="fp32")
    assert options.replace(threads=1, layout=None) == PredictorOptions(precision="fp32", threads=1)
    with pytest.raises(ConfigError):
        options.replace(precision="int4")


def test_a_lone_surrogate_is_an_input_error_naming_where_it_is(backend):
    with pytest.raises(InputError, match=r"lone surrogate \('\\ud800'\) at character 0"):
        TaskPredictor(backend).ask("\ud800 数据")


def test_the_service_answers_422_naming_the_field_and_keeps_the_batch(backend):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lora_router.serving.app import create_app

    with TestClient(create_app(predictor=TaskPredictor(backend), handle_sighup=False)) as client:
        # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 body can carry
        one = client.post("/v1/ask", content=json.dumps({"question": "\ud800 数据"}), headers=JSON)
        bad_second = json.dumps({"questions": ["数据清洗流程是什么？", "x\udfff"]})
        many = client.post("/v1/ask", content=bad_second, headers=JSON)
        good = client.post("/v1/ask", json={"questions": ["数据清洗流程是什么？", "今天天气怎么样"]})
    assert one.status_code == 422 and one.json()["error"].startswith("question holds a lone surrogate")
    assert many.status_code == 422 and many.json()["error"].startswith("questions[1] holds a lone surrogate")
    assert good.status_code == 200
    assert [a["question"] for a in good.json()] == ["数据清洗流程是什么？", "今天天气怎么样"]
    assert backend.calls >= 1


def test_the_service_never_tokenises_on_its_event_loop(backend, monkeypatch):
    """A long question is tokenised (for its truncation warning, and for the model) off the event loop."""
    pytest.importorskip("fastapi")
    import asyncio

    from fastapi.testclient import TestClient

    from lora_router.serving.app import create_app

    encoder = backend.encoders["question_classifier"]
    on_loop, encode = [], encoder.encode

    def watched(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop running in this thread
            on_loop.append(False)
        return encode(*args, **kwargs)

    monkeypatch.setattr(encoder, "encode", watched)
    long = "数据清洗流程是什么？" * 20  # longer than the 32 tokens this encoder takes
    with TestClient(create_app(predictor=TaskPredictor(backend), handle_sighup=False)) as client:
        answer = client.post("/v1/ask", json={"question": long}).json()
    assert "warnings" in answer, "the long question was seen as cut"
    assert on_loop and not any(on_loop)


def test_a_request_path_cannot_write_a_line_of_its_own_into_the_text_log(backend, caplog):
    pytest.importorskip("fastapi")
    import logging

    from fastapi.testclient import TestClient

    from lora_router.serving.app import create_app

    with caplog.at_level(logging.INFO, logger="lora_router.access"):
        with TestClient(create_app(predictor=TaskPredictor(backend), handle_sighup=False)) as client:
            assert client.get("/v1/x%0A2026-12-03 INFO forged line").status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "lora_router.access"]
    forged = [line for line in lines if "forged line" in line]
    assert forged and all("\n" not in line and "/v1/x\\n2026" in line for line in forged)
