"""Temperature scaling: fitted at training, applied by both routers, reported by eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lora_router.evaluation.calibration import (
    calibrate,
    cross_fitted_ece,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax_rows,
)


@pytest.fixture()
def run():
    from click.testing import CliRunner

    from lora_router.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def _sampled(temperature: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature): that temperature calibrates them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 3))
    probs = softmax_rows(logits, temperature)
    gold = np.array([rng.choice(3, p=p) for p in probs])
    return logits, gold


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_the_fit_finds_the_temperature_that_generated_the_labels(true_t):
    logits, gold = _sampled(true_t)
    assert fit_temperature(logits, gold) == pytest.approx(true_t, rel=0.1)


def test_an_overconfident_model_loses_most_of_its_calibration_error():
    logits, gold = _sampled(3.0)
    t = fit_temperature(logits, gold)
    before = expected_calibration_error(softmax_rows(logits), gold)
    after = expected_calibration_error(softmax_rows(logits, t), gold)
    assert before > 0.1 and after < before / 3
    report = calibrate(logits, gold, "test split")
    assert report["temperature"] == t and report["ece_after"] < report["ece_before"]
    assert report["nll_after"] <= report["nll_before"]


def test_cross_fitting_gives_an_honest_after_figure():
    logits, gold = _sampled(3.0, n=2000)
    before = expected_calibration_error(softmax_rows(logits), gold)
    honest = cross_fitted_ece(logits, gold)
    in_sample = expected_calibration_error(softmax_rows(logits, fit_temperature(logits, gold)), gold)
    assert honest < before / 3 and abs(honest - in_sample) < 0.03


def test_a_split_without_errors_never_sharpens():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [4.0, 1.0]])
    assert fit_temperature(logits, [0, 1, 0]) >= 1.0


def test_reliability_bins_hold_every_example_once_and_ece_weighs_them():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [1.0, 0.0]])
    gold = [0, 1, 0, 0]
    bins = reliability_bins(probs, gold)
    assert sum(b["n"] for b in bins) == 4
    assert bins[9] == {"low": 0.9, "high": 1.0, "n": 3, "confidence": pytest.approx(0.9667, abs=1e-4),
                       "accuracy": pytest.approx(0.6667, abs=1e-4)}
    # (3 * |0.6667 - 0.9667| + 1 * |1 - 0.55|) / 4
    assert expected_calibration_error(probs, gold) == pytest.approx((3 * 0.3 + 0.45) / 4, abs=1e-4)


def test_training_saves_a_temperature_and_routers_divide_logits_by_it(trained_hub, tiny_base):
    from lora_router.backends.torch_peft import Router

    saved = trained_hub.manifest("question_classifier").calibration
    assert saved["method"] == "temperature" and saved["temperature"] > 0 and saved["n"] == 9
    router = Router(tiny_base, trained_hub, tasks=["question_classifier"])
    assert router.temperature("question_classifier") == saved["temperature"]
    text = "数据清洗流程是什么？"
    logits = router.logits("question_classifier", router.encoders["question_classifier"].encode_batch([text]))[0]
    router.manifests["question_classifier"].calibration = {"temperature": 2.5}
    probs = router.predict("question_classifier", text)["probabilities"]
    expected = softmax_rows(logits[None], 2.5)[0]
    assert list(probs.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_an_adapter_trained_before_calibration_uses_temperature_one(trained_hub, tiny_base):
    from lora_router.backends.torch_peft import Router

    router = Router(tiny_base, trained_hub, tasks=["question_classifier"])
    router.manifests["question_classifier"].calibration = None
    assert router.temperature("question_classifier") == 1.0
    text = "今天天气怎么样"
    logits = router.logits("question_classifier", router.encoders["question_classifier"].encode_batch([text]))[0]
    probs = router.predict("question_classifier", text)["probabilities"]
    assert list(probs.values()) == pytest.approx(softmax_rows(logits[None])[0].tolist(), abs=1e-6)


@pytest.mark.slow
def test_the_export_ships_the_temperature_and_the_onnx_router_applies_it(exported):
    from lora_router.backends.onnx import OnnxRouter

    shipped = json.loads((exported.export / "tasks/question_classifier/task.json").read_text("utf-8"))
    assert shipped["calibration"] == exported.hub.manifest("question_classifier").calibration
    onnx = OnnxRouter(exported.export, layout="merged", precision="fp32", tasks=["question_classifier"])
    assert onnx.temperature("question_classifier") == shipped["calibration"]["temperature"]
    onnx.manifests["question_classifier"].calibration = {"temperature": 3.0}
    text = "帮我把sales_2024.csv导入到ODS层"
    logits = onnx.logits("question_classifier", onnx.encoders["question_classifier"].encode_batch([text]))[0]
    probs = onnx.predict("question_classifier", text)["probabilities"]
    assert list(probs.values()) == pytest.approx(softmax_rows(logits[None], 3.0)[0].tolist(), abs=1e-6)


def test_eval_reports_ece_before_and_after_and_draws_a_reliability_diagram(run, trained_hub, tiny_base, scene_file,
                                                                          tmp_path):
    out = run("eval", "--task", "question_classifier", "--data", scene_file, "--base-model", tiny_base,
              "--hub", trained_hub.root, "--json", "--plot", tmp_path / "cm.png")
    scored = json.loads(out.stdout)
    cal = scored["calibration"]
    assert {"ece_before", "ece_after", "temperature", "bins_before", "bins_after"} <= set(cal)
    assert cal["fitted_on_this_data"] is True  # the scene file was the held-out split too
    assert 0.0 <= cal["ece_after_cross_fitted"] <= 1.0
    assert (tmp_path / "cm.png").stat().st_size > 1000
    assert (tmp_path / "cm.reliability.png").stat().st_size > 1000
    table = run("eval", "--task", "question_classifier", "--data", scene_file, "--base-model", tiny_base,
                "--hub", trained_hub.root).output
    assert "ECE before temperature" in table and "optimistic" in table
