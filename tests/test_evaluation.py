"""lora_router.evaluation: torch-free, scikit-learn's figures in numpy, one headline per kind, the int8 comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lora_router.config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from lora_router.evaluation.comparison import compare_metric, metric_drop
from lora_router.evaluation.metrics import best_epoch_score, classification_metrics, headline
from support.isolation import run_refusing


def test_evaluation_imports_and_scores_in_the_deploy_install():
    code = """
import importlib, pkgutil
import lora_router.evaluation as evaluation
for module in pkgutil.iter_modules(evaluation.__path__):
    importlib.import_module("lora_router.evaluation." + module.name)
from lora_router.evaluation.metrics import classification_metrics, headline
from lora_router.evaluation.calibration import calibration_report
from lora_router.evaluation.comparison import compare_metric
m = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b"])
assert headline("sequence_classification", m) == "macro-F1 0.667"
import numpy as np
calibration_report(np.array([[2.0, 0.0], [0.0, 1.0]]), [0, 1], 1.0)
compare_metric("span_extraction", [[(0, 2)]], [[(0, 2)]], [[]])
"""
    assert run_refusing(code)["loaded"] == []


@pytest.mark.parametrize("seed", range(12))
def test_classification_figures_are_scikit_learns(seed):
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n_labels, n = int(rng.integers(2, 7)), int(rng.integers(1, 60))
    # a few labels never given and never predicted, as on a small test split
    gold = rng.integers(0, max(1, n_labels - seed % 3), n).tolist()
    pred = rng.integers(0, n_labels, n).tolist() if seed % 4 else gold[::-1]
    labels = [f"L{i}" for i in range(n_labels)]
    idx = list(range(n_labels))
    p, r, f, s = sklearn.precision_recall_fscore_support(gold, pred, labels=idx, zero_division=0)
    expected = {
        "accuracy": round(float(sklearn.accuracy_score(gold, pred)), 4),
        "macro_f1": round(float(sklearn.f1_score(gold, pred, labels=idx, average="macro", zero_division=0)), 4),
        "per_label": {label: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                              "f1": round(float(f[i]), 4), "support": int(s[i])} for i, label in enumerate(labels)},
        "confusion_matrix": sklearn.confusion_matrix(gold, pred, labels=idx).tolist(),
        "labels": labels,
        "n": n,
    }
    got = classification_metrics(gold, pred, labels)
    assert json.dumps(got) == json.dumps(expected)  # same keys, same order, same numbers


def test_each_kind_has_one_headline_and_training_keeps_the_best_epoch_by_its_score():
    assert headline(SEQUENCE_CLASSIFICATION, {"accuracy": 0.9, "macro_f1": 0.8765}) == "macro-F1 0.876"
    assert headline(SPAN_EXTRACTION, {"precision": 1.0, "f1": 0.5}) == "span F1 0.500"
    ranking = {"top1": 0.75, "mrr": 0.8, "answer_accuracy": 0.7}
    assert headline(PAIR_RANKING, ranking) == "top-1 0.750"
    assert headline(SEQUENCE_CLASSIFICATION, {}) == "-"
    assert best_epoch_score(SEQUENCE_CLASSIFICATION, {"accuracy": 0.9, "macro_f1": 0.8}) == 0.8
    assert best_epoch_score(SPAN_EXTRACTION, {"f1": 0.5, "exact_match": 0.9}) == 0.5
    assert best_epoch_score(PAIR_RANKING, ranking) == 0.7 + 0.8


def test_the_int8_comparison_scores_each_kind_in_percent_and_names_a_drop_past_its_bound():
    assert compare_metric(SEQUENCE_CLASSIFICATION, [0, 1, 2, 1], [0, 1, 2, 0], [0, 1, 1, 0]) == {
        "metric": "accuracy", "metric_pytorch": 75.0, "metric_onnx": 50.0, "metric_drop_points": 25.0}
    spans = compare_metric(SPAN_EXTRACTION, [[(0, 3)], [(2, 4)]], [[(0, 3)], [(2, 4)]], [[(0, 3)], []])
    assert (spans["metric"], spans["metric_pytorch"], spans["metric_onnx"]) == ("exact-span F1", 100.0, 66.67)
    answers = [{"candidates": [{"id": "a"}, {"id": "b"}], "answer": "x"}, {"candidates": [{"id": "b"}], "answer": ""}]
    ranked = compare_metric(PAIR_RANKING, ["a", None], answers, answers[::-1], threshold=0.5)
    assert ranked == {"metric": "top-1", "metric_pytorch": 100.0, "metric_onnx": 0.0, "metric_drop_points": 100.0,
                      "answer_accuracy_pytorch": 100.0, "answer_accuracy_onnx": 0.0}
    figures = {**spans, "span_agreement": 0.5, "near_tie_tokens": 3}
    assert metric_drop(figures, "span_agreement", 40) is None
    assert metric_drop(figures, "span_agreement") == ("exact-span F1 66.67 vs PyTorch 100.00 (33.33 points lower, "
                                                      "bound 1; agreement 50.00%, near-ties 3)")
