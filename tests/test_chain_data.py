# Guards bundled/chain/test.jsonl: hand-written end-to-end questions with expected route, file names and KB entry.
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "lora_router" / "data" / "bundled"
CHAIN_FILE = BUNDLED / "chain" / "test.jsonl"
TASKS = ("question_classifier", "question_type_classifier", "file_name_pick", "question_answer")
ROUTES = {"answer", "task", "general", "out_of_scope"}
FIELDS = {"question", "route", "file_names", "kb_id"}
# a file name ends with an extension; quotes, brackets, spaces and Chinese punctuation never surround it
FILE_NAME = re.compile(r"^[^\s《》“”‘’「」`'\"()（）\[\]，。、；：！？]+\.[A-Za-z0-9]+$")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _norm(text: str) -> str:
    """Letters and digits only, lower-cased: a question that differs only in case, spaces or punctuation is the same."""
    return "".join(ch.lower() for ch in text if ch.isalnum())


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _read_jsonl(CHAIN_FILE)


@pytest.fixture(scope="module")
def kb_ids() -> set[str]:
    return {entry["id"] for entry in _read_jsonl(BUNDLED / "question_answer" / "knowledge_base.jsonl")}


def test_every_line_is_a_json_object_with_the_four_fields(rows):
    raw = [line for line in CHAIN_FILE.read_text("utf-8").splitlines() if line.strip()]
    assert len(raw) == len(rows)
    for n, (line, row) in enumerate(zip(raw, rows), 1):
        assert "\\u" not in line, f"line {n}: written with ensure_ascii=True"
        assert isinstance(row, dict), f"line {n}: not an object"
        assert set(row) == FIELDS, f"line {n}: fields {sorted(row)}"
        assert isinstance(row["question"], str) and row["question"].strip() == row["question"] != "", f"line {n}"
        assert row["route"] in ROUTES, f"line {n}: route {row['route']!r}"
        assert isinstance(row["file_names"], list), f"line {n}"
        assert all(isinstance(f, str) and f for f in row["file_names"]), f"line {n}"
        assert row["kb_id"] is None or isinstance(row["kb_id"], str), f"line {n}"


def test_at_least_150_questions_covering_every_route(rows):
    assert len(rows) >= 150
    routes = {row["route"] for row in rows}
    assert routes == ROUTES
    answers = [row for row in rows if row["route"] == "answer"]
    assert any(row["kb_id"] is None for row in answers), "no platform question the KB does not cover"
    tasks = [row for row in rows if row["route"] == "task"]
    assert any(not row["file_names"] for row in tasks), "no task request without a file"
    assert any(len(row["file_names"]) > 1 for row in tasks), "no task request with several files"


def test_file_names_are_substrings_in_order_and_only_on_task_route(rows):
    for n, row in enumerate(rows, 1):
        names = row["file_names"]
        if row["route"] != "task":
            assert names == [], f"line {n}: file names on route {row['route']}"
            continue
        pos = 0
        for name in names:
            assert FILE_NAME.match(name), f"line {n}: {name!r} does not look like a bare file name"
            found = row["question"].find(name, pos)
            assert found >= 0, f"line {n}: {name!r} is not a substring after position {pos}"
            pos = found + len(name)


def test_kb_id_exists_exactly_on_answer_route(rows, kb_ids):
    for n, row in enumerate(rows, 1):
        if row["route"] == "answer":
            assert row["kb_id"] is None or row["kb_id"] in kb_ids, f"line {n}: unknown kb_id {row['kb_id']!r}"
        else:
            assert row["kb_id"] is None, f"line {n}: kb_id on route {row['route']}"


def test_no_duplicate_questions_in_the_file(rows):
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        key = _norm(row["question"])
        assert key, f"line {n}: no letters or digits"
        assert key not in seen, f"line {n} duplicates line {seen[key]}"
        seen[key] = n


def test_no_question_repeats_bundled_training_or_test_data_or_kb_phrasings(rows):
    known: dict[str, str] = {}
    for task in TASKS:
        for split in ("train", "test"):
            path = BUNDLED / task / f"{split}.jsonl"
            for record in _read_jsonl(path):
                known.setdefault(_norm(record["input"]), f"{task}/{split}")
    for entry in _read_jsonl(BUNDLED / "question_answer" / "knowledge_base.jsonl"):
        phrasings = entry.get("questions") or [entry["question"]]
        for phrasing in phrasings:
            known.setdefault(_norm(phrasing), f"knowledge base entry {entry['id']}")
    for n, row in enumerate(rows, 1):
        key = _norm(row["question"])
        assert key not in known, f"line {n}: {row['question']!r} repeats {known[key]}"
