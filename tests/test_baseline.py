"""The simple baselines eval scores beside every adapter."""

from __future__ import annotations

import json

from conftest import SCENE_ROWS
from lora_router.data import Record, load_bundled
from lora_router.evaluation.baselines import TextClassifierBaseline, baseline_for, file_names
from lora_router.tasks import get_task


def _scene(rows):
    return [Record("问题场景分类", q, a) for q, a in rows]


def test_the_regex_baseline_finds_file_names_and_stops_at_brackets_and_spaces():
    def found(text):
        return [text[a:b] for a, b in file_names(text)]

    # simple on purpose: a run takes the Chinese characters before a name too
    assert found("把/data/raw/user_log.parquet和orders.csv合并") == ["把/data/raw/user_log.parquet", "和orders.csv"]
    assert found("帮我把《2024年度财务报告.xlsx》发给财务部") == ["2024年度财务报告.xlsx"]
    assert found("看看 kafka-connect-hdfs.properties 的配置") == ["kafka-connect-hdfs.properties"]
    assert found("重跑一下昨天失败的同步任务") == []
    assert found("版本号是3.5吗") == []  # a digit is no extension


def test_the_classifier_baseline_learns_its_training_split():
    model = TextClassifierBaseline(get_task("question_classifier")).fit(_scene(SCENE_ROWS * 3))
    probs = model.predict_proba([q for q, _ in SCENE_ROWS])
    labels = get_task("question_classifier").labels
    assert [labels[i] for i in probs.argmax(-1)] == [a for _, a in SCENE_ROWS]
    assert probs.shape == (len(SCENE_ROWS), 3) and abs(probs.sum(-1) - 1).max() < 1e-9


def test_baselines_on_the_bundled_splits_are_real_contenders():
    for task in ("question_classifier", "question_type_classifier"):
        b = baseline_for(get_task(task), load_bundled(task, "train"), load_bundled(task, "test"))
        assert b["name"].startswith("char 1-3-gram") and b["metrics"]["accuracy"] > 0.8
        assert 0.0 <= b["metrics"]["ece"] <= 1.0
    files = baseline_for(get_task("file_name_pick"), load_bundled("file_name_pick", "train"),
                         load_bundled("file_name_pick", "test"))
    assert files["name"].startswith("regex") and files["metrics"]["f1"] > 0.8


def test_the_retrieval_baseline_scores_knowledge_base_answers():
    from lora_router.data.bundled import bundled_knowledge_base
    from lora_router.kb import Answerer

    b = baseline_for(get_task("question_answer"), load_bundled("question_answer", "train"),
                     load_bundled("question_answer", "test"), answerer=Answerer(bundled_knowledge_base()))
    m = b["metrics"]
    assert b["name"].startswith("retrieval only")
    assert {"top1", "mrr", "no_answer_precision", "answer_accuracy", "threshold"} <= set(m) and m["top1"] > 0.3


def test_no_baseline_without_two_labels_to_learn():
    assert baseline_for(get_task("question_classifier"), _scene(SCENE_ROWS[:2]), _scene(SCENE_ROWS)) is None
    assert baseline_for(get_task("question_classifier"), [], _scene(SCENE_ROWS)) is None


def test_training_and_eval_put_the_baseline_beside_the_adapter(trained_hub, tiny_base, scene_file):
    from click.testing import CliRunner

    from lora_router.cli import main

    saved = trained_hub.manifest("question_classifier").baseline
    assert saved["metrics"]["n"] == len(SCENE_ROWS)
    args = ["eval", "--task", "question_classifier", "--data", str(scene_file), "--base-model", tiny_base,
            "--hub", str(trained_hub.root)]
    scored = json.loads(CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False).stdout)
    assert scored["baseline"]["trained_on"] == f"all of {scene_file}"  # trained with --test-data: all of it
    assert scored["baseline"]["metrics"]["accuracy"] == saved["metrics"]["accuracy"]
    table = CliRunner().invoke(main, args, catch_exceptions=False).output
    assert "adapter  baseline" in table and "char 1-3-gram TF-IDF + logistic regression" in table
    none = json.loads(CliRunner().invoke(main, [*args, "--json", "--no-baseline"], catch_exceptions=False).stdout)
    assert "baseline" not in none


def test_train_output_names_the_baseline_and_the_temperature(trained_hub, capsys):
    from lora_router.cli._output import print_trained

    print_trained(trained_hub.manifest("question_classifier"))
    out = capsys.readouterr().out
    assert "baseline (char 1-3-gram TF-IDF + logistic regression): accuracy" in out
    assert "confidence: temperature" in out and "ECE" in out
