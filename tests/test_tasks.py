import pytest

from lora_router import tasks
from lora_router.config import TaskSpec
from lora_router.errors import DuplicateTaskError, UnknownTaskError
from lora_router.tasks import registry


def test_the_four_tasks_of_the_contract_in_chain_order():
    assert tasks.task_names()[:4] == [
        "question_classifier", "question_type_classifier", "file_name_pick", "question_answer"]
    assert tasks.get_task("question_classifier").labels == ("数据平台相关问题", "通用问题", "无关问题")
    assert tasks.get_task("question_type_classifier").labels == ("问题回答", "任务处理")
    assert tasks.task_for_instruction("文件名称提取").name == "file_name_pick"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(UnknownTaskError) as err:
        tasks.get_task("scen")
    assert "unknown task 'scen'; known: question_classifier" in str(err.value)


def test_duplicate_registration_is_loud():
    with pytest.raises(DuplicateTaskError, match="already registered"):
        tasks.register_task(TaskSpec("question_classifier", "新指令", "sequence_classification", ("a", "b")))
    with pytest.raises(DuplicateTaskError, match="instruction"):
        tasks.register_task(TaskSpec("scene_again", "问题场景分类", "sequence_classification", ("a", "b")))


class _EntryPoint:
    name = "sentiment"
    value = "plugin:make"

    def load(self):
        return lambda: TaskSpec("sentiment", "情感分类", "sequence_classification", ("正面", "负面"))


def test_third_party_task_from_entry_point(monkeypatch):
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [_EntryPoint()] if group == "lora_router.tasks" else [])
    try:
        assert tasks.get_task("sentiment").labels == ("正面", "负面")
        assert "sentiment" in tasks.task_names()
    finally:
        tasks.unregister_task("sentiment")
