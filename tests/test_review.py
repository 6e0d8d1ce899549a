"""The review loop without a browser: the queue's ranking, corrections as training lines, the console's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_router.capture import CaptureStore
from lora_router.cli import main
from lora_router.data.bundled import bundled_knowledge_base
from lora_router.errors import InputError
from lora_router.kb.file import read_knowledge_base
from lora_router.review import Correction, LabelsWriter, Teacher, file_names_in, fold, review_queue
from support.review import chain_answer, write_captures, write_feedback

KB = read_knowledge_base(bundled_knowledge_base())
ENTRY = KB.entries[0]


def _teacher() -> Teacher:
    return Teacher(knowledge_base=KB)


def _store(tmp_path: Path) -> Path:
    """Answers with every kind of reason to look, and two that have none."""
    write_captures(tmp_path, [
        ("fine", chain_answer("帮我把orders.csv导入数仓", files=("orders.csv",))),
        ("no-file", chain_answer("帮我把sales_2024.csv导入到ODS层")),
        ("weather", chain_answer("今天天气怎么样", scene=("无关问题", 0.97))),
        ("oos-file", chain_answer("把 orders_0601.parquet 发我看看", scene=("无关问题", 0.9))),
        ("no-entry", chain_answer("平台能直连ClickHouse吗", kind=("问题回答", 0.93))),
        ("unsure", chain_answer("ODS层和DWD层有什么区别", scene=("数据平台相关问题", 0.45))),
        ("close", chain_answer("数据清洗流程是什么？", scene=("通用问题", 0.52), kind=("问题回答", 0.9))),
        ("unsure-again", chain_answer("ods层 和 dwd层有什么区别？", scene=("数据平台相关问题", 0.46))),
        ("liked", chain_answer("你好，你能做什么？", scene=("通用问题", 0.9))),
    ])
    write_feedback(tmp_path, [{"id": "weather", "verdict": "down", "comment": "问的是天气数据表"},
                              {"id": "liked", "verdict": "up"}])
    return tmp_path


def test_the_queue_puts_feedback_first_then_contradictions_then_uncertain_then_low_margins(tmp_path):
    items = review_queue(CaptureStore(_store(tmp_path)).records())
    order = [i.id for i in items]
    assert order[0] == "weather"
    assert set(order[1:4]) == {"no-file", "oos-file", "no-entry"}
    assert order[4:] == ["unsure-again", "close"]
    assert "fine" not in order and "liked" not in order, "answers with no reason to look stay out"
    reasons = {i.id: [r.kind for r in i.reasons] for i in items}
    assert reasons["weather"] == ["feedback"] and reasons["close"] == ["low_margin"]
    assert "sales_2024.csv" in items[order.index("no-file")].reasons[0].detail


def test_near_duplicates_fold_into_one_item_with_a_count(tmp_path):
    items = review_queue(CaptureStore(_store(tmp_path)).records())
    folded = next(i for i in items if i.id == "unsure-again")
    assert folded.count == 2 and folded.ids == ["unsure", "unsure-again"]
    assert folded.question == "ods层 和 dwd层有什么区别？", "the item shows its latest capture"
    assert fold("ODS层和DWD层有什么区别") == fold("ods层 和 dwd层有什么区别？")
    assert fold("sales_2024.csv") != fold("sales_2025.csv")


def test_everything_lists_answers_with_no_reason_last(tmp_path):
    items = review_queue(CaptureStore(_store(tmp_path)).records(), everything=True)
    assert {i.id for i in items[-2:]} == {"fine", "liked"} and items[-1].score == 0


def test_feedback_that_corrects_the_answer_queues_it_and_agreeing_feedback_does_not(tmp_path):
    write_captures(tmp_path, [("a", chain_answer("生成上个月的销售报表")), ("b", chain_answer("重跑同步任务"))])
    write_feedback(tmp_path, [{"id": "a", "route": "answer"}, {"id": "b", "route": "task", "file_names": []}])
    items = review_queue(CaptureStore(tmp_path).records())
    assert [i.id for i in items] == ["a"] and "route answer, not task" in items[0].reasons[0].detail


def test_file_names_are_found_by_their_extension_without_a_model():
    assert file_names_in("帮我把sales_2024.csv导入到ODS层") == ["sales_2024.csv"]
    assert file_names_in("把/data/raw/user_log.parquet和orders.csv合并") == ["/data/raw/user_log.parquet", "orders.csv"]
    assert file_names_in("上传《2024年度财务报告.xlsx》") == ["2024年度财务报告.xlsx"]
    assert file_names_in("版本v1.2和python3.11有什么区别") == []


def test_a_route_teaches_every_step_on_the_way_to_it():
    text = "帮我把a.csv和b.xlsx导入"
    lines = _teacher().lines(Correction(text, route="task", file_names=["b.xlsx", "a.csv"]))
    assert lines == {
        "question_classifier": {"instruction": "问题场景分类", "input": text, "output": "数据平台相关问题"},
        "question_type_classifier": {"instruction": "问题类型分类", "input": text, "output": "任务处理"},
        "file_name_pick": {"instruction": "文件名称提取", "input": text, "output": ["a.csv", "b.xlsx"]},
    }
    assert _teacher().lines(Correction("今天天气", route="general")) == {
        "question_classifier": {"instruction": "问题场景分类", "input": "今天天气", "output": "通用问题"}}


def test_a_type_teaches_the_scene_it_needs_and_an_entry_its_answer_text():
    lines = _teacher().lines(Correction("怎么接入新数据源", labels={"question_type_classifier": "问题回答"},
                                        kb_id=ENTRY.id))
    assert lines["question_classifier"]["output"] == "数据平台相关问题"
    assert lines["question_answer"] == {"instruction": "问题回答", "input": "怎么接入新数据源", "output": ENTRY.answer}
    assert _teacher().lines(Correction("x", no_entry=True))["question_answer"]["output"] == ""


@pytest.mark.parametrize("correction, message", [
    (Correction("x", route="uncertain"), "route 'uncertain' is not one"),
    (Correction("x", labels={"question_classifier": "天气"}), "not a label of question_classifier"),
    (Correction("x", labels={"scen": "a"}), "unknown task 'scen'"),
    (Correction("x.csv?", file_names=["y.csv"]), "'y.csv' is not in the question"),
    (Correction("x", kb_id="no-such-entry"), "no entry 'no-such-entry'"),
    (Correction("x", kb_id=ENTRY.id, no_entry=True), "not both"),
    (Correction("x", route="general", labels={"question_type_classifier": "问题回答"}), "also says"),
    (Correction("x"), "says nothing"),
])
def test_a_correction_that_cannot_be_training_data_is_refused_with_the_reason(correction, message):
    with pytest.raises(InputError, match=message):
        _teacher().lines(correction)


def test_the_last_correction_of_a_question_replaces_its_line_and_data_check_passes(tmp_path):
    writer, teacher = LabelsWriter(tmp_path), _teacher()
    assert writer.save(teacher.lines(Correction("今天天气怎么样", route="general"))) == {"question_classifier": "added"}
    assert writer.save(teacher.lines(Correction("帮我导出a.csv", route="task"))) == {
        "question_classifier": "added", "question_type_classifier": "added"}
    assert writer.save(teacher.lines(Correction("今天天气怎么样", route="general"))) == {
        "question_classifier": "unchanged"}
    assert writer.save(teacher.lines(Correction("今天天气怎么样", route="out_of_scope"))) == {
        "question_classifier": "replaced"}
    scene = (tmp_path / "labels" / "question_classifier.jsonl").read_text("utf-8")
    assert scene == ('{"instruction": "问题场景分类", "input": "帮我导出a.csv", "output": "数据平台相关问题"}\n'
                     '{"instruction": "问题场景分类", "input": "今天天气怎么样", "output": "无关问题"}\n')
    assert not list((tmp_path / "labels").glob("*.tmp")), "nothing half-written is left"
    for path in (tmp_path / "labels").glob("*.jsonl"):
        result = CliRunner().invoke(main, ["data", "check", str(path)])
        assert result.exit_code == 0, result.output
    assert writer.labelled()["今天天气怎么样"] == {"question_classifier": "无关问题"}


def test_review_export_writes_one_checked_file_per_task(tmp_path):
    writer, teacher = LabelsWriter(tmp_path), _teacher()
    writer.save(teacher.lines(Correction("帮我把a.csv导入", route="task", file_names=["a.csv"])))
    writer.save(teacher.lines(Correction("ODS是什么", route="answer", kb_id=ENTRY.id)))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["review", "export", "--capture", str(tmp_path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tasks"] == {"file_name_pick": 1, "question_answer": 1, "question_classifier": 2,
                                                  "question_type_classifier": 2}
    assert (out / "file_name_pick.jsonl").read_text("utf-8") == (
        '{"instruction": "文件名称提取", "input": "帮我把a.csv导入", "output": "a.csv"}\n')


def test_review_export_refuses_a_labels_file_with_a_bad_line_and_writes_nothing(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "question_classifier.jsonl").write_text(
        '{"instruction": "问题场景分类", "input": "x", "output": "天气"}\n', "utf-8")
    result = CliRunner().invoke(main, ["review", "export", "--capture", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "line 1" in result.output
    assert not (tmp_path / "o").exists()


def test_review_queue_prints_the_queue_as_json(tmp_path):
    result = CliRunner().invoke(main, ["review", "queue", "--capture", str(_store(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["total"] == 6 and out["items"][0]["id"] == "weather" and out["items"][0]["score"] == 100


# ------------------------------------------------------------------ the console's API (in process)
@pytest.fixture()
def console(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lora_router.review.console import create_console
    from lora_router.serving.settings import ServeSettings

    store = _store(tmp_path)
    app = create_console(store, CaptureStore(store).records, teacher=_teacher(), settings=ServeSettings(api_key="k"))
    with TestClient(app) as client:
        yield client


def test_the_console_page_loads_without_a_key_and_its_api_needs_one(console):
    assert console.get("/").status_code == 200 and "console.js" in console.get("/").text
    assert console.get("/static/console.js").headers["content-type"].startswith("text/javascript")
    assert console.get("/api/queue").status_code == 401
    assert console.get("/static/queue.py").status_code == 404, "only the page's own kinds of file are served"
    assert console.get("/static/..%2Fqueue.py").status_code in (401, 404)


def test_the_console_saves_a_correction_and_shows_it_in_the_queue(console, tmp_path):
    auth = {"authorization": "Bearer k"}
    saved = console.post("/api/corrections", headers=auth, json={
        "question": "帮我把sales_2024.csv导入到ODS层", "file_names": ["sales_2024.csv"]})
    assert saved.status_code == 200, saved.text
    assert saved.json()["saved"] == {"file_name_pick": "added"}
    item = next(i for i in console.get("/api/queue", headers=auth).json()["items"] if i["id"] == "no-file")
    assert item["labelled"] == {"file_name_pick": "sales_2024.csv"}
    entry = console.post("/api/corrections", headers=auth,
                         json={"question": "平台能直连ClickHouse吗", "kb_id": ENTRY.id})
    assert entry.json()["saved_kb_id"] == ENTRY.id
    bad = console.post("/api/corrections", headers=auth,
                       json={"question": "x", "labels": {"question_classifier": "天气"}})
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation"
    no_model = console.post("/api/ask", headers=auth, json={"question": "数据清洗流程是什么？"})
    assert no_model.status_code == 409 and "--onnx" in no_model.json()["error"]


class _Answerer:
    knowledge_base = KB


class _Predictor:
    """What the console needs of a predictor: its chain, its tasks, the answerer's knowledge base, ``ask``."""

    from lora_router.core.chain import Chain

    chain = Chain.load()
    specs = {"question_answer": None}

    def answerer(self, task):
        return _Answerer()

    def ask(self, question):
        return chain_answer(question, files=("sales_2024.csv",))


def test_the_console_asks_its_model_and_shows_what_is_saved_for_the_question(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lora_router.review.console import create_console

    app = create_console(tmp_path, lambda: iter(()), predictor=_Predictor())
    with TestClient(app) as client:
        assert client.get("/api/info").json()["can_ask"] is True
        question = "帮我把sales_2024.csv导入到ODS层"
        client.post("/api/corrections", json={"question": question, "kb_id": ENTRY.id})
        answer = client.post("/api/ask", json={"question": question}).json()
        assert answer["route"] == "task" and answer["file_names"] == ["sales_2024.csv"]
        assert answer["labelled"] == {"question_answer": ENTRY.answer} and answer["saved_kb_id"] == ENTRY.id
        assert client.get("/api/kb", params={"q": ENTRY.id}).json()["entries"][0]["id"] == ENTRY.id


def test_review_label_saves_what_is_typed_at_the_prompts(tmp_path):
    store = _store(tmp_path)
    typed = "4\n2\nsales_2024.csv\n\n1\n\nq\n"  # weather: out_of_scope; the csv: task + its name; skip; answer, none
    result = CliRunner().invoke(main, ["review", "label", "--capture", str(store)], input=typed)
    assert result.exit_code == 0, result.output
    labels = store / "labels"
    assert (labels / "question_classifier.jsonl").read_text("utf-8").splitlines()[:2] == [
        '{"instruction": "问题场景分类", "input": "今天天气怎么样", "output": "无关问题"}',
        '{"instruction": "问题场景分类", "input": "帮我把sales_2024.csv导入到ODS层", "output": "数据平台相关问题"}']
    assert (labels / "file_name_pick.jsonl").read_text("utf-8") == (
        '{"instruction": "文件名称提取", "input": "帮我把sales_2024.csv导入到ODS层", "output": "sales_2024.csv"}\n')
    assert '"output": ""' in (labels / "question_answer.jsonl").read_text("utf-8")
    again = CliRunner().invoke(main, ["review", "label", "--capture", str(store)], input="q\n")
    assert "今天天气怎么样" not in again.output, "labelled items are left out"
