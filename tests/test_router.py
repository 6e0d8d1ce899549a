import threading
import warnings

import numpy as np
import pytest

from conftest import FILE_ROWS, SCENE_ROWS
from lora_router.backends.torch_peft import Router
from lora_router.core import Chain, run_chain
from lora_router.encoding import TruncationWarning
from lora_router.errors import ConfigError, InputError
from lora_router.legacy import PeftLoraInference

HOSTILE = ["😀🔥💯", "\x00\x01\x02数据", "\u200b\u200c\u200d", "\u202e表据数", "ＳＱＬ全角", "a\tb\nc", "x" * 100_000]


@pytest.fixture(scope="module")
def router(tiny_base, trained_hub):
    return Router(tiny_base, trained_hub)


def test_every_adapter_on_one_base(router):
    assert router.tasks == ["file_name_pick", "question_classifier"]
    assert sorted(router.model.peft_config) == ["file_name_pick", "question_classifier"]


def test_switching_adapters_equals_a_model_with_only_that_adapter(router, tiny_base, trained_hub):
    alone = Router(tiny_base, trained_hub, tasks=["question_classifier"])
    texts = [t for t, _ in SCENE_ROWS]
    enc = router.encoders["question_classifier"].encode_batch(texts)
    router.set_adapter("file_name_pick")
    router.predict("file_name_pick", "把a.csv导入")
    np.testing.assert_allclose(router.logits("question_classifier", enc), alone.logits("question_classifier", enc),
                               atol=1e-6)


def test_batch_equals_one_by_one(router):
    texts = [t for t, _ in FILE_ROWS]
    batch = router.predict_batch("file_name_pick", texts)
    for text, result in zip(texts, batch):
        single = router.predict("file_name_pick", text)
        assert single["file_names"] == result["file_names"]
        for a, b in zip(single["spans"], result["spans"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_threads_never_mix_tasks(router):
    calls = [("question_classifier" if i % 2 else "file_name_pick", (SCENE_ROWS + FILE_ROWS)[i % 15][0])
             for i in range(100)]
    expected = [router.predict(task, text) for task, text in calls]
    outputs: dict[int, list] = {}

    def worker(n: int) -> None:
        order = calls[n:] + calls[:n]  # every thread interleaves tasks differently
        got = [router.predict(task, text) for task, text in order]
        outputs[n] = got[len(calls) - n:] + got[: len(calls) - n]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(8):
        for got, want in zip(outputs[n], expected):
            assert got.keys() == want.keys()
            if "predicted_label" in want:
                assert got["predicted_label"] == want["predicted_label"]
                assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-5)
            else:
                assert got["file_names"] == want["file_names"]


def test_result_formats(router):
    cls = router.predict("question_classifier", "数据清洗流程是什么？")
    assert set(cls) == {"predicted_label", "confidence", "probabilities"}
    assert sum(cls["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert cls["confidence"] == max(cls["probabilities"].values())
    ext = router.predict("file_name_pick", "帮我把sales_2024.csv导入数据仓库")
    assert set(ext) == {"file_names", "spans"}
    assert all({"text", "start", "end", "score"} == set(s) for s in ext["spans"])


def test_ask_shape_and_missing_step_note(router):
    out = router.ask("帮我把sales_2024.csv导入到ODS层")
    assert set(out) >= {"question", "steps", "route", "file_names", "answer"}
    assert out["steps"][0]["task"] == "question_classifier"
    assert {"task", "result", "ms"} == set(out["steps"][0])
    if out["route"] not in {"general", "out_of_scope"}:
        # question_type_classifier is not in this hub: the chain says so instead of guessing
        assert "question_type_classifier is not trained" in out["note"]


def test_original_inference_api(tiny_base, trained_hub):
    inference = PeftLoraInference(tiny_base, trained_hub.root)
    result = inference.predict("问题场景分类", "数据清洗流程是什么？")
    assert result["predicted_label"] == "数据平台相关问题"
    assert inference.predict("文件名称提取", "帮我把sales_2024.csv导入数据仓库")["file_names"] == ["sales_2024.csv"]


def test_empty_text_is_a_clear_error(router):
    for bad in ["", "   ", "\n\t"]:
        with pytest.raises(InputError, match="empty"):
            router.ask(bad)
    with pytest.raises(InputError):
        router.predict("question_classifier", None)  # type: ignore[arg-type]


def test_hostile_unicode_gives_a_result(router):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        for text in HOSTILE:
            if not text.strip():
                continue
            out = router.ask(text)
            assert out["route"] in {"answer", "task", "general", "out_of_scope", "uncertain"}
            spans = router.predict("file_name_pick", text)["spans"]
            assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)


def test_long_text_is_truncated_with_a_warning(router):
    with pytest.warns(TruncationWarning):
        router.predict("question_classifier", "数据" * 1000)


def test_unknown_task_is_named(router):
    with pytest.raises(ConfigError, match="not loaded; loaded: file_name_pick, question_classifier"):
        router.predict("question_answer", "x")


# ---------------------------------------------------------------- the chain, with a fake model
def _fake(labels: dict[str, tuple[str, float]]):
    """predict_batch that gives fixed labels, to force each branch of the chain."""
    def predict_batch(task, texts):
        if task == "file_name_pick":
            return [{"file_names": ["a.csv"], "spans": [{"text": "a.csv", "start": 0, "end": 5, "score": 0.9}]}
                    for _ in texts]
        if task == "question_answer":
            return [{"answer": "答案", "kb_id": "x", "confidence": 0.9, "candidates": []} for _ in texts]
        label, conf = labels[task]
        return [{"predicted_label": label, "confidence": conf, "probabilities": {label: conf}} for _ in texts]
    return predict_batch


ALL = {"question_classifier", "question_type_classifier", "file_name_pick", "question_answer"}


@pytest.mark.parametrize("scene, qtype, route, last", [
    (("数据平台相关问题", 0.9), ("任务处理", 0.9), "task", "file_name_pick"),
    (("数据平台相关问题", 0.9), ("问题回答", 0.9), "answer", "question_answer"),
    (("通用问题", 0.9), None, "general", "question_classifier"),
    (("无关问题", 0.9), None, "out_of_scope", "question_classifier"),
    (("数据平台相关问题", 0.4), None, "uncertain", "question_classifier"),
    (("数据平台相关问题", 0.9), ("任务处理", 0.55), "uncertain", "question_type_classifier"),
])
def test_chain_routes_each_branch(scene, qtype, route, last):
    labels = {"question_classifier": scene, "question_type_classifier": qtype or ("问题回答", 1.0)}
    out = run_chain(Chain.load(), ["q"], _fake(labels), ALL)[0]
    assert out["route"] == route
    assert out["steps"][-1]["task"] == last
    if route == "task":
        assert out["file_names"] == ["a.csv"]
    if route == "answer":
        assert out["answer"] == "答案"
    if route == "uncertain":
        assert out["uncertain_step"] == last and "unsure" in out["note"]


def test_answer_route_without_question_answer_says_so():
    labels = {"question_classifier": ("数据平台相关问题", 0.9), "question_type_classifier": ("问题回答", 0.9)}
    out = run_chain(Chain.load(), ["q"], _fake(labels), ALL - {"question_answer"})[0]
    assert out["route"] == "answer" and out["answer"] is None
    assert "question_answer is not trained" in out["note"]


def test_thresholds_are_configurable_and_checked():
    chain = Chain.load().with_thresholds({"question_classifier": 0.95})
    labels = {"question_classifier": ("通用问题", 0.9)}
    assert run_chain(chain, ["q"], _fake(labels), ALL)[0]["route"] == "uncertain"
    with pytest.raises(ConfigError, match="not a step"):
        Chain.load().with_thresholds({"nope": 0.5})
    with pytest.raises(ConfigError, match="unknown step"):
        Chain.from_dict({"steps": [{"task": "a", "on": {"x": "b"}}]})


def test_a_new_task_plugs_in_through_the_chain_spec(tmp_path):
    spec = Chain.load().to_dict()
    spec["steps"][0]["on"]["通用问题"] = "sentiment"
    spec["steps"].append({"task": "sentiment", "threshold": 0.5,
                          "on": {"正面": "route:general", "负面": "route:general"}})
    path = tmp_path / "chain.json"
    import json

    path.write_text(json.dumps(spec, ensure_ascii=False))
    labels = {"question_classifier": ("通用问题", 0.9), "sentiment": ("负面", 0.8)}
    out = run_chain(Chain.load(path), ["q"], _fake(labels), ALL | {"sentiment"})[0]
    assert [s["task"] for s in out["steps"]] == ["question_classifier", "sentiment"]
    assert out["route"] == "general"
