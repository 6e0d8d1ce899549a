import json

import pytest

from lora_router.data import bundled_tasks, check_lines, infer_task_spec, load_bundled, read_records, shuffle_records
from lora_router.errors import DataError

BAD_FILE = [
    '{"instruction": "问题场景分类", "input": "数据清洗流程是什么？", "output": "数据平台相关问题"}',  # 1 ok
    '{"instruction": "问题场景分类", "input": "缺了引号, "output": "通用问题"}',  # 2 invalid JSON
    '{"instruction": "问题场景分类", "input": "只有两个字段"}',  # 3 missing output
    '{"instruction": "问题场景分类", "input": 42, "output": "通用问题"}',  # 4 non-string input
    '{"instruction": "情感分析", "input": "这个好", "output": "正面"}',  # 5 unknown instruction
    '{"instruction": "问题场景分类", "input": "今天天气怎么样", "output": "闲聊"}',  # 6 label not in task
    '{"instruction": "文件名称提取", "input": "把a.csv导入", "output": "b.csv"}',  # 7 not a substring
    '{"instruction": "问题场景分类", "input": "数据清洗流程是什么？", "output": "通用问题"}',  # 8 conflicts with 1
    '["not", "an", "object"]',  # 9
    '{"instruction": "问题场景分类", "input": "   ", "output": "通用问题"}',  # 10 empty input
    '{"instruction": "文件名称提取", "input": "合并b.csv和a.csv", "output": ["a.csv", "b.csv"]}',  # 11 out of order
    '{"instruction": "文件名称提取", "input": "合并a.csv和b.csv", "output": ["a.csv", "b.csv"]}',  # 12 ok
]


def test_check_names_every_bad_line_and_what_is_wrong():
    records, problems = check_lines(BAD_FILE)
    found = dict(problems)
    assert sorted(found) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "invalid JSON" in found[2]
    assert "missing field(s): output" in found[3]
    assert "'input' must be a string" in found[4]
    assert "unknown instruction '情感分析'" in found[5]
    assert "'闲聊' is not a label of question_classifier" in found[6]
    assert "'b.csv' is not a substring of the input" in found[7]
    assert "duplicates line 1" in found[8]
    assert "JSON object" in found[9]
    assert "empty" in found[10]
    assert "input order" in found[11]
    assert [r.line for r in records] == [1, 12]
    assert records[1].output == ("a.csv", "b.csv")


def test_read_records_raises_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD_FILE), "utf-8")
    with pytest.raises(DataError) as err:
        read_records(path)
    assert "line 2: invalid JSON" in str(err.value)
    assert len(err.value.problems) == 10


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes('{"instruction": "问题场景分类"}'.encode("gbk"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_records(path)


def test_new_task_spec_takes_labels_from_the_data(tmp_path):
    path = tmp_path / "sentiment.jsonl"
    rows = [("报表做得真好", "正面"), ("又失败了，烦", "负面"), ("还行吧", "中性")]
    path.write_text("".join(json.dumps({"instruction": "情感分类", "input": q, "output": a}, ensure_ascii=False) + "\n"
                            for q, a in rows), "utf-8")
    spec = infer_task_spec("sentiment", path)
    assert spec.instruction == "情感分类"
    assert spec.labels == ("中性", "正面", "负面")
    assert len(read_records(path, extra_tasks=[spec])) == 3


def test_shuffle_is_seeded():
    records, _ = check_lines(BAD_FILE)
    assert shuffle_records(records, 1) == shuffle_records(records, 1)
    assert sorted(r.line for r in shuffle_records(records, 1)) == [1, 12]


@pytest.mark.parametrize("task, minimum", [
    ("question_classifier", 600), ("question_type_classifier", 400), ("file_name_pick", 400)])
def test_bundled_data_is_large_enough_split_and_disjoint(task, minimum):
    train, test = load_bundled(task, "train"), load_bundled(task, "test")
    assert len(train) + len(test) >= minimum
    assert len(test) >= 0.2 * (len(train) + len(test))
    assert not {r.input for r in train} & {r.input for r in test}


@pytest.mark.parametrize("task", ["question_classifier", "question_type_classifier"])
def test_bundled_classification_data_is_balanced(task):
    for split in ("train", "test"):
        counts = {}
        for r in load_bundled(task, split):
            counts[r.output] = counts.get(r.output, 0) + 1
        assert max(counts.values()) - min(counts.values()) <= 0.05 * sum(counts.values())


def test_bundled_file_names_cover_none_several_paths_and_chinese():
    records = load_bundled("file_name_pick", "train")
    assert sum(1 for r in records if not r.output) >= 30
    assert sum(1 for r in records if len(r.output) >= 2) >= 30
    assert sum(1 for r in records if any("/" in f or "\\" in f for f in r.output)) >= 30
    assert sum(1 for r in records if any(any("\u4e00" <= c <= "\u9fff" for c in f) for f in r.output)) >= 30


def test_every_task_with_data_is_bundled():
    assert set(bundled_tasks()) >= {"question_classifier", "question_type_classifier", "file_name_pick"}
