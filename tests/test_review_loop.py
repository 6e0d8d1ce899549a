"""The whole loop, end to end: serve --capture, questions over HTTP, feedback, the console in Chromium, labels.

``serve --capture`` answers the bundled chain set's questions on a tiny
export; feedback says four answers were wrong; a person (Chromium, driven by
keys and the mouse) works through the top of the queue in ``lora-router
review``, correcting each item to the chain set's truth; the labels written
are exactly those corrections and pass ``lora-router data check``. The
service's ``/docs`` renders with every request to the service itself.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lora_router.capture import CaptureStore
from lora_router.cli import main
from lora_router.data.bundled import bundled_dir, bundled_knowledge_base
from lora_router.kb.file import read_knowledge_base
from support.browser import browser, keep_screenshot, select_text  # noqa: F401 - browser is a fixture
from support.review import ReviewConsole
from support.serve import Server, wait_for

pytest.importorskip("fastapi")

ROUTES = ["answer", "task", "general", "out_of_scope"]  # keys 1-4 in the console
SCENE = {"answer": "数据平台相关问题", "task": "数据平台相关问题", "general": "通用问题", "out_of_scope": "无关问题"}
TYPE = {"answer": "问题回答", "task": "任务处理"}
WORKED = 6  # items of the queue a person works through


def _chain_set() -> list[dict]:
    lines = (bundled_dir() / "chain" / "test.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _line(instruction: str, text: str, output) -> str:
    return json.dumps({"instruction": instruction, "input": text, "output": output}, ensure_ascii=False) + "\n"


def _expected(worked: list[dict]) -> dict[str, str]:
    """The labels files a person's corrections to the chain set's truth must give, by task."""
    answers = {e.id: e.answer for e in read_knowledge_base(bundled_knowledge_base()).entries}
    out = {"question_classifier": "", "question_type_classifier": "", "file_name_pick": "", "question_answer": ""}
    for truth in worked:
        q, route = truth["question"], truth["route"]
        out["question_classifier"] += _line("问题场景分类", q, SCENE[route])
        if route in TYPE:
            out["question_type_classifier"] += _line("问题类型分类", q, TYPE[route])
        if route == "task":
            names = truth["file_names"]
            out["file_name_pick"] += _line("文件名称提取", q, names[0] if len(names) == 1 else names)
        if route == "answer":
            out["question_answer"] += _line("问题回答", q, answers[truth["kb_id"]] if truth["kb_id"] else "")
    return {task: text for task, text in out.items() if text}


def _correct(page, truth: dict) -> None:
    """Correct the item on the page to ``truth`` as a person does: a key for the route, the mouse for the rest."""
    text, route = truth["question"], truth["route"]
    page.keyboard.press(str(ROUTES.index(route) + 1))
    _saved(page, SCENE[route])
    if route == "task":
        pos = 0
        for name in truth["file_names"]:
            start = text.index(name, pos)
            select_text(page, "#question", start, start + len(name))
            _saved(page, json.dumps(name, ensure_ascii=False)[1:-1])
            pos = start + len(name)
        if not truth["file_names"]:
            page.keyboard.press("n")
            _saved(page, "file_name_pick = []")
    if route == "answer" and truth["kb_id"]:
        page.fill("#kb-search", truth["kb_id"])
        page.click(f"#candidates [data-kb='{truth['kb_id']}']")
        page.wait_for_selector(f"#candidates li.saved [data-kb='{truth['kb_id']}']")
    elif route == "answer":
        page.keyboard.press("x")
        _saved(page, 'question_answer = ""')


def _saved(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#saved-line').title.includes(t)", arg=text,
                           timeout=15_000)


def test_served_answers_become_training_lines_through_the_console(exported, browser, tmp_path):  # noqa: F811
    truth = {row["question"]: row for row in _chain_set()}
    store = tmp_path / "captured"
    questions = list(truth)
    with Server("--onnx", str(exported.export), "--precision", "fp32", "--capture", str(store),
                log_path=tmp_path / "serve.log") as server, server.client() as client:
        answers = []
        for start in range(0, len(questions), 32):
            response = client.post("/v1/ask", json={"questions": questions[start:start + 32]})
            assert response.status_code == 200, response.text
            answers += response.json()
        assert all(a["trace"]["steps"] and a["request_id"] for a in answers)
        wrong = [a for a in answers if a["route"] != truth[a["question"]]["route"]] or answers
        flagged = wrong[:4]
        for a in flagged:
            said = client.post("/v1/feedback", json={"request_id": a["request_id"], "verdict": "down",
                                                     "route": truth[a["question"]]["route"],
                                                     "comment": "the route is wrong"})
            assert said.status_code == 201, said.text
        wait_for(lambda: sum(1 for _ in CaptureStore(store).records()) == len(questions), timeout=30)

        page = browser.new_page(viewport={"width": 1440, "height": 900})
        blocked = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
                   else (blocked.append(route.request.url), route.abort()))
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        page.wait_for_selector(".opblock-summary-path[data-path='/v1/feedback']")
        assert "lora-router" in page.inner_text(".swagger-ui .info .title")
        assert blocked == [], "the API page loads nothing from another host"
        keep_screenshot(page, "service-docs.png", tmp_path)
        page.close()

    with ReviewConsole(store, "--onnx", str(exported.export), "--precision", "fp32",
                       log_path=tmp_path / "review.log") as console:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(console.url)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        queued = page.locator("#queue-list li .q").all_inner_texts()
        assert len(queued) >= WORKED
        assert set(queued[:len(flagged)]) == {a["question"] for a in flagged}, "what feedback says wrong comes first"

        worked = []
        for n in range(WORKED):
            question = page.locator("#question").inner_text()
            assert question == queued[n]
            worked.append(truth[question])
            _correct(page, truth[question])
            if n == 1:
                keep_screenshot(page, "review-console.png", tmp_path)
            page.keyboard.press("j")

        page.keyboard.press("/")
        page.keyboard.type("帮我把sales_2024.csv导入到ODS层")
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#question')?.textContent === '帮我把sales_2024.csv导入到ODS层'")
        assert page.locator("table.trace tbody tr").count() >= 2
        assert len(page.locator("table.trace .hash").first.inner_text()) >= 12, "each step names its model"
        assert not errors, errors

    labels = store / "labels"
    expected = _expected(worked)
    assert {p.stem: p.read_text("utf-8") for p in labels.glob("*.jsonl")} == expected
    for path in labels.glob("*.jsonl"):
        result = CliRunner().invoke(main, ["data", "check", str(path)])
        assert result.exit_code == 0, result.output
