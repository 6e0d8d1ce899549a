"""The hub keeps a version per adapter: the current one in <hub>/<task>/, the others loadable as HUB@TASK=vN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_router.adapters import ADAPTER_FILES, TASK_FILE, AdapterHub, parse_hub
from lora_router.adapters.hub import REJECTED_FILE
from lora_router.errors import AdapterNotFoundError

TASK = "question_classifier"


def _writer(tag, **extra):
    def write(folder):
        for name in ADAPTER_FILES:
            (folder / name).write_text(json.dumps({"tag": tag, "task": {
                "name": TASK, "instruction": "问题场景分类", "kind": "sequence_classification",
                "labels": ["a", "b"]}, "base_model": {"name": "b", "fingerprint": "abc"}, **extra}))
    return write


def test_each_save_is_a_new_version_and_the_previous_one_stays_loadable(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second", "third"):
        hub.save(TASK, _writer(tag))
    assert hub.versions(TASK) == [1, 2, 3]
    assert hub.manifest(TASK).version == 3 and hub.manifest(TASK).extra["tag"] == "third"
    assert hub.task_dir(TASK) == hub.root / TASK  # the newest stays where PEFT and older releases look
    for version, tag in ((1, "first"), (2, "second")):
        old = AdapterHub(f"{hub.root}@{TASK}=v{version}")
        assert old.manifest(TASK).version == version and old.manifest(TASK).extra["tag"] == tag
    assert hub.tasks() == [TASK]  # kept versions are not tasks


def test_a_hub_saved_before_versions_reads_as_version_1_and_keeps_it(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    folder = hub.root / TASK
    folder.mkdir(parents=True)
    _writer("old release")(folder)  # a task.json with no "version"
    assert hub.manifest(TASK).version == 1
    hub.save(TASK, _writer("retrained"))
    assert hub.versions(TASK) == [1, 2]
    assert AdapterHub(hub.root, {TASK: 1}).manifest(TASK).extra["tag"] == "old release"


def test_a_version_selector_without_a_task_pins_every_task(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    hub.save(TASK, _writer("second"))
    assert parse_hub(f"{hub.root}@v1") == (hub.root, {"*": 1})
    assert AdapterHub(f"{hub.root}@v1").manifest(TASK).extra["tag"] == "first"
    assert AdapterHub(f"{hub.root}@v2").manifest(TASK).extra["tag"] == "second"
    assert AdapterHub(f"{hub.root}@v1").location == f"{hub.root}@v1"


def test_a_version_the_hub_does_not_have_is_named_with_those_it_has(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    hub.save(TASK, _writer("second"))
    with pytest.raises(AdapterNotFoundError, match=r"no version 7 .*it has: v1, v2"):
        AdapterHub(f"{hub.root}@{TASK}=v7").manifest(TASK)
    with pytest.raises(AdapterNotFoundError, match=r"names question_clasifier, which hub .*it has: question_class"):
        AdapterHub(f"{hub.root}@question_clasifier=v1")  # misspelt: never the newest in silence


def test_a_folder_whose_name_holds_an_at_sign_is_still_a_folder(tmp_path):
    folder = tmp_path / "team@v1"
    hub = AdapterHub(folder)
    hub.save(TASK, _writer("first"))
    assert AdapterHub(str(folder)).root == folder and AdapterHub(str(folder)).pinned == {}


def test_a_crash_after_the_new_version_is_in_place_keeps_the_old_one_as_a_version(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    hub.save(TASK, _writer("second"))
    # As if the process died between "new folder in place" and "old folder moved to .versions".
    kept = hub.version_dir(TASK, 1)
    kept.rename(hub.root / f".old-{TASK}-1234abcd")
    reopened = AdapterHub(hub.root)
    assert reopened.versions(TASK) == [1, 2]
    assert AdapterHub(hub.root, {TASK: 1}).manifest(TASK).extra["tag"] == "first"


def test_a_failed_save_numbers_nothing_and_keeps_the_newest(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    with pytest.raises(RuntimeError):
        hub.save(TASK, lambda folder: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert hub.versions(TASK) == [1]
    hub.save(TASK, _writer("second"))
    assert json.loads((hub.root / TASK / TASK_FILE).read_text())["version"] == 2


def test_remove_deletes_every_version(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    hub.save(TASK, _writer("second"))
    hub.remove(TASK)
    assert hub.tasks() == [] and hub.versions(TASK) == []
    hub.save(TASK, _writer("again"))
    assert hub.manifest(TASK).version == 1


def test_hub_versions_lists_each_version_with_the_hub_string_that_loads_it(tmp_path):
    from click.testing import CliRunner

    from lora_router.cli import main

    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first", data={"files": [{"file": "bundled", "lines": 5, "used": 5, "sha256": "x"}]}))
    hub.save(TASK, _writer("second"))
    result = CliRunner().invoke(main, ["hub", "versions", TASK, "--hub", str(hub.root), "--json"],
                                catch_exceptions=False)
    rows = json.loads(result.stdout)
    assert [(r["version"], r["hub"]) for r in rows] == [(1, f"{hub.root}@{TASK}=v1"), (2, f"{hub.root}@{TASK}=v2")]
    assert rows[0]["data"] == [{"file": "bundled", "lines": 5, "used": 5, "sha256": "x"}]
    listed = CliRunner().invoke(main, ["hub", "list", "--hub", f"{hub.root}@v1", "--json"], catch_exceptions=False)
    assert json.loads(listed.stdout)[0]["version"] == 1  # --hub takes the selector like every command


def test_a_rejected_version_steps_aside_for_the_one_it_replaced_and_stays_loadable_by_its_number(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second"):
        hub.save(TASK, _writer(tag))
    hub.reject(TASK, ["v2 is worse on the test split"], restore=1, by="a test")
    assert hub.latest_version(TASK) == 1 and hub.manifest(TASK).extra["tag"] == "first"  # what a plain --hub loads
    assert hub.versions(TASK) == [1, 2]
    assert AdapterHub(f"{hub.root}@{TASK}=v2").manifest(TASK).extra["tag"] == "second"
    why = hub.rejection(TASK, 2)
    assert why["reasons"] == ["v2 is worse on the test split"] and why["restored"] == 1 and why["by"] == "a test"
    assert hub.rejection(TASK, 1) is None and not (hub.root / TASK / REJECTED_FILE).exists()
    hub.save(TASK, _writer("third"))  # never reuses the rejected number
    assert hub.versions(TASK) == [1, 2, 3] and hub.manifest(TASK).extra["tag"] == "third"
    assert hub.rejection(TASK, 2)["reasons"] == ["v2 is worse on the test split"]


@pytest.mark.parametrize("dies_at_rename", [1, 2, 3])
def test_a_rejection_interrupted_between_its_renames_is_finished_by_the_next_open(tmp_path, monkeypatch,
                                                                                  dies_at_rename):
    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second"):
        hub.save(TASK, _writer(tag))
    real_rename, calls = Path.rename, []

    def rename(self, target):
        calls.append(self)
        if len(calls) == dies_at_rename:
            raise KeyboardInterrupt  # the process dies here
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        hub.reject(TASK, ["refused"], restore=1)
    monkeypatch.undo()
    reopened = AdapterHub(hub.root)
    assert reopened.latest_version(TASK) == 1 and reopened.manifest(TASK).extra["tag"] == "first"
    assert reopened.versions(TASK) == [1, 2] and reopened.rejection(TASK, 2)["reasons"] == ["refused"]
    assert AdapterHub(hub.root, {TASK: 2}).manifest(TASK).extra["tag"] == "second"
    assert not list(hub.root.glob(".old-*"))


def test_rejecting_in_favour_of_a_version_the_hub_does_not_keep_changes_nothing(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    hub.save(TASK, _writer("first"))
    hub.save(TASK, _writer("second"))
    for restore in (2, 5):
        with pytest.raises(AdapterNotFoundError, match=rf"cannot put question_classifier v{restore} back .*kept: v1"):
            hub.reject(TASK, ["refused"], restore=restore)
    assert AdapterHub(hub.root).manifest(TASK).extra["tag"] == "second" and hub.rejection(TASK, 2) is None


def test_hub_versions_marks_the_current_version_and_a_rejected_one_with_its_reasons(tmp_path):
    from click.testing import CliRunner

    from lora_router.cli import main

    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second"):
        hub.save(TASK, _writer(tag))
    hub.reject(TASK, ["question_classifier v2 is not better than v1 on the corrections"], restore=1)
    result = CliRunner().invoke(main, ["hub", "versions", TASK, "--hub", str(hub.root), "--json"],
                                catch_exceptions=False)
    rows = {r["version"]: r for r in json.loads(result.stdout)}
    assert rows[1]["current"] and rows[1]["rejected"] is None
    assert not rows[2]["current"] and rows[2]["hub"] == f"{hub.root}@{TASK}=v2"
    assert rows[2]["rejected"]["reasons"] == ["question_classifier v2 is not better than v1 on the corrections"]
    text = CliRunner().invoke(main, ["hub", "versions", TASK, "--hub", str(hub.root)], catch_exceptions=False).output
    assert "rejected" in text and "v2 rejected: question_classifier v2 is not better than v1" in text


def test_use_makes_a_kept_version_current_and_keeps_the_one_it_replaces(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second", "third"):
        hub.save(TASK, _writer(tag))
    hub.use(TASK, 1)
    assert hub.latest_version(TASK) == 1 and AdapterHub(hub.root).manifest(TASK).extra["tag"] == "first"
    assert hub.versions(TASK) == [1, 2, 3]
    assert AdapterHub(f"{hub.root}@{TASK}=v3").manifest(TASK).extra["tag"] == "third"
    hub.save(TASK, _writer("fourth"))  # numbered above every kept version, not above the current one
    assert hub.versions(TASK) == [1, 2, 3, 4] and hub.manifest(TASK).extra["tag"] == "fourth"
    with pytest.raises(AdapterNotFoundError, match="no version 9 .* v1, v2, v3, v4"):
        hub.use(TASK, 9)
    assert hub.latest_version(TASK) == 4


def test_use_puts_a_rejected_version_back_in_service_and_records_that_it_was_rejected(tmp_path):
    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second"):
        hub.save(TASK, _writer(tag))
    hub.reject(TASK, ["worse on the test split"], restore=1)
    hub.use(TASK, 2)
    reopened = AdapterHub(hub.root)  # a left rejected.json would set it aside again here
    assert reopened.latest_version(TASK) == 2 and reopened.manifest(TASK).extra["tag"] == "second"
    assert reopened.rejection(TASK, 2) is None
    assert json.loads((hub.root / TASK / "rejected.lifted.json").read_text())["reasons"] == ["worse on the test split"]


def test_hub_use_on_the_command_line_says_what_is_current_and_refuses_a_version_that_is_not_one(tmp_path):
    from click.testing import CliRunner

    from lora_router.cli import main

    hub = AdapterHub(tmp_path / "hub")
    for tag in ("first", "second"):
        hub.save(TASK, _writer(tag))
    result = CliRunner().invoke(main, ["hub", "use", TASK, "v1", "--hub", str(hub.root), "--json"],
                                catch_exceptions=False)
    out = json.loads(result.stdout)
    assert (out["current"], out["was"]) == (1, 2) and AdapterHub(hub.root).latest_version(TASK) == 1
    bad = CliRunner().invoke(main, ["hub", "use", TASK, "latest", "--hub", str(hub.root)])
    assert bad.exit_code == 2 and "give it as vN" in bad.output
