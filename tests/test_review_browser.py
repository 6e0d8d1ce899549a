"""The review console in headless Chromium against a real ``lora-router review`` process.

A person's keys and mouse (a route, a scene, a dragged file-name selection, a
picked entry, "no entry") must end as exactly these lines in DIR/labels/,
and those lines must pass ``lora-router data check``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lora_router.cli import main
from lora_router.data.bundled import bundled_knowledge_base
from lora_router.kb.file import read_knowledge_base
from support.browser import browser, keep_screenshot, select_text  # noqa: F401 - browser is a fixture
from support.review import ReviewConsole, chain_answer, write_captures, write_feedback

pytest.importorskip("fastapi")

KB = read_knowledge_base(bundled_knowledge_base())
FIRST, SECOND = KB.entries[0], KB.entries[1]
KEY = "review-key-for-tests"


def _line(instruction: str, text: str, output) -> str:
    return json.dumps({"instruction": instruction, "input": text, "output": output}, ensure_ascii=False) + "\n"


def _store(folder):
    write_captures(folder, [
        ("weather", chain_answer("今天天气怎么样", scene=("无关问题", 0.97))),
        ("sales", chain_answer("帮我把《2024年度财务报告.xlsx》和sales_2024.csv导入到ODS层")),
        ("clickhouse", chain_answer("平台能直连ClickHouse吗", kind=("问题回答", 0.93), candidates=(
            (SECOND.id, SECOND.questions[0], 0.41), (FIRST.id, FIRST.questions[0], 0.32)))),
        ("unsure", chain_answer("ODS层和DWD层有什么区别", scene=("数据平台相关问题", 0.46), kind=("问题回答", 0.9))),
        ("fine", chain_answer("帮我把orders.csv导入数仓", files=("orders.csv",))),
    ])
    write_feedback(folder, [{"id": "weather", "verdict": "down", "comment": "问的是平台里的天气数据表"}])
    return folder


def _saved(page, text: str) -> None:
    """Wait until the page says the correction was saved (from the server's answer, not the click; in full)."""
    page.wait_for_function("t => document.querySelector('#saved-line').title.includes(t)", arg=text,
                           timeout=15_000)


def test_a_person_labels_the_queue_with_keys_and_the_mouse(browser, tmp_path):  # noqa: F811
    store = _store(tmp_path / "captured")
    with ReviewConsole(store, log_path=tmp_path / "review.log", env={"LORA_ROUTER_API_KEY": KEY}) as console:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(console.url)
        page.fill("#key-input", KEY)  # the API needs the key; the page asks for it
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        assert page.locator("#queue-list li").count() == 4, "the answer with no reason to look is not queued"

        # 1. feedback said wrong: the scene is 通用问题 (key w)
        assert page.locator("#question").inner_text() == "今天天气怎么样"
        page.keyboard.press("w")
        _saved(page, "通用问题")

        # 2. routed task with no file name: route task (key 2), then select both names with the mouse,
        #    the first dragged over its 《》 brackets, which are not part of it
        page.keyboard.press("j")
        text = "帮我把《2024年度财务报告.xlsx》和sales_2024.csv导入到ODS层"
        assert page.locator("#question").inner_text() == text
        page.keyboard.press("2")
        _saved(page, "任务处理")
        start = text.index("sales_2024.csv")
        select_text(page, "#question", start, start + len("sales_2024.csv"))
        _saved(page, "sales_2024.csv")
        select_text(page, "#question", text.index("《"), text.index("》") + 1)
        _saved(page, "2024年度财务报告.xlsx")
        assert page.locator("#question mark").all_inner_texts() == ["2024年度财务报告.xlsx", "sales_2024.csv"]

        # 3. routed answer with no entry: pick the second candidate with the mouse
        page.keyboard.press("j")
        page.click(f"[data-kb='{FIRST.id}']")
        _saved(page, "question_answer")
        assert page.locator(f"[data-kb='{FIRST.id}']").get_attribute("class").split().count("saved") == 1

        # 4. uncertain: route answer (key 1), no entry answers it (key x)
        page.keyboard.press("j")
        page.keyboard.press("1")
        _saved(page, "问题回答")
        page.keyboard.press("x")
        _saved(page, 'question_answer = ""')
        page.keyboard.press("k")
        page.keyboard.press("k")  # back to the question with file names marked, for the picture
        page.wait_for_function("document.querySelectorAll('#question mark').length === 2")
        keep_screenshot(page, "review-console-fixture.png", tmp_path)
        assert not errors, errors

    labels = store / "labels"
    assert sorted(p.name for p in labels.glob("*.jsonl")) == [
        "file_name_pick.jsonl", "question_answer.jsonl", "question_classifier.jsonl", "question_type_classifier.jsonl"]
    assert (labels / "question_classifier.jsonl").read_text("utf-8") == (
        _line("问题场景分类", "今天天气怎么样", "通用问题")
        + _line("问题场景分类", text, "数据平台相关问题")
        + _line("问题场景分类", "ODS层和DWD层有什么区别", "数据平台相关问题"))
    assert (labels / "question_type_classifier.jsonl").read_text("utf-8") == (
        _line("问题类型分类", text, "任务处理") + _line("问题类型分类", "ODS层和DWD层有什么区别", "问题回答"))
    assert (labels / "file_name_pick.jsonl").read_text("utf-8") == _line(
        "文件名称提取", text, ["2024年度财务报告.xlsx", "sales_2024.csv"])
    assert (labels / "question_answer.jsonl").read_text("utf-8") == (
        _line("问题回答", "平台能直连ClickHouse吗", FIRST.answer) + _line("问题回答", "ODS层和DWD层有什么区别", ""))
    for path in labels.glob("*.jsonl"):
        result = CliRunner().invoke(main, ["data", "check", str(path)])
        assert result.exit_code == 0, result.output
