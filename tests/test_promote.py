"""Promote and roll back without downtime: POST /admin/reload and /admin/rollback, in every worker, behind a gate.

Two versions of the conftest's export differ in their manifest's id and
version (the models are the same bytes: what is tested is which version
answers, and that no request is lost or mixes two). The new one is swapped
into the served folder as ``lora-router export`` does (the old one kept as
``DIR.previous``), promoted with ``/admin/reload``, then rolled back.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from lora_router.export.previous import previous_dir, refused_dir, swap_in
from support.export import CHAIN_ALL_OUT_OF_SCOPE, general_chain_file, set_chain, versioned_copy
from support.serve import SAMPLES, Load, Server, wait_for

pytest.importorskip("fastapi")

KEY = "promote-key"
AUTH = {"authorization": f"Bearer {KEY}"}


def _folder_version(folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text("utf-8"))["version"]


def _versions(answer: dict) -> set:
    """The export versions that answered the steps of one chain."""
    return {step["model"]["version"] for step in answer["trace"]["steps"]}


def _served(s: Server) -> str:
    return httpx.get(f"{s.url}/v1/tasks", headers=AUTH, timeout=30).json()["source"]["export"]["version"]


def _asked_now(s: Server, n: int = 12) -> set:
    return set().union(*(_versions(httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[i % len(SAMPLES)]},
                                              headers=AUTH, timeout=60).json()) for i in range(n)))


def _keyed_server(*args: str, tmp_path: Path) -> Server:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n", "utf-8")
    s = Server(*args, "--api-key-file", str(key_file), log_path=tmp_path / "log")
    try:
        s.wait_ready(headers=AUTH)
    except BaseException:
        s.stop()
        raise
    return s


def test_promote_then_roll_back_under_16_clients_with_two_workers_loses_nothing_and_names_each_version(
        exported, tmp_path):
    live = versioned_copy(exported.export, tmp_path / "export", "v1")
    s = _keyed_server("--onnx", str(live), "--workers", "2", tmp_path=tmp_path)
    try:
        wait_for(lambda: s.log().count("ready: onnx") == 2)
        with Load(s.url, clients=16, limit=200, headers=AUTH) as load:
            wait_for(lambda: len(load.codes) >= 32)
            swap_in(versioned_copy(exported.export, tmp_path / "candidate", "v2"), live)  # as `export --out` does
            promoted = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=120)
            assert promoted.status_code == 200, promoted.text
            assert promoted.json()["export"] == {"id": "id-v2", "version": "v2"}
            assert promoted.json()["workers"].startswith("every worker")
            wait_for(lambda: s.log().count("reloaded onnx") >= 3)  # the caller twice (its own + SIGHUP), the other
            assert _asked_now(s) == {"v2"} and _served(s) == "v2"
            seen = len(load.codes)
            wait_for(lambda: len(load.codes) >= seen + 32)

            rolled = httpx.post(f"{s.url}/admin/rollback", headers=AUTH, timeout=120)
            assert rolled.status_code == 200, rolled.text
            assert rolled.json()["export"] == {"id": "id-v1", "version": "v1"}
            wait_for(lambda: s.log().count("reloaded onnx") >= 6)
            assert _asked_now(s) == {"v1"} and _served(s) == "v1"
            seen = len(load.codes)
            wait_for(lambda: len(load.codes) >= seen + 32)
        log = s.log()
    finally:
        s.stop()
    assert load.errors == [] and set(load.codes) == {200}, (load.errors[:3], set(load.codes))
    assert all(len(_versions(a)) == 1 and None not in _versions(a) for a in load.answers), \
        "every answer names the one version that gave it; no chain mixes two"
    assert {"v1", "v2"} <= set().union(*map(_versions, load.answers)), "the load saw both versions answer"
    assert json.loads((previous_dir(live) / "manifest.json").read_text("utf-8"))["version"] == "v2"
    assert log.count("ready: onnx") == 2, "no worker was replaced"


def test_a_candidate_without_the_parity_gate_is_refused_with_the_reason_and_rollback_needs_a_previous(
        exported, tmp_path):
    live = versioned_copy(exported.export, tmp_path / "export", "v1")
    s = _keyed_server("--onnx", str(live), tmp_path=tmp_path)
    try:
        nothing = httpx.post(f"{s.url}/admin/rollback", headers=AUTH, timeout=60)
        assert nothing.status_code == 409 and "no previous export to roll back to" in nothing.json()["error"]

        swap_in(versioned_copy(exported.export, tmp_path / "unchecked", "v2", parity=None), live)
        refused = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=60)
        assert refused.status_code == 409 and "without the parity gate" in refused.json()["error"]
        assert _served(s) == "v1" and _asked_now(s, 3) == {"v1"}, "the export in service keeps answering"
        # ... and is back in the served folder, so a restart loads it; the refused one is kept beside it for a look
        assert _folder_version(live) == "v1" and _folder_version(refused_dir(live)) == "v2"
        assert "now in" in refused.json()["error"] and not previous_dir(live).exists()

        swap_in(versioned_copy(exported.export, tmp_path / "off", "v3", parity={"question_classifier": {
            "merged": {"fp32": {"max_abs_logit_diff": 1.0, "label_agreement": 0.5}}}}), live)
        off = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=60)
        assert off.status_code == 409 and "fails the parity gate" in off.json()["error"]
        assert "max |delta logit| 1 > 0.0001" in off.json()["error"]
        assert _served(s) == "v1"
        unauthorised = httpx.post(f"{s.url}/admin/reload", timeout=30)
        assert unauthorised.status_code == 401
    finally:
        s.stop()


def test_the_admin_endpoints_refuse_without_a_key_configured_and_say_why(exported, tmp_path):
    with Server("--onnx", str(exported.export), log_path=tmp_path / "log") as s:
        for path in ("/admin/reload", "/admin/rollback"):
            r = httpx.post(f"{s.url}{path}", timeout=30)
            assert r.status_code == 403 and "need an API key" in r.json()["error"], path
        assert httpx.post(f"{s.url}/v1/ask", json={"question": SAMPLES[0]}, timeout=60).status_code == 200


def test_reload_unchecked_lets_an_export_without_parity_figures_through_with_a_warning_but_not_failing_figures(
        exported, tmp_path):
    live = versioned_copy(exported.export, tmp_path / "export", "v1")
    s = _keyed_server("--onnx", str(live), "--reload-unchecked", tmp_path=tmp_path)
    try:
        swap_in(versioned_copy(exported.export, tmp_path / "unchecked", "v2", parity=None), live)
        loaded = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=60)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["export"] == {"id": "id-v2", "version": "v2"}
        assert _served(s) == "v2" and _asked_now(s, 3) == {"v2"}
        wait_for(lambda: "(id id-v2, version v2) was written without the parity gate" in s.log())

        swap_in(versioned_copy(exported.export, tmp_path / "off", "v3", parity={"question_classifier": {
            "merged": {"fp32": {"max_abs_logit_diff": 1.0, "label_agreement": 0.5}}}}), live)
        off = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=60)
        assert off.status_code == 409 and "fails the parity gate" in off.json()["error"]
        assert _served(s) == "v2", "figures that fail are refused even with --reload-unchecked"
    finally:
        s.stop()


def test_the_ray_promoter_takes_reload_unchecked_as_the_uvicorn_workers_do(exported, tmp_path):
    from lora_router.serving.ray import ExportCatalog
    from lora_router.serving.ray_promote import Promoter

    live = versioned_copy(exported.export, tmp_path / "export", "v1")
    catalog = ExportCatalog(exports={"default": str(live)})
    deployed_strict, deployed = [], []
    strict = Promoter(catalog, deployed_strict.append, "app")
    unchecked = Promoter(catalog, deployed.append, "app", reload_unchecked=True)
    swap_in(versioned_copy(exported.export, tmp_path / "unchecked", "v2", parity=None), live)
    assert unchecked.handle("reload")["candidate"]["version"] == "v2" and deployed == [1]
    swap_in(versioned_copy(exported.export, tmp_path / "unchecked-too", "v3", parity=None), live)
    assert "without the parity gate" in strict.handle("reload")["refused"] and deployed_strict == []


def test_promote_compare_refuses_a_candidate_significantly_worse_on_the_chain_file_and_takes_one_that_is_not(
        exported, tmp_path):
    live = versioned_copy(exported.export, tmp_path / "export", "v1")
    chain_file, questions = general_chain_file(live, tmp_path / "chain.jsonl")
    s = _keyed_server("--onnx", str(live), "--promote-compare", str(chain_file), tmp_path=tmp_path)
    try:
        swap_in(set_chain(versioned_copy(exported.export, tmp_path / "worse", "v2"), CHAIN_ALL_OUT_OF_SCOPE), live)
        refused = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=120)
        assert refused.status_code == 409, refused.text
        why = refused.json()["error"]
        assert "significantly worse" in why and f"{len(questions)} right -> wrong" in why and questions[0] in why
        assert _served(s) == "v1" and _asked_now(s, 3) == {"v1"}, "the export in service keeps answering"

        swap_in(versioned_copy(exported.export, tmp_path / "same", "v3"), live)  # the same models: not worse
        taken = httpx.post(f"{s.url}/admin/reload", headers=AUTH, timeout=120)
        assert taken.status_code == 200, taken.text
        assert _served(s) == "v3" and _asked_now(s, 3) == {"v3"}
    finally:
        s.stop()
