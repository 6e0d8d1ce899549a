"""`lora-router improve`: corrections in, a better export out; a worse candidate refused with exit 3, nothing exported.

The hub starts as the conftest's tiny hub (question_classifier overfit on nine
questions). A person corrects, through the review labels, questions the
router got wrong; ``improve`` retrains on the nine + the corrections, shows
the new version right where the old was wrong, and exports it. In a second
week the reviewers only confirmed what the router said: a new version cannot
get more of those right, so ``improve`` stops with the comparison, exits 3,
the export in service stays the one it was, and the hub serves the version
it served before (the refused one kept, rejected, loadable by its number).
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

SCENE = "question_classifier"
OTHER = {"数据平台相关问题": "通用问题", "通用问题": "无关问题", "无关问题": "通用问题"}  # a label that differs
NEW_QUESTIONS = ["怎么查看昨天的数据质量报告", "推荐一部好看的电影", "如何用SQL统计每天的订单数", "地球离太阳有多远",
                 "帮我看下任务队列为什么堵塞", "晚饭吃什么好"]
# Every epoch, plain batches: the test overfits six corrections on purpose (as the fixtures in conftest do).
TRAIN = ["--epochs", "30", "--batch-size", "4", "--lr", "1e-2", "--patience", "0", "--no-group-by-length",
         "--layout", "merged", "--quantize", "none", "--quiet"]


def _correct(capture, corrections: dict[str, str]) -> None:
    """Save each question's scene label through the review labels, as the console does."""
    writer, teacher = LabelsWriter(capture), Teacher()
    for question, label in corrections.items():
        writer.save(teacher.lines(Correction(question, labels={SCENE: label})))


def _scene(router, questions: list[str]) -> list[str]:
    return [r["predicted_label"] for r in router.predict_batch(SCENE, questions)]


@pytest.mark.slow  # trains twice, exports once (trained_hub marks it too)
def test_improve_exports_a_version_right_on_the_corrections_and_a_refused_one_is_never_shipped_later(
        tiny_base, trained_hub, scene_file, tmp_path):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.backends.torch_peft import Router

    hub, export = tmp_path / "hub", tmp_path / "export"
    shutil.copytree(trained_hub.root, hub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny base is random
        said = _scene(Router(tiny_base, hub), NEW_QUESTIONS)
    week1 = tmp_path / "week1"
    _correct(week1, {q: OTHER[label] for q, label in zip(NEW_QUESTIONS, said, strict=True)})
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

    week2 = tmp_path / "week2"  # the reviewers confirmed what v2 says: nothing a new version can do better
    questions = [json.loads(line)["input"] for line in scene_file.read_text("utf-8").splitlines()] + NEW_QUESTIONS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _correct(week2, dict(zip(questions, _scene(Router(tiny_base, hub), questions), strict=True)))
    # Another seed: the same data as week 1 would train v2's very weights again, and the test must tell them apart.
    second = CliRunner().invoke(main, [*common, "--capture", str(week2), "--work", str(tmp_path / "run2"),
                                       "--seed", "1"], catch_exceptions=False)
    assert second.exit_code == 3, second.output
    assert "not promoted: question_classifier v3 is not better than v2 on the corrections" in second.output
    assert "McNemar" in second.output  # the comparison is printed
    assert json.loads((export / "manifest.json").read_text("utf-8"))["id"] == manifest["id"]  # untouched
    refused = json.loads((tmp_path / "run2" / "report.json").read_text("utf-8"))
    assert not refused["promoted"] and refused["export"] is None
    assert refused["rejected"] == {SCENE: {"rejected": 3, "current": 2}}

    # The refused v3 is kept and listed as rejected, but the hub serves v2 again: a later plain export ships v2.
    store = AdapterHub(hub)
    assert store.versions(SCENE) == [1, 2, 3] and store.latest_version(SCENE) == 2
    listed = {r["version"]: r for r in json.loads(CliRunner().invoke(
        main, ["hub", "versions", SCENE, "--hub", str(hub), "--json"], catch_exceptions=False).stdout)}
    assert listed[2]["current"] and listed[3]["rejected"]["reasons"] == refused["reasons"]
    assert any(listed[3]["rejected"]["comparison"]["labels"]["headline"] in r for r in refused["reasons"])
    v2_sha, v3_sha = (AdapterHub(f"{hub}@{SCENE}=v{v}").adapter_sha256(SCENE) for v in (2, 3))
    assert v2_sha != v3_sha
    later = CliRunner().invoke(main, ["export", "--hub", str(hub), "--base-model", tiny_base, "--out",
                                      str(tmp_path / "later"), "--layout", "merged", "--quantize", "none"],
                               catch_exceptions=False)
    assert later.exit_code == 0, later.output
    shipped = json.loads((tmp_path / "later" / "tasks" / SCENE / "task.json").read_text("utf-8"))
    assert shipped["adapter_sha256"] == v2_sha and shipped["version"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_name = Router(tiny_base, f"{hub}@{SCENE}=v3")  # still loadable, for a look at what was refused
    assert v3_sha.startswith(by_name.model_identity(SCENE)["adapter"])
    assert len(_scene(by_name, NEW_QUESTIONS)) == len(NEW_QUESTIONS)


def _report(old_right: list[bool], new_right: list[bool], data: str) -> dict:
    """``compare_task``'s report for two classifiers that were right where given (labels 0/1, gold all 0)."""
    import numpy as np

    from lora_router.config import SEQUENCE_CLASSIFICATION
    from lora_router.evaluation.compare import _compare

    def side(right: list[bool]):
        pred = np.array([0 if r else 1 for r in right])
        gold = np.zeros(len(right), dtype=int)
        return ({"right": pred == gold, "pred": pred, "gold": gold, "n_labels": np.array(2)},
                ["a" if r else "b" for r in right], ["a"] * len(right))

    questions = [{"line": i + 1, "question": f"q{i}"} for i in range(len(old_right))]
    return {"data": data, **_compare(SEQUENCE_CLASSIFICATION, [side(old_right), side(new_right)], questions,
                                     alpha=0.05, resamples=200, seed=0)}


def test_the_promotion_gate_refuses_a_version_worse_on_the_test_split_or_no_better_on_the_corrections():
    from lora_router.improve import refusals

    versions = {"old": 4, "new": 5}
    fixed = _report([False] * 5, [True] * 5, "labels.jsonl")  # 5 wrong -> right
    same = _report([True] * 40, [True] * 40, "test.jsonl")
    worse = _report([True] * 40, [False] * 10 + [True] * 30, "test.jsonl")  # 10 right -> wrong: p < 0.01
    a_bit_worse = _report([True] * 40, [False] + [True] * 39, "test.jsonl")  # 1 right -> wrong: not significant
    unchanged = _report([False, True, True], [False, True, True], "labels.jsonl")
    traded = _report([False, True], [True, False], "labels.jsonl")  # one fixed, one broken

    assert refusals("t", versions, fixed, same) == []
    assert refusals("t", versions, fixed, a_bit_worse) == []
    (why,) = refusals("t", versions, fixed, worse)
    assert why.startswith("t v5 is significantly worse than v4 on test.jsonl (accuracy 1.0 -> 0.75, 10 right -> wrong")
    for labels in (unchanged, traded):
        (why,) = refusals("t", versions, labels, same)
        assert why.startswith("t v5 is not better than v4 on the corrections")
    assert len(refusals("t", versions, unchanged, worse)) == 2


def test_an_improve_run_stopped_after_training_rejects_what_it_trained(tmp_path, monkeypatch):
    """Ctrl-C (or any error) between training and export: the hub goes back to what it served, the reason kept."""
    import lora_router.improve as improve_module
    import lora_router.training as training
    from lora_router.adapters import ADAPTER_FILES

    def write(tag):
        def fill(folder):
            for name in ADAPTER_FILES:
                (folder / name).write_text(json.dumps({"tag": tag, "task": {
                    "name": SCENE, "instruction": "问题场景分类", "kind": "sequence_classification",
                    "labels": list(OTHER)}, "base_model": {"name": "b", "fingerprint": "abc"}}))
        return fill

    hub = AdapterHub(tmp_path / "hub")
    hub.save(SCENE, write("in service"))

    def train(spec, *, hub, **_):  # stands in for training: saves a new version as training.train does
        hub.save(spec.name, write("retrained"))
        return hub.manifest(spec.name)

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", train)
    monkeypatch.setattr(improve_module, "_router", interrupted)  # stopped while loading the routers to compare
    _correct(tmp_path / "capture", {NEW_QUESTIONS[0]: "通用问题"})
    with pytest.raises(KeyboardInterrupt):
        improve_module.improve(tmp_path / "capture", hub.root, "unused-base", tmp_path / "export",
                               work_dir=tmp_path / "work")
    reopened = AdapterHub(hub.root)
    assert reopened.latest_version(SCENE) == 1 and reopened.manifest(SCENE).extra["tag"] == "in service"
    assert "stopped before it could export" in reopened.rejection(SCENE, 2)["reasons"][0]
    report = json.loads((tmp_path / "work" / "report.json").read_text("utf-8"))
    assert report["rejected"] == {SCENE: {"rejected": 2, "current": 1}} and "KeyboardInterrupt" in report["error"]
    assert not (tmp_path / "export").exists()
