import json

import pytest

from lora_router.adapters import ADAPTER_FILES, AdapterHub
from lora_router.errors import AdapterMismatchError, AdapterNotFoundError


def _writer(tag):
    def write(folder):
        for name in ADAPTER_FILES:
            (folder / name).write_text(json.dumps({"tag": tag, "task": {
                "name": "question_classifier", "instruction": "问题场景分类", "kind": "sequence_classification",
                "labels": ["a", "b"]}, "base_model": {"name": "b", "fingerprint": "abc"}}))
    return write


def test_save_is_atomic_and_a_failed_save_keeps_the_previous_adapter(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save("question_classifier", _writer("v1"))
    assert hub.tasks() == ["question_classifier"]

    def broken(folder):
        (folder / "adapter_config.json").write_text("{half")
        raise KeyboardInterrupt  # interrupted in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        hub.save("question_classifier", broken)
    assert hub.manifest("question_classifier").extra["tag"] == "v1"
    assert [p.name for p in hub.root.iterdir()] == ["question_classifier"]


def test_incomplete_adapter_is_refused(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    with pytest.raises(Exception, match="missing"):
        hub.save("x_task", lambda folder: (folder / "task.json").write_text("{}"))
    assert hub.tasks() == []


def test_crash_between_renames_is_recovered(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save("question_classifier", _writer("v1"))
    (hub.root / "question_classifier").rename(hub.root / ".old-question_classifier-1234abcd")
    assert AdapterHub(hub.root).manifest("question_classifier").extra["tag"] == "v1"


def test_missing_adapter_and_other_base_are_named(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    with pytest.raises(AdapterNotFoundError, match="lora-router train --task file_name_pick"):
        hub.manifest("file_name_pick")
    hub.save("question_classifier", _writer("v1"))
    with pytest.raises(AdapterMismatchError, match="trained on base 'b'.*fingerprint abc.*loaded base is 'other'"):
        hub.check_base("question_classifier", "zzz", "other")


def test_remove(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save("question_classifier", _writer("v1"))
    hub.remove("question_classifier")
    assert hub.tasks() == []
    with pytest.raises(AdapterNotFoundError):
        hub.remove("question_classifier")
