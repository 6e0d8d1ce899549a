"""lora-router eval --chain: route accuracy, per-route precision/recall, files, answers, where errors start."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from lora_router.core.chain import Chain, run_chain
from lora_router.errors import DataError
from lora_router.evaluation.chain import ChainCase, bundled_chain_cases, evaluate_chain, read_chain_cases


class _KB:
    def __init__(self, ids):
        self.entries = [type("Entry", (), {"id": i, "answer": f"answer of {i}"})() for i in ids]
        self.path = "kb.jsonl"

    def by_answer(self):
        return {e.answer: e for e in self.entries}


class ScriptedRouter:
    """The real chain over scripted step results: {(task, question): result}."""

    def __init__(self, script: dict, kb_ids=("ods-vs-dwd", "clean-flow")):
        self.chain = Chain.load()
        self.script = script
        self.specs = {t: type("Spec", (), {"kind": k})() for t, k in [
            ("question_classifier", "sequence_classification"), ("question_type_classifier", "sequence_classification"),
            ("file_name_pick", "span_extraction"), ("question_answer", "pair_ranking")]}
        self._answerer = type("Answerer", (), {"knowledge_base": _KB(kb_ids)})()

    def answerer(self, task):
        return self._answerer

    def _predict(self, task, texts):
        return [self.script[(task, t)] for t in texts]

    def ask_batch(self, texts):
        return run_chain(self.chain, texts, self._predict, set(self.specs))


def _label(label, confidence=0.9):
    return {"predicted_label": label, "confidence": confidence}


PLATFORM, GENERAL, OFF = "数据平台相关问题", "通用问题", "无关问题"
ANSWER, TASK = "问题回答", "任务处理"

SCRIPT = {
    # right all the way: an answer, a task with two files, a general and an off-topic question
    ("question_classifier", "ODS层和DWD层有什么区别"): _label(PLATFORM),
    ("question_type_classifier", "ODS层和DWD层有什么区别"): _label(ANSWER),
    ("question_answer", "ODS层和DWD层有什么区别"): {"answer": "answer of ods-vs-dwd", "kb_id": "ods-vs-dwd"},
    ("question_classifier", "把a.csv和b.xlsx合并"): _label(PLATFORM),
    ("question_type_classifier", "把a.csv和b.xlsx合并"): _label(TASK),
    ("file_name_pick", "把a.csv和b.xlsx合并"): {"file_names": ["b.xlsx", "a.csv"], "spans": []},
    ("question_classifier", "什么是机器学习"): _label(GENERAL),
    ("question_classifier", "周末吃火锅"): _label(OFF),
    # wrong at the first step (a platform task called general)
    ("question_classifier", "重跑同步任务"): _label(GENERAL),
    # wrong at the second step (an answer question called a task)
    ("question_classifier", "怎么申请权限"): _label(PLATFORM),
    ("question_type_classifier", "怎么申请权限"): _label(TASK),
    ("file_name_pick", "怎么申请权限"): {"file_names": [], "spans": []},
    # uncertain at the first step (0.4 < threshold 0.5)
    ("question_classifier", "嗯"): _label(OFF, 0.4),
    # right route, wrong files
    ("question_classifier", "导入c.csv"): _label(PLATFORM),
    ("question_type_classifier", "导入c.csv"): _label(TASK),
    ("file_name_pick", "导入c.csv"): {"file_names": ["导入c.csv"], "spans": []},
    # right route, answered although no entry answers it; and rightly no answer
    ("question_classifier", "集群几台机器"): _label(PLATFORM),
    ("question_type_classifier", "集群几台机器"): _label(ANSWER),
    ("question_answer", "集群几台机器"): {"answer": "answer of clean-flow", "kb_id": "clean-flow"},
    ("question_classifier", "机房在哪"): _label(PLATFORM),
    ("question_type_classifier", "机房在哪"): _label(ANSWER),
    ("question_answer", "机房在哪"): {"answer": "", "kb_id": None},
}

CASES = [
    ChainCase("ODS层和DWD层有什么区别", "answer", (), "ods-vs-dwd", 1),
    ChainCase("把a.csv和b.xlsx合并", "task", ("a.csv", "b.xlsx"), None, 2),
    ChainCase("什么是机器学习", "general", (), None, 3),
    ChainCase("周末吃火锅", "out_of_scope", (), None, 4),
    ChainCase("重跑同步任务", "task", (), None, 5),
    ChainCase("怎么申请权限", "answer", (), "clean-flow", 6),
    ChainCase("嗯", "out_of_scope", (), None, 7),
    ChainCase("导入c.csv", "task", ("c.csv",), None, 8),
    ChainCase("集群几台机器", "answer", (), None, 9),
    ChainCase("机房在哪", "answer", (), None, 10),
]


def test_route_figures_count_every_question_once():
    r = evaluate_chain(ScriptedRouter(SCRIPT), CASES)
    assert r["n"] == 10
    assert r["route_accuracy"] == 0.7  # 5, 6 and 7 take the wrong route
    assert r["uncertain"] == 1
    assert r["routes"]["general"] == {"precision": 0.5, "recall": 1.0, "support": 1, "predicted": 2}
    assert r["routes"]["task"] == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4), "support": 3,
                                   "predicted": 3}
    assert r["routes"]["out_of_scope"]["recall"] == 0.5
    assert sum(map(sum, r["route_confusion"]["matrix"])) == 10
    assert r["route_confusion"]["matrix"][0] == [3, 1, 0, 0, 0]  # answer questions: 3 answer, 1 task


def test_files_and_answers_are_scored_where_the_route_was_right():
    r = evaluate_chain(ScriptedRouter(SCRIPT), CASES)
    assert r["file_names"] == {"exact_set_accuracy": 0.5, "n": 2}  # the order of names does not matter
    assert r["answers"]["n"] == 3 and r["answers"]["accuracy"] == round(2 / 3, 4)
    assert r["end_to_end_accuracy"] == 0.5


def test_each_wrong_answer_is_put_at_the_first_step_that_went_wrong():
    r = evaluate_chain(ScriptedRouter(SCRIPT), CASES)
    assert r["wrong_at"] == {"question_classifier": {"label": 1, "below threshold": 1},
                             "question_type_classifier": {"label": 1},
                             "question_answer": {"answer": 1}, "file_name_pick": {"file names": 1}}
    by_line = {e["line"]: e for e in r["errors"]}
    assert by_line[7]["confidence"] == 0.4 and by_line[6]["label"] == TASK
    assert by_line[9]["got"] == "clean-flow" and by_line[9]["gold"] is None


def test_a_step_without_a_model_is_named_as_not_trained():
    router = ScriptedRouter(SCRIPT)
    del router.specs["question_type_classifier"]
    r = evaluate_chain(router, [CASES[0]])
    assert r["wrong_at"] == {"question_type_classifier": {"not trained": 1}}


def test_a_kb_id_the_knowledge_base_lacks_is_a_data_error_naming_the_line():
    with pytest.raises(DataError, match="line 3: kb_id 'gone' is not an entry"):
        evaluate_chain(ScriptedRouter(SCRIPT), [ChainCase("机房在哪", "answer", (), "gone", 3)])


def test_the_file_is_checked_line_by_line(tmp_path):
    bad = write_jsonl(tmp_path / "chain.jsonl", [
        {"question": "ok", "route": "general", "file_names": [], "kb_id": None},
        {"question": "x", "route": "chitchat", "file_names": [], "kb_id": None},
        {"question": "y", "route": "task", "file_names": "a.csv", "kb_id": None},
        {"route": "task"},
        {"question": "z", "route": "answer", "file_names": [], "kb_id": 7},
    ])
    with pytest.raises(DataError) as err:
        read_chain_cases(bad)
    text = str(err.value)
    for n, what in [(2, "route 'chitchat' is not valid"), (3, "file_names"), (4, "missing field"), (5, "kb_id")]:
        assert f"line {n}: " in text and what in text
    assert "line 1:" not in text


def test_the_bundled_chain_set_reads():
    cases = read_chain_cases(bundled_chain_cases())
    assert len(cases) >= 150 and {c.route for c in cases} == {"answer", "task", "general", "out_of_scope"}


def test_eval_chain_through_the_cli(trained_hub, tiny_base, tmp_path):
    from click.testing import CliRunner

    from lora_router.cli import main

    data = write_jsonl(tmp_path / "chain.jsonl", [
        {"question": "今天天气怎么样", "route": "out_of_scope", "file_names": [], "kb_id": None},
        {"question": "帮我把sales_2024.csv导入到ODS层", "route": "task", "file_names": ["sales_2024.csv"],
         "kb_id": None},
        {"question": "什么是机器学习？", "route": "general", "file_names": [], "kb_id": None},
    ])
    args = ["eval", "--chain", str(data), "--base-model", tiny_base, "--hub", str(trained_hub.root)]
    out = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    r = json.loads(out.stdout)
    assert r["n"] == 3 and set(r["routes"]) == {"answer", "task", "general", "out_of_scope"}
    # this hub has no question_type_classifier: a platform question stops there
    assert r["wrong_at"] == {"question_type_classifier": {"not trained": 1}}
    assert r["route_accuracy"] == round(2 / 3, 4)
    table = CliRunner().invoke(main, args, catch_exceptions=False).output
    assert "route accuracy" in table and "route confusion" in table
    refused = CliRunner().invoke(main, ["eval", "--chain", "--task", "x", "--base-model", tiny_base])
    assert refused.exit_code == 2 and "--chain scores the whole chain" in refused.output
