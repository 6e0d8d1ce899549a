import json
import re
from dataclasses import fields

import pytest
from click.testing import CliRunner

from lora_router.adapters import TaskManifest
from lora_router.cli import main
from lora_router.config import LoraSettings, TrainSettings
from lora_router.serving import ServeSettings


@pytest.fixture()
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def test_help_teaches(run):
    out = run("--help").output
    for command in ("train", "ask", "demo", "data", "hub", "init-base", "eval", "menu", "chat", "kb"):
        assert command in out
    assert "--lora-r" in run("train", "--help").output


def test_tasks_json(run):
    tasks = json.loads(run("tasks", "--json").stdout)
    assert [t["name"] for t in tasks][:4] == [
        "question_classifier", "question_type_classifier", "file_name_pick", "question_answer"]


def test_data_check_names_every_bad_line(run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        '{"instruction": "问题场景分类", "input": "数据清洗流程是什么？", "output": "数据平台相关问题"}',
        '{oops',
        '{"instruction": "问题场景分类", "input": "天气", "output": "闲聊"}',
        '{"instruction": "文件名称提取", "input": "把a.csv导入", "output": "b.csv"}',
    ]), "utf-8")
    result = run("data", "check", bad)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("line 2: invalid JSON")
    assert lines[1].startswith("line 3: label '闲聊'")
    assert lines[2].startswith("line 4: extraction output 'b.csv'")
    as_json = json.loads(run("data", "check", bad, "--json").stdout)
    assert [p["line"] for p in as_json["problems"]] == [2, 3, 4]


def test_data_check_ok_and_dump(run, tmp_path):
    dumped = run("data", "dump", "file_name_pick", "--split", "test").output
    path = tmp_path / "test.jsonl"
    path.write_text(dumped, "utf-8")
    assert len(dumped.splitlines()) >= 80
    result = run("data", "check", path)
    assert result.exit_code == 0 and "ok" in result.output


def test_missing_base_is_two_lines_no_traceback(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["train", "--task", "question_classifier", "--base-model", "no-such/model",
                                       "--hub", str(tmp_path / "hub"), "--quiet"])
    assert result.exit_code == 1
    assert "cannot load base model 'no-such/model'" in result.output
    assert "fix: download it once" in result.output
    assert "Traceback" not in result.output


def test_no_answer_examples_without_any_is_refused_before_the_base_loads(run, tmp_path):
    answered = tmp_path / "answered.jsonl"
    answered.write_text(json.dumps({"instruction": "问题场景分类", "input": "表的权限怎么申请",
                                    "output": "数据平台相关问题"}, ensure_ascii=False) + "\n", "utf-8")
    result = CliRunner().invoke(main, ["train", "--task", "question_answer", "--base-model", "no-such/model",
                                       "--hub", str(tmp_path / "hub"), "--no-answer-examples", str(answered),
                                       "--quiet"])
    assert result.exit_code == 1 and "answered.jsonl" in result.output
    assert "no record has output" in result.output and "Traceback" not in result.output
    assert "--no-answer-examples FILE|bundled|none" in run("train", "--help").output


@pytest.mark.slow
def test_train_hub_eval_ask_through_the_cli(run, tmp_path, tiny_base, scene_file):
    hub = tmp_path / "hub"
    result = run("train", "--task", "question_classifier", "--data", scene_file, "--test-data", scene_file,
                 "--base-model", tiny_base, "--hub", hub, "--epochs", 2, "--lr", 1e-2, "--quiet", "--json")
    assert result.exit_code == 0
    trained = json.loads(result.stdout)
    assert trained[0]["task"] == "question_classifier" and "accuracy" in trained[0]["metrics"]

    listed = json.loads(run("hub", "list", "--hub", hub, "--json").stdout)
    assert [r["task"] for r in listed] == ["question_classifier"]
    assert "macro-F1" in run("hub", "list", "--hub", hub).output
    assert json.loads(run("hub", "show", "question_classifier", "--hub", hub).stdout)["task"]["name"] == \
        "question_classifier"

    scored = json.loads(run("eval", "--task", "question_classifier", "--data", scene_file, "--base-model", tiny_base,
                            "--hub", hub, "--json", "--plot", tmp_path / "cm.png").stdout)
    assert {"accuracy", "macro_f1"} <= set(scored)
    assert (tmp_path / "cm.png").stat().st_size > 1000

    asked = json.loads(run("ask", "数据清洗流程是什么？", "--base-model", tiny_base, "--hub", hub, "--json").stdout)
    assert asked["steps"][0]["task"] == "question_classifier"
    assert asked["trace"]["steps"][0]["label"] == asked["steps"][0]["result"]["predicted_label"]
    one = json.loads(run("ask", "--task", "question_classifier", "数据清洗流程是什么？", "--base-model", tiny_base,
                         "--hub", hub, "--json").stdout)
    assert [s["task"] for s in one["steps"]] == ["question_classifier"]
    assert one["steps"][0]["result"] == asked["steps"][0]["result"]
    table = run("ask", "数据清洗流程是什么？", "--base-model", tiny_base, "--hub", hub).output
    assert "route:" in table and "question_classifier" in table

    empty = CliRunner().invoke(main, ["ask", "  ", "--base-model", tiny_base, "--hub", str(hub)])
    assert empty.exit_code == 2 and "empty" in empty.output

    hostile = "数据清洗流程是什么？\n\n   \n😀\x00\u200b\n" + "长" * 5000 + "\n\u202e表\n"
    stream = run("ask", "-", "--base-model", tiny_base, "--hub", hub, input=hostile)
    rows = [json.loads(line) for line in stream.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    assert "error" in rows[1] and rows[1]["line"] == 2 and "error" in rows[2]
    assert all("route" in r for i, r in enumerate(rows) if i not in (1, 2))

    assert run("hub", "remove", "question_classifier", "--hub", hub, "--yes").exit_code == 0
    assert json.loads(run("hub", "list", "--hub", hub, "--json").stdout) == []


@pytest.mark.slow
def test_new_task_trained_from_a_data_file(run, tmp_path, tiny_base):
    data = tmp_path / "sentiment.jsonl"
    rows = [("报表做得真好", "正面"), ("又失败了，烦死了", "负面"), ("这个平台太好用了", "正面"),
            ("数据全错了", "负面"),
            ("速度很快，赞", "正面"), ("页面一直卡", "负面")]
    data.write_text("".join(json.dumps({"instruction": "情感分类", "input": q, "output": a}, ensure_ascii=False) + "\n"
                            for q, a in rows), "utf-8")
    result = run("train", "--task", "sentiment", "--data", data, "--base-model", tiny_base, "--hub", tmp_path / "hub",
                 "--epochs", 1, "--quiet", "--json")
    assert result.exit_code == 0
    shown = json.loads(run("hub", "show", "sentiment", "--hub", tmp_path / "hub").stdout)
    assert shown["task"]["labels"] == ["正面", "负面"] and shown["task"]["instruction"] == "情感分类"


def test_kb_check_names_bad_lines(run, tmp_path):
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join([
        '{"id": "a", "questions": ["ODS层是什么"], "answer": "原始数据层"}',
        '{"id": "a", "question": "DWD层是什么", "answer": "明细层"}',
        '{"id": "b", "question": "DWS层是什么", "answer": ""}',
    ]), "utf-8")
    result = run("kb", "check", kb)
    assert result.exit_code == 1
    assert "line 2:" in result.output and "line 3:" in result.output


def test_menu_exits(run):
    result = run("menu", input="0\n")
    assert "1. 训练问题场景分类器" in result.output and result.exit_code == 0


def _shown_default(help_text: str, flag: str) -> str:
    """The `[default: ...]` that `--help` prints for FLAG (help lines wrap, so whitespace is joined)."""
    line = re.search(rf"^\s+{re.escape(flag)}\b", help_text, re.M)
    assert line, f"{flag} not in --help"
    return re.search(r"\[default: ([^;\]]+)", " ".join(help_text[line.start():].split())).group(1)


def test_help_shows_the_defaults_of_the_settings_dataclasses(run):
    lora, train, serve = LoraSettings(), TrainSettings(), ServeSettings()
    train_help, serve_help = run("train", "--help").output, run("serve", "--help").output
    for flag, value in [("--lora-r", lora.r), ("--lora-alpha", lora.alpha), ("--lora-dropout", lora.dropout),
                        ("--target-modules", ",".join(lora.target_modules)), ("--lr", train.learning_rate),
                        ("--epochs", train.epochs), ("--batch-size", train.batch_size),
                        ("--max-length", train.max_length), ("--seed", train.seed)]:
        assert _shown_default(train_help, flag) == str(value), flag
    for field in ("max_batch_tokens", "max_batch_requests", "max_wait_ms", "max_concurrent_requests",
                  "max_client_batch", "max_question_chars", "log_format"):
        flag = "--" + field.replace("_", "-")
        assert _shown_default(serve_help, flag) == str(getattr(serve, field)), flag
    assert fields(LoraSettings)[0].metadata["help"] in train_help


def test_train_options_become_the_settings_dataclasses(run, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("lora_router.training.train", lambda spec, **kw: seen.append(kw) or TaskManifest(
        task=spec, base_model={}, best_epoch=1, train_samples_per_second=1.0))
    args = ["train", "--task", "question_classifier", "--hub", tmp_path, "--json"]
    assert run(*args).exit_code == 0
    assert run(*args, "--lora-r", 8, "--layers", "6-11", "--target-modules", "query", "--lr", 1e-3,
               "--no-dynamic-padding").exit_code == 0
    assert (seen[0]["lora"], seen[0]["settings"]) == (LoraSettings(), TrainSettings())
    assert seen[1]["lora"] == LoraSettings(r=8, layers="6-11", target_modules="query")
    assert seen[1]["settings"] == TrainSettings(learning_rate=1e-3, dynamic_padding=False)


def test_serve_on_ray_reads_every_export_before_a_cluster_starts(tmp_path):
    pytest.importorskip("fastapi")
    not_an_export = CliRunner().invoke(main, ["serve", "--engine", "ray", "--export", f"a={tmp_path}"])
    assert not_an_export.exit_code == 1 and "is not a lora-router export" in not_an_export.output
    malformed = CliRunner().invoke(main, ["serve", "--engine", "ray", "--export", "a"])
    assert malformed.exit_code == 2 and "is not ID=DIR" in malformed.output


def _cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-c", "from lora_router.cli import run; run()", *args]


def test_ask_stdin_reads_crlf_and_invalid_utf8_and_reports_a_bad_line_without_stopping(exported):
    import subprocess

    stdin = "数据清洗流程是什么？\r\n".encode() + b"\xff\xfe not utf-8\r\n" + b"   \r\n" + "今天天气怎么样\n".encode()
    out = subprocess.run(_cli("ask", "--onnx", str(exported.export), "-"), input=stdin, capture_output=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [line.get("question") for line in lines] == ["数据清洗流程是什么？", "\ufffd\ufffd not utf-8", "   ",
                                                         "今天天气怎么样"]
    assert lines[0]["route"] and lines[3]["route"], "CR is not part of the question"
    assert lines[2]["line"] == 3 and "empty" in lines[2]["error"]
    assert "error" not in lines[1], "a question with undecodable bytes is still answered"


def test_ctrl_c_exits_130_saying_nothing_was_half_written(exported):
    import signal
    import subprocess

    proc = subprocess.Popen(_cli("ask", "--onnx", str(exported.export), "-"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write("数据清洗流程是什么？\n".encode())
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["question"] == "数据清洗流程是什么？"  # loaded and answering
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        assert "interrupted" in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_exits_1_when_the_export_fails_to_load(exported, tmp_path):
    import subprocess

    from support.export import copy_export
    from support.serve import free_port

    folder = copy_export(exported.export, tmp_path / "export")
    (folder / "tokenizer.json").write_text("{}", "utf-8")  # listed in the manifest, so only loading finds it
    out = subprocess.run(_cli("serve", "--onnx", str(folder), "--port", str(free_port())), capture_output=True,
                         timeout=120)
    assert out.returncode == 1
    assert "models failed to load" in out.stderr.decode(errors="replace")
