"""``lora-router serve --engine ray``: the same app as replicas on Ray Serve, several exports multiplexed.

Ray's services listen on every network interface, so the cluster starts
inside a private network namespace (and PID namespace) of its own, with only
loopback up: tests/ray_scenario.py runs there under ``unshare``, clients
included, and prints a JSON summary that these tests read. One cluster for
the module; every wait in the scenario is bounded, and the namespace's
processes die with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from serve_support import same_answer

pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

SCENARIO = Path(__file__).parent / "ray_scenario.py"
QUESTIONS = ["帮我把sales_2024.csv导入到ODS层", "数据清洗流程是什么？", "今天天气怎么样", "什么是机器学习？",
             "把/data/raw/user_log.parquet和orders.csv合并", "ODS层和DWD层有什么区别", "重跑一下昨天失败的同步任务",
             "周末去哪儿吃火锅", "怎么申请订单表的查询权限？", "生成上个月的销售报表", "Python怎么给列表排序",
             "帮我把《2024年度财务报告.xlsx》发给财务部"]
# Export b answers every question as a general one: a team's chain that differs from a's at a glance.
CHAIN_B = {"version": 1, "start": "question_classifier", "steps": [
    {"task": "question_classifier", "threshold": 0.0,
     "on": {"数据平台相关问题": "route:general", "通用问题": "route:general", "无关问题": "route:general"}}]}


def namespace_command() -> list[str] | None:
    """``unshare`` with a private network, PID and mount namespace, or None when this machine refuses one."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    base = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        base.insert(1, "--map-root-user")
    probe = subprocess.run([*base, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return base if probe.returncode == 0 else None


def with_chain(export: Path, folder: Path, chain: dict) -> Path:
    """A copy of ``export`` that runs ``chain``: chain.json and its sha256 in the manifest rewritten."""
    shutil.copytree(export, folder)
    text = json.dumps(chain, ensure_ascii=False, indent=2) + "\n"
    (folder / "chain.json").write_text(text, "utf-8")
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    data = text.encode("utf-8")
    manifest["files"]["chain.json"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return folder


def expected_answers(exports: dict[str, Path], questions: list[str]) -> dict:
    from lora_router.runtime import OnnxRouter

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
    expected = expected_answers({"a": export_a, "b": export_b}, QUESTIONS)
    (work / "expected.json").write_text(json.dumps({"questions": QUESTIONS, "expected": expected},
                                                   ensure_ascii=False), "utf-8")
    # A short folder of its own: Ray's socket paths must stay under 107 bytes, and the
    # cleanup check looks for it in every command line on the machine.
    temp_dir = tempfile.mkdtemp(prefix="lr-ray-", dir="/tmp")
    out = work / "summary.json"
    inner = [sys.executable, str(SCENARIO), "--export-a", str(export_a), "--export-b", str(export_b),
             "--expected", str(work / "expected.json"), "--temp-dir", temp_dir, "--out", str(out)]
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


def test_the_cluster_runs_in_its_own_network_namespace(scenario):
    assert scenario["namespace"]["interfaces"] == ["lo"]


def test_two_replicas_answer_through_rays_proxy_as_onnx_router_does(scenario):
    answers = check(scenario, "answers")
    assert answers["replicas_running"] == 2 and len(answers["replica_pids"]) == 2
    assert answers["equal"] == len(QUESTIONS), answers["first_mismatch"]
    assert answers["batch_equal"]


def test_a_killed_replica_is_replaced_and_no_request_fails(scenario):
    load = check(scenario, "load")
    killed = load["killed"]
    assert load["replaced"], f"the killed replica was not replaced: {load}"
    assert killed["pid"] in killed["replicas_before"] and killed["pid"] not in killed["replicas_after"]
    assert load["clients"] == 16 and load["answered"] >= 320
    assert load["failed"] == 0, load["failures"]
    assert load["mismatches"] == 0
    # Requests in flight on the killed replica are sent again by Ray's proxy (ReplayLostRequests), so
    # clients need no retry of their own; they would retry a connection error or a 503.
    print(f"\nreplica killed after {killed['at_request']} requests, replaced in {killed['replaced_in_s']} s; "
          f"{load['answered']} answered; replayed by the proxy: {load['replayed_by_proxy']}; retried by clients: "
          f"{load['retried_requests']} ({load['retries']} retries)")


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


def test_the_cluster_and_its_processes_are_gone_at_the_end(scenario):
    assert scenario["exit_code"] == 0, scenario["stderr_tail"]
    assert check(scenario, "cleanup")["left"] == []
    assert scenario["left_on_machine"] == []
