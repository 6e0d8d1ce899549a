"""``lora-router serve --engine ray``: the same app as replicas on Ray Serve, several exports multiplexed.

Ray's services listen on every network interface, so the cluster starts
inside a private network namespace (and PID namespace) of its own, with only
loopback up: tests/support/ray_scenario.py runs there under ``unshare``: it starts
``lora-router serve --engine ray``, runs the clients, stops the server with
SIGTERM, and prints a JSON summary that these tests read. One cluster for
the module; every wait in the scenario is bounded, and the namespace's
processes die with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.export import copy_export, versioned_copy
from support.serve import same_answer

pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")

SCENARIO = Path(__file__).parent / "support" / "ray_scenario.py"
QUESTIONS = ["帮我把sales_2024.csv导入到ODS层", "数据清洗流程是什么？", "今天天气怎么样", "什么是机器学习？",
             "把/data/raw/user_log.parquet和orders.csv合并", "ODS层和DWD层有什么区别", "重跑一下昨天失败的同步任务",
             "周末去哪儿吃火锅", "怎么申请订单表的查询权限？", "生成上个月的销售报表", "Python怎么给列表排序",
             "帮我把《2024年度财务报告.xlsx》发给财务部"]
# Export b answers every question as a general one: a team's chain that differs from a's at a glance.
KEY = "ray-scenario-key"
CHAIN_B = {"version": 1, "start": "question_classifier", "steps": [
    {"task": "question_classifier", "threshold": 0.0,
     "on": {"数据平台相关问题": "route:general", "通用问题": "route:general", "无关问题": "route:general"}}]}


def namespace_command() -> list[str] | None:
    """``unshare`` with a private network, PID and mount namespace, or None when this machine refuses one."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    # --kill-child: if this test dies or times out, the namespace's first process, and with it every other, dies too.
    base = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        base.insert(1, "--map-root-user")
    probe = subprocess.run([*base, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return base if probe.returncode == 0 else None


def with_chain(export: Path, folder: Path, chain: dict) -> Path:
    """A copy of ``export`` that runs ``chain``."""
    from support.export import set_chain

    shutil.copytree(export, folder)
    return set_chain(folder, chain)


def expected_answers(exports: dict[str, Path], questions: list[str]) -> dict:
    from lora_router.backends.onnx import OnnxRouter

    return {name: [OnnxRouter(folder, precision="fp32").ask(q) for q in questions] for name, folder in exports.items()}


def ray_processes_of(temp_dir: str) -> list[str]:
    """Processes anywhere on this machine started for the cluster in ``temp_dir``."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if temp_dir in cmd:
                left.append(f"{entry.name}: {cmd[:160]}")
    return left


@pytest.fixture(scope="module")
def scenario(exported, tmp_path_factory):
    command = namespace_command()
    if command is None:
        pytest.skip("cannot make a private network namespace here (unshare --net needs root or user namespaces); "
                    "Ray's services would listen on every interface, so the Ray Serve tests do not run")
    work = tmp_path_factory.mktemp("ray")
    export_a = Path(exported.export)
    export_b = with_chain(export_a, work / "export-b", CHAIN_B)
    # Export a is served from a folder of the test's own, into which new versions are swapped (DIR.previous beside).
    served_a = versioned_copy(export_a, work / "live" / "a", "v1")
    candidate_a = versioned_copy(export_a, work / "candidate-a", "v2")
    unchecked_a = versioned_copy(export_a, work / "unchecked-a", "v3", parity=None)
    shadow_a = copy_export(export_a, work / "shadow-a")  # the candidate shadowing export a
    key_file = work / "key"
    key_file.write_text(KEY + "\n", "utf-8")
    expected = expected_answers({"a": served_a, "b": export_b}, QUESTIONS)
    (work / "expected.json").write_text(json.dumps({"questions": QUESTIONS, "expected": expected},
                                                   ensure_ascii=False), "utf-8")
    # A short folder of its own: Ray's socket paths must stay under 107 bytes, and the
    # cleanup check looks for it in every command line on the machine.
    temp_dir = tempfile.mkdtemp(prefix="lr-ray-", dir="/tmp")
    out = work / "summary.json"
    inner = [sys.executable, str(SCENARIO), "--served-a", str(served_a), "--candidate-a", str(candidate_a),
             "--unchecked-a", str(unchecked_a), "--shadow-a", str(shadow_a), "--key-file", str(key_file),
             "--export-b", str(export_b), "--expected", str(work / "expected.json"), "--temp-dir", temp_dir,
             "--out", str(out)]
    # Ray writes its cluster token under $HOME/.ray: a home of the test's own.
    env = {**os.environ, "HOME": temp_dir, "RAY_USAGE_STATS_ENABLED": "0"}
    script = "ip link set lo up && exec " + " ".join(f"'{a}'" for a in inner)
    try:
        proc = subprocess.run([*command, "sh", "-c", script], capture_output=True, text=True, timeout=600, env=env)
        summary = json.loads(out.read_text("utf-8")) if out.is_file() else {}
        summary["exit_code"] = proc.returncode
        summary["stderr_tail"] = proc.stderr[-3000:]
        summary["left_on_machine"] = ray_processes_of(temp_dir)
        summary["expected"] = expected
        yield summary
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def check(summary: dict, key: str) -> dict:
    assert "error" not in summary, summary["error"] + summary.get("stderr_tail", "")
    assert key in summary, f"the scenario did not reach {key!r}: {summary}"
    return summary[key]


@pytest.mark.slow
def test_the_cluster_runs_in_its_own_network_namespace(scenario):
    assert scenario["namespace"]["interfaces"] == ["lo"]


@pytest.mark.slow
def test_two_replicas_answer_through_rays_proxy_as_onnx_router_does(scenario):
    answers = check(scenario, "answers")
    assert answers["replicas_running"] == 2 and len(answers["replica_pids"]) == 2
    assert answers["equal"] == len(QUESTIONS), answers["first_mismatch"]
    assert answers["batch_equal"]


@pytest.mark.slow
def test_the_default_export_is_shadowed_on_rays_replicas_and_each_counts_in_its_metrics(scenario):
    shadow = check(scenario, "shadow")
    assert shadow["announced"], "the server did not say it shadows the default export"
    assert shadow["metrics_status"] == 200
    assert sum(shadow["counted"].values()) > 0, f"no shadowed question in a replica's /metrics: {shadow}"
    assert set(shadow["counted"]) <= {"agree", "disagree"}
    print(f"\nshadowed questions in one replica's /metrics after {shadow['rounds']} round(s): {shadow['counted']}")


@pytest.mark.slow
def test_a_killed_replica_is_replaced_and_no_request_fails(scenario):
    load = check(scenario, "load")
    killed = load["killed"]
    assert load["replaced"], f"the killed replica was not replaced: {load}"
    assert killed["pid"] in killed["replicas_before"] and killed["pid"] not in killed["replicas_after"]
    assert load["clients"] == 16 and load["answered"] >= 320
    assert load["failed"] == 0, load["failures"]
    assert load["mismatches"] == 0
    # Requests in flight on the killed replica are sent again by Ray's proxy (ReplayLostRequests), so
    # clients need no retry of their own, as docs/ray.md says; they could retry a connection error or a 503.
    assert load["retries"] == 0, f"clients had to retry {load['retried_requests']} requests"
    print(f"\nreplica killed after {killed['at_request']} requests, replaced in {killed['replaced_in_s']} s; "
          f"{load['answered']} answered; replayed by the proxy: {load['replayed_by_proxy']}; retried by clients: "
          f"{load['retried_requests']} ({load['retries']} retries)")


@pytest.mark.slow
def test_each_request_is_answered_by_the_export_it_names(scenario):
    multiplex = check(scenario, "multiplex")
    expected = scenario["expected"]
    differ = sum(not same_answer(a, b) for a, b in zip(expected["a"][:6], expected["b"][:6]))
    assert differ >= 3, "the two exports must answer differently for the test to mean anything"
    assert multiplex["equal"] == multiplex["asked"]
    assert multiplex["thresholds"]["b"] == {"question_classifier": 0.0}
    assert multiplex["thresholds"]["a"] != multiplex["thresholds"]["b"]
    assert multiplex["hyphen_header"] == multiplex["thresholds"]["b"]
    assert multiplex["unknown"]["status"] == 404 and multiplex["unknown"]["exports"] == ["a", "b"]
    assert multiplex["path_id"]["status"] == 422 and multiplex["path_id"]["error_type"] == "validation"
    assert multiplex["evictions"] >= 1, "one export per replica: serving both evicts one"


@pytest.mark.slow
def test_every_request_through_rays_proxy_needs_the_key(scenario):
    assert check(scenario, "keyless") == {"ask": 401, "reload": 401}


def _after(answers: list[dict], event: dict, until: dict | None = None) -> list[dict]:
    """The answers to requests sent after ``event`` was done (and before ``until`` was sent)."""
    return [a for a in answers if a["t0"] > event["done"] and (until is None or a["t0"] < until["sent"])]


@pytest.mark.slow
def test_promote_and_roll_back_on_ray_roll_through_every_replica_under_load_and_lose_nothing(scenario):
    promote = check(scenario, "promote")
    answers, events = promote["answers"], promote["events"]
    assert promote["clients"] == 16 and len(answers) >= 16 * 9
    assert [a for a in answers if a.get("status") != 200] == []
    assert all(a["equal"] for a in answers), "an answer changed beyond the version it names"
    assert all(len(a["versions"]) == 1 for a in answers), "one chain was answered by two versions"
    reload, rollback, sighup, refused = (events[k] for k in ("reload", "rollback", "sighup", "refused"))
    assert reload["status"] == 200 and reload["body"]["status"] == "reloaded", reload
    assert reload["body"]["candidate"]["version"] == "v2" and reload["body"]["export"]["version"] == "v2"
    assert "every replica" in reload["body"]["workers"]
    assert rollback["status"] == 200 and rollback["body"]["export"]["version"] == "v1", rollback
    assert sighup["logged"], "the server did not log the promotion SIGHUP asked for"
    assert refused["status"] == 409 and "parity" in refused["body"]["error"], refused
    # Once the update is answered, every replica serves the new version: no request started later gets the old.
    assert {v for a in _after(answers, reload, rollback) for v in a["versions"]} == {"v2"}
    assert {v for a in _after(answers, rollback, sighup) for v in a["versions"]} == {"v1"}
    assert {v for a in _after(answers, sighup) for v in a["versions"]} == {"v2"}, "the refused v3 must not serve"
    # Both versions really answered on both replicas, reconfigured in place: no replica was restarted.
    assert events["replicas_after"] == events["replicas_before"] and len(events["replicas_before"]) == 2
    print(f"\npromoted in {reload['done'] - reload['sent']:.1f} s, rolled back in "
          f"{rollback['done'] - rollback['sent']:.1f} s, SIGHUP in {sighup['done'] - sighup['sent']:.1f} s; "
          f"{len(answers)} answered under 16 clients")


@pytest.mark.slow
def test_sigterm_stops_the_server_and_its_cluster_leaves_no_process(scenario):
    assert scenario["exit_code"] == 0, scenario["stderr_tail"]
    cleanup = check(scenario, "cleanup")
    assert cleanup["server_exit"] == 0, cleanup["server_log_tail"]
    assert cleanup["left"] == []
    assert scenario["left_on_machine"] == []


# ---------------------------------------------------------------- in process, no cluster

def test_export_ids_are_names_never_paths(tmp_path):
    from lora_router.errors import ConfigError, InputError
    from lora_router.serving.ray import ExportCatalog, UnknownExportError

    for bad in ("../a", "a/b", "a\\b", "..", "", ".hidden", "x" * 200):
        with pytest.raises(InputError, match="not valid"):
            ExportCatalog(exports={bad: str(tmp_path)})
    catalog = ExportCatalog(exports={"team-a": str(tmp_path)})
    assert catalog.default == "team-a", "a single export answers requests that name none"
    with pytest.raises(InputError):
        catalog.choose("../team-a")
    with pytest.raises(UnknownExportError, match="known: team-a"):
        catalog.folder("team-b")
    with pytest.raises(ConfigError, match="default export 'b' is not one of"):
        ExportCatalog(exports={"a": str(tmp_path)}, default="b")
    with pytest.raises(ConfigError, match="no export to serve"):
        ExportCatalog()


def test_an_exports_root_serves_its_export_folders_by_name(tmp_path):
    from lora_router.serving.ray import ExportCatalog, UnknownExportError

    for name in ("team-a", "team-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "notes").mkdir()  # no manifest: not an export
    catalog = ExportCatalog(root=str(tmp_path), default="team-a", max_exports_per_replica=2)
    assert catalog.known() == ["team-a", "team-b"]
    assert catalog.folder("team-b") == str(tmp_path / "team-b")
    assert catalog.choose("") == "team-a"
    with pytest.raises(UnknownExportError):
        catalog.folder("notes")
    assert ExportCatalog.from_json(catalog.to_json()) == catalog


def test_app_builder_refuses_an_unknown_arg_naming_the_valid_ones(tmp_path):
    from lora_router.errors import ConfigError
    from lora_router.serving.ray import app_builder

    with pytest.raises(ConfigError, match="unknown app_builder arg.*'replicas'.*valid: exports"):
        app_builder({"exports": {"a": str(tmp_path)}, "replicas": 2})
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        app_builder({"exports": {"a": str(tmp_path)}, "settings": {"max_batch_tokens": 0}})
    app_builder({"exports_root": str(tmp_path), "default_export": "a", "precision": "int8",
                 "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
                 "settings": {"max_batch_requests": 16}})


def test_the_key_never_travels_in_a_deployments_arguments_nor_a_config_file(tmp_path):
    from lora_router.errors import ConfigError
    from lora_router.serving.ray import ExportCatalog, app_builder, build_app
    from lora_router.serving.settings import ServeSettings

    key = "k-" + "9" * 30
    app = build_app(ExportCatalog(exports={"a": str(tmp_path)}), settings=ServeSettings(api_key=key))
    args = app._bound_deployment.init_args
    assert not any(key in str(a) for a in args) and args[-1] is True, "replicas read the key from their environment"
    with pytest.raises(ConfigError, match="api_key_file"):
        app_builder({"exports": {"a": str(tmp_path)}, "settings": {"api_key": key}})
    from_env = app_builder({"exports": {"a": str(tmp_path)}, "api_key_from_env": True})
    assert from_env._bound_deployment.init_args[-1] is True


def test_a_replica_reads_the_key_from_its_environment_and_fails_loudly_without_it(tmp_path, monkeypatch):
    from lora_router.errors import ConfigError
    from lora_router.serving.ray import ExportCatalog, ReplicaApp
    from lora_router.serving.settings import ServeSettings

    args = (ExportCatalog(exports={"a": str(tmp_path)}).to_json(), "{}", ServeSettings().to_json())
    monkeypatch.delenv("LORA_ROUTER_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="LORA_ROUTER_API_KEY"):
        ReplicaApp(*args, key_from_env=True)
    monkeypatch.setenv("LORA_ROUTER_API_KEY", "from-the-environment")
    assert ReplicaApp(*args, key_from_env=True).settings.key() == "from-the-environment"
    assert ReplicaApp(*args).settings.key() is None, "no key asked, none taken from the environment"


def test_a_shadow_runs_beside_the_default_export_so_a_deployment_without_one_is_refused(tmp_path):
    from lora_router.errors import ConfigError
    from lora_router.serving.ray import app_builder
    from lora_router.serving.settings import ServeSettings

    shadow = {"shadow": str(tmp_path / "candidate"), "shadow_share": 0.1}
    with pytest.raises(ConfigError, match="beside the default export, and this deployment has none"):
        app_builder({"exports_root": str(tmp_path), "settings": shadow})
    app = app_builder({"exports_root": str(tmp_path), "default_export": "a", "settings": shadow})
    settings = ServeSettings.from_json(app._bound_deployment.init_args[2])
    assert (settings.shadow, settings.shadow_share) == (shadow["shadow"], 0.1)


def _asgi_call(app, body: bytes = b'{"question": "q"}', disconnect: bool = False) -> tuple[int, dict, bytes]:
    import asyncio

    sent: list[dict] = []

    async def run():
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            if disconnect:
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/ask", "headers": []}
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(run())
    if not sent:
        return 0, {}, b""
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


class _Replica:
    """An ASGI app standing for Ray's proxy: sends nothing (its replica died) ``silent`` times, then answers."""

    def __init__(self, silent: int, status: int = 200):
        self.silent, self.status, self.bodies = silent, status, []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.bodies.append(message["body"])
        if len(self.bodies) <= self.silent:
            return
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"answer"})


def test_the_proxy_replays_a_request_whose_replica_died_before_answering():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=1)
    status, _, body = _asgi_call(ReplayLostRequests(inner))
    assert (status, body) == (200, b"answer")
    assert inner.bodies == [b'{"question": "q"}'] * 2, "the same body every time"


def test_the_proxy_replays_a_lost_request_once_at_most():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=99)  # as a request that kills every replica it reaches
    status, headers, _ = _asgi_call(ReplayLostRequests(inner))
    assert status == 503 and len(inner.bodies) == 2, "sent once, replayed once, never a third replica"


def test_the_proxy_refuses_a_keyless_request_before_reading_its_body():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=0)
    reads = []

    async def run():
        sent = []

        async def receive():
            reads.append(1)
            return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": True}

        async def send(message):
            sent.append(message)

        headers = [(b"content-length", str(8 << 20).encode())]
        await ReplayLostRequests(inner, key=b"s3cret")({"type": "http", "method": "POST", "path": "/v1/ask",
                                                         "headers": headers}, receive, send)
        return sent

    sent = asyncio.run(run())
    assert sent[0]["status"] == 401 and reads == [] and inner.bodies == []


def test_the_proxy_gives_up_on_a_stalled_body_with_408():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=0)

    async def run():
        sent = []
        first = True

        async def receive():
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"quest', "more_body": True}
            await asyncio.Event().wait()  # the rest never comes

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(ReplayLostRequests(inner, idle_s=0.05)(
            {"type": "http", "method": "POST", "path": "/v1/ask", "headers": []}, receive, send), 10)
        return sent

    sent = asyncio.run(run())
    assert sent[0]["status"] == 408 and inner.bodies == []


def test_the_proxy_answers_503_with_retry_after_when_no_replica_answers():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=99)
    status, headers, body = _asgi_call(ReplayLostRequests(inner, tries=3))
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error_type"] == "unavailable"
    assert len(inner.bodies) == 3


def test_the_proxy_never_replays_an_answer_the_app_gave_nor_for_a_client_gone():
    from lora_router.serving.ray_proxy import ReplayLostRequests

    inner = _Replica(silent=0, status=500)
    assert _asgi_call(ReplayLostRequests(inner))[0] == 500 and len(inner.bodies) == 1

    class Gone(_Replica):
        async def __call__(self, scope, receive, send):
            message = await receive()
            self.bodies.append(message["body"])
            assert (await receive())["type"] == "http.disconnect"  # as Ray's proxy learns the client left

    gone = Gone(silent=99)
    assert _asgi_call(ReplayLostRequests(gone), disconnect=True)[0] == 0 and len(gone.bodies) == 1


@pytest.mark.slow
def test_an_evicted_export_stops_only_after_its_requests_are_answered(exported):
    import asyncio

    from lora_router.core.options import PredictorOptions
    from lora_router.serving import ModelSource, ServeSettings
    from lora_router.serving.metrics import ServiceMetrics
    from lora_router.serving.ray import ExportService

    async def run():
        options = PredictorOptions(precision="fp32")
        service = ExportService("a", ModelSource(onnx=str(exported.export), options=options), ServeSettings(),
                                ServiceMetrics())
        await service.start()
        asking = asyncio.create_task(service.ask(["帮我把sales_2024.csv导入到ODS层", "数据清洗流程是什么？"]))
        await asyncio.sleep(0)  # the request has started
        await service.__del__()  # what Ray Serve's multiplexer awaits when it evicts an export
        assert asking.done(), "stop returned before the request in flight was answered"
        return asking.result()

    answers = asyncio.run(run())
    assert [a["question"] for a in answers] == ["帮我把sales_2024.csv导入到ODS层", "数据清洗流程是什么？"]
    assert all(a["steps"] for a in answers)


def _catalog_of(folder: Path):
    from lora_router.serving.ray import ExportCatalog

    return ExportCatalog(exports={"a": str(folder)})


@pytest.mark.slow
def test_a_replica_reconfigured_reloads_only_the_exports_whose_folder_changed(exported, tmp_path):
    from lora_router.core.options import PredictorOptions
    from lora_router.export.previous import swap_in
    from lora_router.serving import ServeSettings
    from lora_router.serving.ray import ReplicaApp

    live = versioned_copy(Path(exported.export), tmp_path / "live" / "a", "v1")

    async def run():
        replica = ReplicaApp(_catalog_of(live).to_json(), PredictorOptions(precision="fp32").to_json(),
                             ServeSettings().to_json())
        service = await replica.load_export("a")
        try:
            served = lambda: (service.describe()["source"]["export"]["version"],  # noqa: E731
                              service.describe()["source"]["generation"])
            await replica.reconfigure({"promotion": 1})  # nothing changed on disk: nothing reloaded
            unchanged = served()
            swap_in(versioned_copy(Path(exported.export), tmp_path / "candidate", "v2"), live)
            await replica.reconfigure({"promotion": 2})
            promoted = served()
            swap_in(versioned_copy(Path(exported.export), tmp_path / "unchecked", "v3", parity=None), live)
            await replica.reconfigure({"promotion": 3})  # fails the gate: v2 keeps answering, nothing raised
            refused = served()
            answer = (await service.ask(["数据清洗流程是什么？"]))[0]
        finally:
            await service.stop()
        return unchanged, promoted, refused, answer

    unchanged, promoted, refused, answer = asyncio.run(run())
    assert unchanged == ("v1", 1)
    assert promoted == ("v2", 2)
    assert refused == ("v2", 2)
    assert {step["model"]["version"] for step in answer["trace"]["steps"]} == {"v2"}


@pytest.mark.slow
def test_the_promoter_deploys_only_a_candidate_that_passes_the_gate_and_swaps_back_a_refused_rollback(
        exported, tmp_path):
    from lora_router.export.previous import previous_dir, refused_dir, swap_in
    from lora_router.serving.ray_promote import Promoter

    live = versioned_copy(Path(exported.export), tmp_path / "live" / "a", "v1")
    deployed: list[int] = []
    promoter = Promoter(_catalog_of(live), deployed.append, "lora-router")

    swap_in(versioned_copy(Path(exported.export), tmp_path / "c2", "v2"), live)
    reloaded = promoter.handle("reload")
    assert reloaded["status"] == "reloaded" and reloaded["candidate"]["version"] == "v2" and deployed == [1]

    swap_in(versioned_copy(Path(exported.export), tmp_path / "c3", "v3", parity=None), live)
    refused = promoter.handle("reload", "a")
    assert "parity" in refused["refused"] and deployed == [1], "a refused candidate must not be deployed"
    # The refused v3 leaves the folder for DIR.refused and v2, in service, is back: a restart loads v2.
    assert _version_in(live) == "v2" and _version_in(refused_dir(live)) == "v3" and not previous_dir(live).exists()
    assert "no previous export" in promoter.handle("rollback")["refused"] and deployed == [1]

    # A previous export that fails the gate: the rollback to it is refused and the folders are swapped back.
    versioned_copy(Path(exported.export), previous_dir(live), "v0", parity=None)
    refused_rollback = promoter.handle("rollback")
    assert "parity" in refused_rollback["refused"] and deployed == [1]
    assert _version_in(live) == "v2" and _version_in(previous_dir(live)) == "v0", "not swapped back"
    assert "no export 'zz'" in promoter.handle("reload", "zz")["refused"]


def _shadowed(registry) -> dict[str, float]:
    """The replica's shadowed questions by result (agree / disagree)."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "lora_router_shadow_questions_total":
                out[sample.labels["result"]] = out.get(sample.labels["result"], 0) + sample.value
    return out


@pytest.mark.slow
def test_a_replica_shadows_its_default_export_only_and_counts_in_its_metrics(exported, tmp_path):
    from lora_router.core.options import PredictorOptions
    from lora_router.serving import ServeSettings
    from lora_router.serving.ray import ExportCatalog, ReplicaApp
    from support.export import CHAIN_ALL_GENERAL, copy_export, set_chain

    export_b = set_chain(copy_export(Path(exported.export), tmp_path / "b"), CHAIN_ALL_GENERAL)
    candidate = copy_export(Path(exported.export), tmp_path / "candidate")  # production's own models and chain
    catalog = ExportCatalog(exports={"a": str(exported.export), "b": str(export_b)}, default="a")
    questions = QUESTIONS[:6]

    async def run():
        # One onnxruntime thread and the export's own precision, as the candidate runs: the same answers.
        replica = ReplicaApp(catalog.to_json(), PredictorOptions(threads=1).to_json(),
                             ServeSettings(shadow=str(candidate)).to_json())
        a, b = await replica.load_export("a"), await replica.load_export("b")
        services = [a, b]
        try:
            shadows = (a.shadow is not None, b.shadow)
            for q in questions:  # one at a time: both sides answer each question alone
                await a.ask([q])
                assert a.shadow.drain(30)
            await b.ask(questions)
            counted = _shadowed(replica.metrics.registry)
            # The multiplexer unloads the default export to make room, and loads it again: its shadow comes
            # back and counts on in the replica's counters.
            await a.stop()
            again = await replica.load_export("a")
            services.append(again)
            await again.ask(questions[:2])
            assert again.shadow.drain(30)
            counted_again = _shadowed(replica.metrics.registry)
            metrics_page = replica.metrics.render().decode()
        finally:
            for service in services:
                await service.stop()
        return shadows, counted, counted_again, metrics_page

    shadows, counted, counted_again, metrics_page = asyncio.run(run())
    assert shadows == (True, None), "the default export is shadowed, the other export is not"
    assert counted == {"agree": len(questions)}, "a candidate with production's models agrees on every question"
    assert counted_again == {"agree": len(questions) + 2}
    assert "lora_router_shadow_questions_total" in metrics_page


@pytest.mark.slow
def test_the_promoter_with_promote_compare_refuses_a_worse_candidate_and_one_it_cannot_compare(exported, tmp_path):
    from lora_router.core.options import PredictorOptions
    from lora_router.export.previous import refused_dir, swap_in
    from lora_router.serving.ray_promote import Promoter
    from support.export import CHAIN_ALL_OUT_OF_SCOPE, general_chain_file, set_chain

    live = versioned_copy(Path(exported.export), tmp_path / "live" / "a", "v1")
    chain_file, _ = general_chain_file(live, tmp_path / "chain.jsonl")
    deployed: list[int] = []
    promoter = Promoter(_catalog_of(live), deployed.append, "lora-router", promote_compare=str(chain_file),
                        options=PredictorOptions())

    swap_in(versioned_copy(Path(exported.export), tmp_path / "same", "v2"), live)  # the same models: not worse
    assert promoter.handle("reload")["status"] == "reloaded" and deployed == [1]

    swap_in(set_chain(versioned_copy(Path(exported.export), tmp_path / "worse", "v3"), CHAIN_ALL_OUT_OF_SCOPE), live)
    refused = promoter.handle("reload")
    assert "significantly worse" in refused["refused"] and deployed == [1]

    # The refused v3 was moved aside and v2, in service, put back: a restart would load v2.
    assert _version_in(live) == "v2" and _version_in(refused_dir(live)) == "v3"
    # Two exports written without a promotion between them: DIR.previous no longer holds the export in service.
    swap_in(versioned_copy(Path(exported.export), tmp_path / "v4", "v4"), live)
    swap_in(versioned_copy(Path(exported.export), tmp_path / "v5", "v5"), live)
    assert "does not hold it" in promoter.handle("reload")["refused"] and deployed == [1]


def _version_in(folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text("utf-8"))["version"]
