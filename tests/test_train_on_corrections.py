"""`train --data A --data B`: the merged data trains a new version; the previous one stays loadable."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from lora_router.adapters import AdapterHub
from lora_router.cli import main

pytestmark = pytest.mark.slow  # trains twice

TRAIN = ["--epochs", "2", "--batch-size", "8", "--quiet", "--json"]


def test_retraining_on_corrections_saves_version_2_and_version_1_still_answers(tiny_base, scene_file, tmp_path):
    from lora_router.backends.torch_peft import Router

    hub = tmp_path / "hub"
    fix = tmp_path / "labels.jsonl"
    fix.write_text(json.dumps({"instruction": "问题场景分类", "input": "今天天气怎么样", "output": "通用问题"},
                              ensure_ascii=False) + "\n", "utf-8")
    run = CliRunner().invoke
    common = ["train", "--task", "question_classifier", "--base-model", tiny_base, "--hub", str(hub),
              "--test-data", str(scene_file), *TRAIN]
    first = run(main, [*common, "--data", str(scene_file)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny base is random
        before = Router(tiny_base, hub).predict_batch("question_classifier", ["今天天气怎么样", "什么是机器学习？"])

    refused = run(main, [*common, "--data", str(scene_file), "--data", str(fix)])
    assert refused.exit_code == 1 and f"{fix}:1 says '通用问题'" in refused.output
    assert AdapterHub(hub).versions("question_classifier") == [1]  # nothing written

    second = run(main, [*common, "--data", str(scene_file), "--data", str(fix), "--prefer-last"],
                 catch_exceptions=False)
    assert second.exit_code == 0, second.output
    (trained,) = json.loads(second.stdout)
    assert trained["version"] == 2
    assert [(f["file"], f["lines"], f["used"]) for f in trained["data_files"]] == [
        (str(scene_file), 9, 8), (str(fix), 1, 1)]
    assert AdapterHub(hub).versions("question_classifier") == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v1 = Router(tiny_base, f"{hub}@question_classifier=v1")
    assert v1.manifests["question_classifier"].version == 1
    assert v1.predict_batch("question_classifier", ["今天天气怎么样", "什么是机器学习？"]) == before
