"""The cascade (``--cascade``): the n-gram first pass in numpy, its fitted threshold, and the predictor using it."""

from __future__ import annotations

import numpy as np
import pytest

from lora_router.core import PredictorOptions, TaskPredictor
from lora_router.core.cascade import CascadeStep, NgramModel
from lora_router.data import load_bundled
from lora_router.errors import ConfigError, ExportFormatError
from lora_router.evaluation.baselines import TextClassifierBaseline
from lora_router.evaluation.cascade import fit_threshold
from lora_router.tasks import get_task
from test_predictor import SCENE, LookupBackend

_FITTED: dict[str, TextClassifierBaseline] = {}


def _baseline(task: str) -> TextClassifierBaseline:
    """The task's baseline fitted on its bundled training split, once per test run (seconds on 2 busy cores)."""
    if task not in _FITTED:
        _FITTED[task] = TextClassifierBaseline(get_task(task)).fit(load_bundled(task, "train"))
    return _FITTED[task]


@pytest.mark.parametrize("task", ["question_classifier", "question_type_classifier"])  # three labels, and two
def test_the_numpy_ngram_model_gives_scikit_learns_probabilities_after_a_round_trip(task, tmp_path):
    baseline = _baseline(task)
    baseline.ngram_model().save(tmp_path / "m.json", tmp_path / "m.npz")
    model = NgramModel.load(tmp_path / "m.json", tmp_path / "m.npz")
    texts = [r.input for r in load_bundled(task, "test")] + ["  ODS \t\n 层 ", "", "Ｘ", "从未见过的字"]
    np.testing.assert_allclose(model.probabilities(texts), baseline.predict_proba(texts), rtol=0, atol=1e-12)


def test_a_label_missing_from_training_gets_probability_zero(tmp_path):
    rows = [("数据清洗流程是什么？", "数据平台相关问题"), ("今天天气怎么样", "无关问题")] * 3
    from lora_router.data import Record

    model = TextClassifierBaseline(SCENE).fit([Record("问题场景分类", q, a) for q, a in rows]).ngram_model()
    probs = model.probabilities(["数据清洗", "天气"])
    assert probs[:, SCENE.labels.index("通用问题")].tolist() == [0.0, 0.0]
    assert SCENE.labels[probs[0].argmax()] == "数据平台相关问题" and SCENE.labels[probs[1].argmax()] == "无关问题"


def test_a_damaged_model_file_is_named_with_the_fix(tmp_path):
    _baseline(SCENE.name).ngram_model().save(
        tmp_path / "m.json", tmp_path / "m.npz")
    (tmp_path / "m.json").write_text('{"kind": "something else"}', "utf-8")
    with pytest.raises(ExportFormatError, match=r"m\.json does not read .*export again with --cascade"):
        NgramModel.load(tmp_path / "m.json", tmp_path / "m.npz")


def _brute_force_ok(conf, ngram_right, adapter_right, threshold, max_drop):
    decided = conf >= threshold if threshold is not None else np.zeros(len(conf), bool)
    right = np.where(decided, ngram_right, adapter_right).sum()
    best = max(ngram_right.sum(), adapter_right.sum())
    return 100 * right / len(conf) >= 100 * best / len(conf) - max_drop - 1e-9


def test_the_threshold_lets_the_ngram_model_decide_all_it_can_within_half_a_point():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, labels = int(rng.integers(5, 300)), 3
        gold = rng.integers(0, labels, n)
        probs = rng.dirichlet(np.ones(labels) * 0.5, n)
        peaked = rng.random(n) < 0.6  # most rows sure of the right label, to a varying degree
        sure = rng.random(peaked.sum())[:, None]
        probs[peaked] = np.eye(labels)[gold[peaked]] * sure + (1 - sure) / labels
        adapter = np.where(rng.random(n) < 0.8, gold, rng.integers(0, labels, n))
        fit = fit_threshold(probs, {"run": adapter}, gold)
        conf, ngram_right, adapter_right = probs.max(1), probs.argmax(1) == gold, adapter == gold
        assert _brute_force_ok(conf, ngram_right, adapter_right, fit["threshold"], 0.5), trial
        lower = [c for c in np.unique(conf) if fit["threshold"] is None or c < fit["threshold"]]
        assert not any(_brute_force_ok(conf, ngram_right, adapter_right, c, 0.5) for c in lower), trial
        share = (conf >= fit["threshold"]).mean() if fit["threshold"] is not None else 0.0
        assert fit["runs"]["run"]["ngram_share"] == round(100 * share, 2)


def test_an_ngram_model_better_than_the_adapter_decides_everything_and_a_useless_one_nothing():
    gold = np.array([0, 1, 2, 0, 1, 2])
    sure_and_right = np.eye(3)[gold] * 0.9 + 0.1 / 3
    wrong_adapter = (gold + 1) % 3
    fit = fit_threshold(sure_and_right, {"run": wrong_adapter}, gold)
    assert fit["runs"]["run"] == {"adapter_accuracy": 0.0, "cascade_accuracy": 100.0, "ngram_share": 100.0}
    sure_and_wrong = np.eye(3)[(gold + 1) % 3] * 0.9 + 0.1 / 3
    fit = fit_threshold(sure_and_wrong, {"run": gold}, gold)
    assert fit["threshold"] is None and fit["runs"]["run"]["ngram_share"] == 0.0


def test_the_threshold_holds_for_every_exported_run():
    gold = np.array([0, 0, 0, 0])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])  # right on the first two only
    one = fit_threshold(probs, {"fp32": np.array([0, 0, 1, 1])}, gold)
    both = fit_threshold(probs, {"fp32": np.array([0, 0, 1, 1]), "int8": np.array([0, 0, 0, 0])}, gold)
    assert one["threshold"] == 0.6  # fp32 misses the last two as well: the n-gram model may decide all four
    assert both["threshold"] == 0.8  # int8 gets those two right: the n-gram model takes only the first two
    assert both["runs"]["int8"] == {"adapter_accuracy": 100.0, "cascade_accuracy": 100.0, "ngram_share": 50.0}


# ------------------------------------------------------------------ the predictor


class _Sure:
    """A first pass that decides the texts it knows, with a label and confidence of its own."""

    def __init__(self, known: dict[str, int]):
        self.known = known

    def first_pass(self, texts):
        return [None if t not in self.known else
                {"predicted_label": SCENE.labels[self.known[t]], "confidence": 0.99,
                 "probabilities": {label: 0.99 if i == self.known[t] else 0.005
                                   for i, label in enumerate(SCENE.labels)},
                 "decided_by": "ngram"} for t in texts]


def _cascading(backend, known):
    backend.cascades = {SCENE.name: _Sure(known)}
    return TaskPredictor(backend, PredictorOptions(cascade=True))


def test_the_adapter_runs_only_for_what_the_first_pass_leaves():
    backend = LookupBackend({"数据清洗流程是什么？": [3.0, 0.0, 0.0], "今天天气怎么样": [0.0, 0.2, 3.0]})
    predictor = _cascading(backend, {"周末去哪儿吃火锅": 2})
    results = predictor.predict_batch(SCENE.name, ["周末去哪儿吃火锅", "今天天气怎么样", "周末去哪儿吃火锅"])
    assert [r["decided_by"] for r in results] == ["ngram", "adapter", "ngram"]
    assert [r["predicted_label"] for r in results] == ["无关问题"] * 3
    assert backend.calls == 1
    backend.calls = 0
    assert predictor.predict(SCENE.name, "周末去哪儿吃火锅")["decided_by"] == "ngram" and backend.calls == 0
    mixed = predictor.predict_mixed([(SCENE.name, "周末去哪儿吃火锅"), (SCENE.name, "数据清洗流程是什么？")])
    assert [r["decided_by"] for r in mixed] == ["ngram", "adapter"]


def test_without_the_cascade_results_are_as_before():
    backend = LookupBackend({"今天天气怎么样": [0.0, 0.2, 3.0]})
    backend.cascades = {SCENE.name: _Sure({"今天天气怎么样": 0})}
    result = TaskPredictor(backend).predict(SCENE.name, "今天天气怎么样")
    assert "decided_by" not in result and result["predicted_label"] == "无关问题"


def test_the_cascade_needs_a_source_that_has_one():
    with pytest.raises(ConfigError, match="export --cascade`; lookup has none"):
        TaskPredictor(LookupBackend({}), PredictorOptions(cascade=True))


def test_a_step_with_no_threshold_leaves_every_question_to_the_adapter():
    model = _baseline(SCENE.name).ngram_model()
    assert CascadeStep(model, None).first_pass(["今天天气怎么样"]) == [None]
    sure = CascadeStep(model, 0.0).first_pass(["今天天气怎么样"])[0]
    assert sure["decided_by"] == "ngram" and sure["predicted_label"] in SCENE.labels


# ------------------------------------------------------------------ an export with --cascade (slow: exports)

_EXPORTS: dict[str, object] = {}


def _cascade_export(exported, tmp_path_factory):
    """The session's four-task hub exported once more, with the cascade (multi layout, fp32: seconds)."""
    if "out" not in _EXPORTS:
        from lora_router.export import export_hub
        from support.export import _decisive_records

        out = tmp_path_factory.mktemp("cascade") / "out"
        _EXPORTS["manifest"] = export_hub(exported.base, exported.hub, out, layout="multi", quantize="none",
                                          parity=False, progress=False, cascade=True,
                                          parity_records=_decisive_records())
        _EXPORTS["out"] = out
    return _EXPORTS["out"], _EXPORTS["manifest"]


def _questions():
    from lora_router.evaluation.chain import bundled_chain_cases, read_chain_cases
    from support.export import ASK

    return ASK + [c.question for c in read_chain_cases(bundled_chain_cases())[::6]]


def test_an_export_with_cascade_lists_its_files_and_keeps_each_step_within_the_bound(exported, tmp_path_factory):
    out, manifest = _cascade_export(exported, tmp_path_factory)
    tasks = manifest.cascade["tasks"]
    assert set(tasks) == {"question_classifier", "question_type_classifier"}  # classification steps only
    for info in tasks.values():
        assert {info["model"], info["weights"]} <= set(manifest.files)
        assert (out / info["model"]).is_file() and info["model"].startswith("cascade/")
        figures = info["held_out"]["runs"]["multi/fp32"]
        best = max(figures["adapter_accuracy"], info["held_out"]["ngram_accuracy"])
        assert figures["cascade_accuracy"] >= best - manifest.cascade["max_drop"]


def test_with_the_cascade_the_ngram_model_decides_the_steps_it_is_sure_of_and_the_trace_says_so(
        exported, tmp_path_factory):
    from lora_router.backends.onnx import OnnxRouter

    out, manifest = _cascade_export(exported, tmp_path_factory)
    questions = _questions()
    step_by_step = OnnxRouter(out, cascade=True, speculate=False)
    one_call = OnnxRouter(out, cascade=True, speculate=True)
    plain = OnnxRouter(out, speculate=False)
    cascaded, speculated, adapters = (r.ask_batch(questions) for r in (step_by_step, one_call, plain))

    def steps(answer):
        return [(s["task"], s["result"].get("predicted_label"), s["result"].get("decided_by")) for s in answer["steps"]]

    assert [steps(a) for a in cascaded] == [steps(a) for a in speculated]  # one call or step by step: same answers
    assert [a["route"] for a in cascaded] == [a["route"] for a in speculated]
    for answer in cascaded:  # the trace names the model that decided each classification step
        assert [t["model"].get("decided_by") for t in answer["trace"]["steps"]] == \
            [s["result"].get("decided_by") for s in answer["steps"]]
    assert all("decided_by" not in t["model"] for a in adapters for t in a["trace"]["steps"])
    decided = {"ngram": 0, "adapter": 0}
    for answer, alone in zip(cascaded, adapters):
        for step, adapter_step in zip(answer["steps"], alone["steps"]):
            task, result = step["task"], step["result"]
            assert "decided_by" not in adapter_step["result"]
            if task not in manifest.cascade["tasks"]:
                assert "decided_by" not in result
                continue
            model, threshold = step_by_step.cascades[task].model, manifest.cascade["tasks"][task]["threshold"]
            sure = threshold is not None and model.probabilities([answer["question"]])[0].max() >= threshold
            assert result["decided_by"] == ("ngram" if sure else "adapter")
            decided[result["decided_by"]] += 1
            if not sure:  # the adapter's own answer, as without the cascade
                assert result == {**adapter_step["result"], "decided_by": "adapter"}
            if result["predicted_label"] != adapter_step["result"]["predicted_label"]:
                break  # the chains part here
    assert decided["ngram"] > 0


def test_the_cascade_is_refused_by_an_export_without_one_and_by_a_hub(exported):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.backends.torch_peft import Router

    with pytest.raises(ConfigError, match="has no cascade .* lora-router export --cascade"):
        OnnxRouter(exported.export, cascade=True)
    with pytest.raises(ConfigError, match="export --cascade`; hub .* has none"):
        Router(exported.base, exported.hub, cascade=True)


def test_ask_and_the_service_apply_the_cascade(exported, tmp_path_factory):
    import asyncio
    import json

    from click.testing import CliRunner

    from lora_router.backends.onnx import OnnxRouter
    from lora_router.cli import main
    from lora_router.serving.service import Service
    from lora_router.serving.settings import ServeSettings

    out, _ = _cascade_export(exported, tmp_path_factory)
    result = CliRunner().invoke(main, ["ask", "--onnx", str(out), "--cascade", "--json", "今天天气怎么样"],
                                catch_exceptions=False)
    first = json.loads(result.output)["steps"][0]["result"]
    assert first["decided_by"] in ("ngram", "adapter")
    router = OnnxRouter(out, cascade=True, speculate=False)
    questions = _questions()[:12]

    async def serve():
        service = Service(None, ServeSettings(max_wait_ms=5), predictor=router)
        await service.start()
        try:
            return await service.ask(questions)
        finally:
            await service.stop()

    served = asyncio.run(serve())
    asked = router.ask_batch(questions)
    assert [[s["result"] for s in a["steps"]] for a in served] == [[s["result"] for s in a["steps"]] for a in asked]
    assert [[t["model"] for t in a["trace"]["steps"]] for a in served] == \
        [[t["model"] for t in a["trace"]["steps"]] for a in asked]


def test_the_bench_counts_the_steps_and_questions_the_ngram_model_decided():
    from lora_router.bench.cascade import _decided

    def step(decided_by=None, label="x"):
        result = {"predicted_label": label} if label else {"file_names": []}
        return {"result": {**result, **({"decided_by": decided_by} if decided_by else {})}}

    answers = [{"steps": [step("ngram"), step("ngram"), step(label=None)]},  # every classification step: n-gram
               {"steps": [step("ngram"), step("adapter")]},
               {"steps": [step("adapter")]}]
    assert _decided(answers) == {"classification_steps": 5, "ngram_step_share": 0.6, "ngram_question_share": 0.3333}
