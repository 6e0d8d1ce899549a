"""The capture store: writers that never fail the caller, a bounded store, readers that merge every shard."""

from __future__ import annotations

import errno
import json
import os
import stat
import time

import pytest

from lora_router.capture import CaptureStore, CaptureWriter
from lora_router.capture import writer as writer_module
from lora_router.errors import CaptureError, InputError, UnknownCaptureError

SCENES = {"数据平台相关问题": 0.9, "通用问题": 0.06, "无关问题": 0.04}


def answer(question: str, route: str = "task") -> dict:
    return {"question": question, "route": route, "file_names": [], "answer": None,
            "steps": [{"task": "question_classifier", "ms": 1.0,
                       "result": {"predicted_label": "数据平台相关问题", "confidence": 0.9, "probabilities": SCENES}}]}


def segments(folder) -> list:
    return sorted((folder / "captures").glob("*/*.jsonl"))


def test_records_of_two_processes_come_back_merged_oldest_first_with_their_feedback(tmp_path):
    with CaptureWriter(tmp_path) as a, CaptureWriter(tmp_path) as b:
        ids = []
        for i in range(6):
            ids.append((a if i % 2 else b).add(answer(f"帮我把t{i}.csv导入")))
            (a if i % 2 else b).drain()
    assert len({p.parent.name for p in segments(tmp_path)}) == 2  # one shard per writer
    store = CaptureStore(tmp_path)
    store.add_feedback(ids[3], verdict="down", route="answer", comment="这是问题")
    records = list(store.records())
    assert [r["id"] for r in records] == ids
    assert [r["question"] for r in records] == [f"帮我把t{i}.csv导入" for i in range(6)]
    assert records[3]["feedback"][0]["verdict"] == "down" and records[3]["feedback"][0]["route"] == "answer"
    assert all(r["feedback"] == [] for i, r in enumerate(records) if i != 3)
    assert records[0]["answer"]["steps"][0]["result"]["predicted_label"] == "数据平台相关问题"


def test_the_store_stays_within_its_bound_dropping_the_oldest_and_counting_them(tmp_path):
    with CaptureWriter(tmp_path, max_mb=0.01) as capture:  # 10 KiB; a line is ~400 bytes
        ids = [capture.add(answer(f"问题{i}")) for i in range(200)]
        assert capture.drain()
        counts = dict(capture.counts)
    size = sum(p.stat().st_size for p in segments(tmp_path))
    assert size <= capture.max_bytes
    kept = [r["id"] for r in CaptureStore(tmp_path).records()]
    assert kept == ids[-len(kept):]  # the newest, in order
    assert counts["captured"] == 200 and counts["oldest"] == 200 - len(kept) > 0


def test_a_store_that_cannot_be_written_costs_the_caller_nothing_and_is_counted(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store should be")
    seen = []
    with CaptureWriter(blocked, on_count=lambda kind, n: seen.append((kind, n))) as capture:
        capture.add(answer("数据清洗流程是什么？"))
        assert capture.drain()
    assert capture.counts["error"] == 1 and capture.counts["captured"] == 0
    assert [(kind, n) for kind, n in seen if kind != "cpu_seconds"] == [("error", 1)]


def test_a_full_disk_drops_the_line_and_the_next_line_starts_a_clean_segment(tmp_path, monkeypatch):
    real_write = os.write
    full = {"on": False}

    def write(fd, data):
        if full["on"]:  # the disk takes half the line, then is full
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", write)
    with CaptureWriter(tmp_path) as capture:
        first = capture.add(answer("一"))
        capture.drain()
        full["on"] = True
        capture.add(answer("二"))
        capture.drain()
        full["on"] = False
        third = capture.add(answer("三"))
        capture.drain()
    assert capture.counts["error"] == 1
    assert [r["id"] for r in CaptureStore(tmp_path).records()] == [first, third]
    assert len(segments(tmp_path)) == 2  # the torn segment is never appended to again


def test_a_store_deleted_while_capturing_is_made_again(tmp_path):
    import shutil

    folder = tmp_path / "store"
    with CaptureWriter(folder) as capture:
        capture.add(answer("一"))
        capture.drain()
        shutil.rmtree(folder)
        again = capture.add(answer("二"))
        capture.drain()
    assert [r["id"] for r in CaptureStore(folder).records()] == [again]
    assert capture.counts["error"] == 0


def test_a_full_queue_drops_the_answer_at_once(tmp_path, monkeypatch):
    capture = CaptureWriter(tmp_path, queue_size=1)
    monkeypatch.setattr(capture, "_ensure_thread", lambda: None)  # nobody empties the queue
    capture.add(answer("一"))
    t0 = time.perf_counter()
    capture.add(answer("二"))
    assert capture.counts["overload"] == 1
    assert time.perf_counter() - t0 < 1.0  # put_nowait, never a wait


def test_find_sees_answers_captured_after_it_was_first_asked(tmp_path):
    store = CaptureStore(tmp_path)
    with CaptureWriter(tmp_path) as capture:
        first = capture.add(answer("一"))
        capture.drain()
        assert store.find(first)["question"] == "一"
        second = capture.add(answer("二"))
        capture.drain()
        assert store.find(second)["question"] == "二"
    assert store.find("never-captured") is None and len(store) == 2


def test_a_line_still_being_written_is_read_once_it_is_whole(tmp_path):
    shard = tmp_path / "captures" / "other-host-1-abcd"
    shard.mkdir(parents=True)
    line = json.dumps({"v": 1, "id": "x1", "time": "2026-01-01T00:00:00.000000Z", "endpoint": "ask",
                       "question": "一", "answer": answer("一")}, ensure_ascii=False).encode()
    (shard / "000001.jsonl").write_bytes(line[:20])
    store = CaptureStore(tmp_path)
    assert store.find("x1") is None and list(store.records()) == []
    (shard / "000001.jsonl").write_bytes(line + b"\n")
    assert store.find("x1")["question"] == "一"


def test_feedback_must_fit_the_answer_it_is_about(tmp_path):
    with CaptureWriter(tmp_path) as capture:
        capture_id = capture.add(answer("帮我把sales_2024.csv导入到ODS层"))
    store = CaptureStore(tmp_path)
    with pytest.raises(InputError, match="not a label of question_classifier"):
        store.add_feedback(capture_id, labels={"question_classifier": "天气"})
    with pytest.raises(InputError, match="not written in the question"):
        store.add_feedback(capture_id, file_names=["orders.csv"])
    with pytest.raises(InputError, match="not both"):
        store.add_feedback(capture_id, kb_id="kb-1", no_entry=True)
    with pytest.raises(InputError, match="route"):
        store.add_feedback(capture_id, route="elsewhere")
    with pytest.raises(InputError, match="says nothing"):
        store.add_feedback(capture_id)
    with pytest.raises(UnknownCaptureError):
        store.add_feedback("not-an-id", verdict="up")
    line = store.add_feedback(capture_id, labels={"question_type_classifier": "任务处理"},
                              file_names=["sales_2024.csv"])
    assert line["labels"] == {"question_type_classifier": "任务处理"}  # a step the chain never reached: registry
    assert store.find(capture_id)["feedback"] == [line]


def test_feedback_that_cannot_be_saved_is_an_error_of_its_own(tmp_path):
    with CaptureWriter(tmp_path) as capture:
        capture_id = capture.add(answer("一"))
    (tmp_path / "feedback").write_text("a file where the feedback folder should be")
    with pytest.raises(CaptureError, match="cannot be saved"):
        CaptureStore(tmp_path).add_feedback(capture_id, verdict="up")


def test_only_the_serving_user_can_read_what_was_captured(tmp_path):
    folder = tmp_path / "new" / "store"
    with CaptureWriter(folder) as capture:
        capture_id = capture.add(answer("一"))
    CaptureStore(folder).add_feedback(capture_id, verdict="up")
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"


def test_what_a_script_captured_just_before_it_ended_is_written(tmp_path):
    import subprocess
    import sys

    script = ("import sys\nfrom lora_router.capture import CaptureWriter\nw = CaptureWriter(sys.argv[1])\n"
              "for i in range(500):\n    w.add({'question': f'q{i}', 'route': 'general', 'steps': []})\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    assert [r["question"] for r in CaptureStore(tmp_path).records()] == [f"q{i}" for i in range(500)]
