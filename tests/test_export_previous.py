"""The export folder and the one it replaced: ``DIR.previous`` kept by every export, swapped back by a rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_router.errors import ExportError
from lora_router.export.previous import export_identity, previous_dir, roll_back, swap_in


def _export(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"id": f"id-{version}", "version": version}), "utf-8")
    (folder / "model.onnx").write_text(version, "utf-8")
    return folder


def _version(folder: Path) -> str | None:
    found = export_identity(folder)
    return found and found["version"]


def test_each_swap_keeps_the_replaced_export_as_previous_and_only_that_one(tmp_path):
    live = tmp_path / "export"
    for version in ("v1", "v2", "v3"):
        swap_in(_export(tmp_path / f"new-{version}", version), live)
    assert _version(live) == "v3" and _version(previous_dir(live)) == "v2"
    assert (previous_dir(live) / "model.onnx").read_text("utf-8") == "v2", "kept whole"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".export.lock", "export", "export.previous"], "v1 is gone; no temporary folder left"


def test_rollback_swaps_back_and_a_second_rollback_rolls_forward(tmp_path):
    live = tmp_path / "export"
    swap_in(_export(tmp_path / "a", "v1"), live)
    swap_in(_export(tmp_path / "b", "v2"), live)
    assert roll_back(live) == {"id": "id-v1", "version": "v1"}
    assert _version(previous_dir(live)) == "v2"
    assert roll_back(live)["version"] == "v2" and _version(previous_dir(live)) == "v1"


def test_a_rollback_naming_an_export_no_longer_served_moves_nothing(tmp_path):
    live = tmp_path / "export"
    swap_in(_export(tmp_path / "a", "v1"), live)
    swap_in(_export(tmp_path / "b", "v2"), live)
    assert roll_back(live, expect_id="id-v2")["version"] == "v1"  # the first worker asked swaps
    assert roll_back(live, expect_id="id-v2")["version"] == "v1"  # the second finds it done
    assert _version(previous_dir(live)) == "v2"


def test_rollback_without_a_previous_export_says_where_it_looked(tmp_path):
    live = tmp_path / "export"
    swap_in(_export(tmp_path / "a", "v1"), live)
    with pytest.raises(ExportError, match=r"no previous export to roll back to: .*export\.previous does not hold"):
        roll_back(live)
    assert _version(live) == "v1"


def test_put_back_moves_a_refused_export_aside_and_the_one_in_service_back_once(tmp_path):
    from lora_router.export.previous import put_back, refused_dir

    live = tmp_path / "export"
    for version in ("v1", "v2"):
        swap_in(_export(tmp_path / f"new-{version}", version), live)  # v2 written, refused by the service on v1
    assert put_back(live, "id-v1")
    assert _version(live) == "v1" and _version(refused_dir(live)) == "v2" and not previous_dir(live).exists()
    assert not put_back(live, "id-v1"), "a second worker finds it done and moves nothing"
    swap_in(_export(tmp_path / "new-v3", "v3"), live)
    assert not put_back(live, "id-v9"), "DIR.previous does not hold the export in service: nothing moves"
    assert _version(live) == "v3" and _version(previous_dir(live)) == "v1"
    assert put_back(live, "id-v1") and _version(refused_dir(live)) == "v3", "one refused export kept, the newest"
