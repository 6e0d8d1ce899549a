"""`lora-router improve`: corrections in, a better export out; a worse candidate refused with exit 3, nothing exported.

The hub starts as the conftest's tiny hub (question_classifier overfit on nine
questions). A person corrects, through the review labels, questions the
router got wrong; ``improve`` retrains on the nine + the corrections, shows
the new version right where the old was wrong, and exports it. A second week's
"corrections" contradict the test split: the new version is significantly
worse there, so ``improve`` stops with the comparison, exits 3, and the export
in service stays the one it was.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from click.testing import CliRunner

from lora_router.adapters import AdapterHub
from lora_router.cli import main
from lora_router.review import Correction, LabelsWriter, Teacher

pytestmark = pytest.mark.slow  # trains twice, exports once

SCENE = "question_classifier"
ROUTE_OF = {"数据平台相关问题": "general", "通用问题": "out_of_scope", "无关问题": "general"}  # a route that differs
NEW_QUESTIONS = ["怎么查看昨天的数据质量报告", "推荐一部好看的电影", "如何用SQL统计每天的订单数", "地球离太阳有多远",
                 "帮我看下任务队列为什么堵塞", "晚饭吃什么好"]
TRAIN = ["--epochs", "30", "--batch-size", "4", "--lr", "1e-2", "--layout", "merged", "--quantize", "none", "--quiet"]


def _correct(capture, corrections: dict[str, str]) -> None:
    """Save each question's route through the review labels, as the console does."""
    writer, teacher = LabelsWriter(capture), Teacher()
    for question, route in corrections.items():
        writer.save(teacher.lines(Correction(question, route=route)))


def _scene(router, questions: list[str]) -> list[str]:
    return [r["predicted_label"] for r in router.predict_batch(SCENE, questions)]


def test_improve_exports_a_version_right_on_the_corrections_and_refuses_one_worse_on_the_test_split(
        tiny_base, trained_hub, scene_file, tmp_path):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.backends.torch_peft import Router

    hub, export = tmp_path / "hub", tmp_path / "export"
    shutil.copytree(trained_hub.root, hub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny base is random
        said = _scene(Router(tiny_base, hub), NEW_QUESTIONS)
    week1 = tmp_path / "week1"
    _correct(week1, {q: ROUTE_OF[label] for q, label in zip(NEW_QUESTIONS, said, strict=True)})
    common = ["improve", "--hub", str(hub), "--base-model", tiny_base, "--export-to", str(export),
              "--data", str(scene_file), "--test-data", str(scene_file), *TRAIN]

    first = CliRunner().invoke(main, [*common, "--capture", str(week1), "--export-version", "week-1", "--json"],
                               catch_exceptions=False)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["promoted"] and report["reasons"] == []
    assert report["labels"] == {SCENE: len(NEW_QUESTIONS)} and report["trained"] == {SCENE: {"old": 1, "new": 2}}
    on_labels = report["comparisons"][SCENE]["labels"]
    assert on_labels["mcnemar"]["right_to_wrong"] == 0  # the old version was wrong on every correction
    fixed = {q["question"]: q["gold"] for q in on_labels["wrong_to_right"]}
    assert fixed, "the new version should get some corrections right"
    assert report["comparisons"][SCENE]["test"]["verdict"] != "worse"
    manifest = json.loads((export / "manifest.json").read_text("utf-8"))
    assert manifest["version"] == "week-1" and report["export"]["id"] == manifest["id"]
    assert _scene(OnnxRouter(export), list(fixed)) == list(fixed.values())  # the export answers as corrected
    assert json.loads((week1 / "improve").glob("*/report.json").__next__().read_text("utf-8"))["promoted"]

    week2 = tmp_path / "week2"  # "corrections" that contradict the test split
    truth = [json.loads(line) for line in scene_file.read_text("utf-8").splitlines()]
    _correct(week2, {row["input"]: ROUTE_OF[row["output"]] for row in truth})
    second = CliRunner().invoke(main, [*common, "--capture", str(week2), "--work", str(tmp_path / "run2")],
                                catch_exceptions=False)
    assert second.exit_code == 3, second.output
    assert "significantly worse" in second.output and "right -> wrong" in second.output
    assert json.loads((export / "manifest.json").read_text("utf-8"))["id"] == manifest["id"]  # untouched
    refused = json.loads((tmp_path / "run2" / "report.json").read_text("utf-8"))
    assert not refused["promoted"] and refused["export"] is None
    assert AdapterHub(hub).versions(SCENE) == [1, 2, 3]  # the refused version is kept, numbered, not exported
