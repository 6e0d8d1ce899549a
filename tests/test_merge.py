"""Training on several data files: duplicates folded, conflicting labels named with both lines, --prefer-last."""

from __future__ import annotations

import json

import pytest

from lora_router.data import BUNDLED, load_bundled, merge_data, split_data
from lora_router.errors import DataError, LabelConflictError
from lora_router.tasks import get_task

SCENE = "问题场景分类"
SPEC = get_task("question_classifier")


def write(path, rows):
    path.write_text("".join(json.dumps({"instruction": SCENE, "input": q, "output": a}, ensure_ascii=False) + "\n"
                            for q, a in rows), "utf-8")
    return path


def test_exact_duplicates_across_files_are_folded_into_one_record(tmp_path):
    a = write(tmp_path / "a.jsonl", [("今天天气怎么样", "无关问题"), ("什么是机器学习？", "通用问题")])
    b = write(tmp_path / "b.jsonl", [("今天天气怎么样", "无关问题"), ("数据清洗流程是什么？", "数据平台相关问题")])
    merged = merge_data([a, b], SPEC)
    assert [r.input for r in merged.records] == ["今天天气怎么样", "什么是机器学习？", "数据清洗流程是什么？"]
    assert merged.duplicates == 1
    assert [(f.lines, f.used) for f in merged.files] == [(2, 2), (2, 1)]


def test_conflicting_labels_are_refused_naming_both_lines(tmp_path):
    a = write(tmp_path / "a.jsonl", [("什么是机器学习？", "通用问题"), ("今天天气怎么样", "无关问题")])
    b = write(tmp_path / "b.jsonl", [("今天天气怎么样", "通用问题")])
    with pytest.raises(LabelConflictError) as err:
        merge_data([a, b], SPEC)
    message = str(err.value)
    assert f"{a}:2 says '无关问题'" in message and f"{b}:1 says '通用问题'" in message
    assert "--prefer-last" in message


def test_a_conflict_inside_one_file_is_named_with_both_lines_too(tmp_path):
    a = write(tmp_path / "a.jsonl", [("今天天气怎么样", "无关问题"), ("什么是机器学习？", "通用问题"),
                                     ("今天天气怎么样", "通用问题")])
    with pytest.raises(LabelConflictError, match=rf"{a}:1 says .* but {a}:3 says"):
        merge_data([a], SPEC)


def test_prefer_last_keeps_the_label_of_the_file_given_later(tmp_path):
    a = write(tmp_path / "a.jsonl", [("今天天气怎么样", "无关问题"), ("什么是机器学习？", "通用问题")])
    b = write(tmp_path / "b.jsonl", [("今天天气怎么样", "通用问题")])
    merged = merge_data([a, b], SPEC, prefer_last=True)
    assert {r.input: r.output for r in merged.records} == {"今天天气怎么样": "通用问题", "什么是机器学习？": "通用问题"}
    assert len(merged.resolved) == 1
    assert [(f.file, f.used) for f in merged.files] == [(str(a), 1), (str(b), 1)]


def test_bundled_by_name_merges_with_corrections_and_keeps_the_bundled_test_split(tmp_path):
    bundled = load_bundled("question_classifier", "train")
    fix = write(tmp_path / "labels.jsonl", [("帮我看看这个新问题该归哪类", "通用问题")])
    split = split_data(SPEC, [BUNDLED, fix], None, seed=0)
    assert len(split.train) == len(bundled) + 1  # nothing held out: the bundled test split is the test
    assert split.test == load_bundled("question_classifier", "test")
    assert [(f["file"], f["lines"], f["used"]) for f in split.files] == [
        (BUNDLED, len(bundled), len(bundled)), (str(fix), 1, 1)]


def test_a_correction_of_a_bundled_line_is_a_conflict(tmp_path):
    first = load_bundled("question_classifier", "train")[0]
    other = next(label for label in SPEC.labels if label != first.output)
    fix = write(tmp_path / "labels.jsonl", [(first.input, other)])
    with pytest.raises(LabelConflictError, match=rf"bundled:{first.line} says"):
        merge_data([BUNDLED, fix], SPEC)


def test_a_file_with_no_line_of_the_task_is_an_error_naming_it(tmp_path):
    other = tmp_path / "files.jsonl"
    row = {"instruction": "文件名称提取", "input": "导入a.csv", "output": "a.csv"}
    other.write_text(json.dumps(row, ensure_ascii=False) + "\n", "utf-8")
    with pytest.raises(DataError, match="files.jsonl"):
        merge_data([BUNDLED, other], SPEC)


def test_one_file_splits_as_before_a_seeded_fifth_held_out(tmp_path):
    rows = [(f"第{i}个问题是什么", "通用问题") for i in range(10)]
    data = write(tmp_path / "a.jsonl", rows)
    split = split_data(SPEC, data, None, seed=3)
    assert (len(split.train), len(split.test), split.source) == (8, 2, str(data))
    assert split.files[0]["used"] == 8 and split.files[0]["lines"] == 10
