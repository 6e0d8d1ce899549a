"""OnnxRouter: torch-free, same results as the PyTorch router, damaged folders, devices, threads."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from lora_router.errors import ConfigError, DeviceError, ExportFormatError, InputError
from support.export import ASK, copy_export
from support.isolation import run_refusing

HOSTILE = ["😀🔥💯", "\x00\x01\x02数据", "\u200b\u200c\u200d", "\u202e表据数", "ＳＱＬ全角", "a\tb\nc", "x" * 100_000]
BANNED = ("torch", "transformers", "peft", "optimum", "sklearn")


@pytest.fixture(scope="module")
def onnx_routers(exported):
    from lora_router.backends.onnx import OnnxRouter

    return {(layout, precision): OnnxRouter(exported.export, layout=layout, precision=precision)
            for layout in ("merged", "shared", "multi") for precision in ("fp32", "int8")}


# ---------------------------------------------------------------- no torch on this path
RUNTIME_CODE = """
import lora_router
router = lora_router.OnnxRouter(sys.argv[1])
out = [router.ask(q)["route"] for q in {ask!r}]
for task in router.tasks:
    router.predict(task, "帮我把sales_2024.csv导入到ODS层")
from lora_router.backends.onnx import OnnxRouter
OnnxRouter(sys.argv[1], layout="merged", precision="fp32").ask_batch({ask!r})
result = out
"""


@pytest.mark.parametrize("block", [False, True], ids=["sys.modules", "imports-refused"])
def test_runtime_imports_no_torch(exported, block):
    run = run_refusing(RUNTIME_CODE.format(ask=ASK[:3]), BANNED, args=(str(exported.export),), block=block)
    assert run["loaded"] == []
    assert len(run["result"]) == 3


# ---------------------------------------------------------------- same results as PyTorch
def test_defaults_are_the_one_call_layout_in_int8(exported, onnx_routers):
    from lora_router.backends.onnx import OnnxRouter

    router = OnnxRouter(exported.export, tasks=["question_classifier"])
    assert (router.layout, router.precision, router.tasks) == ("multi", "int8", ["question_classifier"])
    with pytest.raises(ConfigError, match="unknown layout 'fused'; valid: trunk, multi, shared, merged"):
        OnnxRouter(exported.export, layout="fused")
    with pytest.raises(ConfigError, match="task\\(s\\) \\['nope'\\] are not in export"):
        OnnxRouter(exported.export, tasks=["nope"])


@pytest.mark.parametrize("layout", ["merged", "shared", "multi"])
def test_predictions_equal_the_pytorch_router(exported, torch_router, onnx_routers, layout):
    router = onnx_routers[(layout, "fp32")]
    texts = ASK + ["周末去哪儿吃火锅", "上传D:\\报表\\q1.xlsx到平台"]
    for task in ("question_classifier", "question_type_classifier"):
        for ours, ref in zip(router.predict_batch(task, texts), torch_router.predict_batch(task, texts)):
            assert ours["predicted_label"] == ref["predicted_label"]
            for label, p in ref["probabilities"].items():
                assert ours["probabilities"][label] == pytest.approx(p, abs=1e-5)
    pairs = zip(router.predict_batch("file_name_pick", texts), torch_router.predict_batch("file_name_pick", texts))
    for ours, ref in pairs:
        assert ours["file_names"] == ref["file_names"]
        assert [(s["start"], s["end"]) for s in ours["spans"]] == [(s["start"], s["end"]) for s in ref["spans"]]
    pairs = zip(router.predict_batch("question_answer", texts), torch_router.predict_batch("question_answer", texts))
    for ours, ref in pairs:
        assert (ours["kb_id"], ours["answer"]) == (ref["kb_id"], ref["answer"])
        assert ours["confidence"] == pytest.approx(ref["confidence"], abs=1e-5)


@pytest.mark.parametrize("key", [("merged", "fp32"), ("shared", "fp32"), ("multi", "fp32"), ("merged", "int8"),
                                 ("shared", "int8"), ("multi", "int8")], ids="-".join)
def test_ask_gives_the_same_route_and_steps(torch_router, onnx_routers, key):
    router = onnx_routers[key]
    # int8 moves a probability by ~1e-3: keep to questions whose steps are clear of their thresholds.
    questions = ASK if key[1] == "fp32" else [ASK[1], ASK[2], ASK[4]]
    for ours, ref in zip(router.ask_batch(questions), torch_router.ask_batch(questions)):
        assert ours["route"] == ref["route"], ours["question"]
        assert [s["task"] for s in ours["steps"]] == [s["task"] for s in ref["steps"]]
        assert [s["result"].get("predicted_label") for s in ours["steps"]] == \
            [s["result"].get("predicted_label") for s in ref["steps"]]
        assert ours["file_names"] == ref["file_names"]
        assert ours["answer"] == ref["answer"]
        assert set(ours) == set(ref)


def test_a_trace_names_the_same_adapter_in_the_hub_and_in_its_export(exported, torch_router, onnx_routers):
    from lora_router.adapters import adapter_sha256

    ours = onnx_routers[("multi", "fp32")].ask(ASK[0])["trace"]["steps"]
    ref = torch_router.ask(ASK[0])["trace"]["steps"]
    assert [s["task"] for s in ours] == [s["task"] for s in ref]
    for step in ref:  # the hash of the adapter's files, as the hub has them
        assert step["model"]["adapter"] == adapter_sha256(exported.hub.task_dir(step["task"]))[:16]
        assert step["model"]["export"] is None
    assert [s["model"]["adapter"] for s in ours] == [s["model"]["adapter"] for s in ref]
    manifest = exported.manifest
    assert len(manifest["id"]) == 12 and manifest["version"] == manifest["created"]
    assert all((s["model"]["export"], s["model"]["version"]) == (manifest["id"], manifest["version"]) for s in ours)


def test_hostile_text_behaves_as_in_the_pytorch_router(torch_router, onnx_routers):
    router = onnx_routers[("shared", "fp32")]
    for bad in ("", "   \n", None, 42):
        with pytest.raises(InputError):
            router.ask(bad)
        with pytest.raises(InputError):
            torch_router.ask(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in HOSTILE:
            ours, ref = router.ask(text), torch_router.ask(text)
            assert ours["route"] == ref["route"] and ours["file_names"] == ref["file_names"], repr(text[:20])
            spans = router.predict("file_name_pick", text)["spans"]
            assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)


def test_threads_never_mix_adapters(onnx_routers):
    router = onnx_routers[("shared", "int8")]
    calls = [(["question_classifier", "question_type_classifier", "file_name_pick"][i % 3], ASK[i % len(ASK)])
             for i in range(60)]
    expected = [router.predict(task, text) for task, text in calls]
    results: dict[int, list] = {}

    def worker(n: int) -> None:
        results[n] = [router.predict(task, text) for task, text in calls[n:] + calls[:n]]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, got in results.items():
        assert got == expected[n:] + expected[:n]


def test_the_knowledge_base_can_grow_after_export(exported, tmp_path):
    from lora_router.backends.onnx import OnnxRouter

    folder = copy_export(exported.export, tmp_path / "out")
    kb = folder / "tasks/question_answer/knowledge_base.jsonl"
    entry = {"id": "dark-mode", "questions": ["平台有暗黑模式吗"], "answer": "有，在右上角头像菜单里切换。"}
    kb.write_text(kb.read_text("utf-8") + json.dumps(entry, ensure_ascii=False) + "\n", "utf-8")
    router = OnnxRouter(folder, tasks=["question_answer"])  # a grown knowledge base is not "altered"
    candidates = router.predict("question_answer", "平台有暗黑模式吗")["candidates"]
    assert "dark-mode" in [c["id"] for c in candidates]


# ---------------------------------------------------------------- damaged folders
def _damage(folder: Path, how: str) -> str:
    manifest = folder / "manifest.json"
    if how == "missing":
        (folder / "shared/heads/question_classifier.npz").unlink()
        return "question_classifier.npz is missing"
    if how == "altered":
        path = folder / "multi/encoder/model_quantized_optimized.onnx"  # what OnnxRouter opens on this CPU
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return "model_quantized_optimized.onnx was altered: its sha256 differs"
    if how == "newer":
        m = json.loads(manifest.read_text("utf-8"))
        m["format"] = 99
        manifest.write_text(json.dumps(m), "utf-8")
        return "export format 99, newer than this lora-router reads"
    if how == "not-json":
        manifest.write_text("{oops", "utf-8")
        return "manifest.json is damaged"
    if how == "not-an-export":
        manifest.unlink()
        return "is not a lora-router export: it has no manifest.json"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "altered", "newer", "not-json", "not-an-export"])
def test_damaged_exports_are_named(exported, tmp_path, how):
    from lora_router.backends.onnx import OnnxRouter

    folder = copy_export(exported.export, tmp_path / "out")
    message = _damage(folder, how)
    with pytest.raises(ExportFormatError, match=message):
        OnnxRouter(folder)


def test_an_export_never_reads_a_file_outside_its_folder(exported, tmp_path):
    from lora_router.backends.onnx import OnnxRouter

    folder = copy_export(exported.export, tmp_path / "out")
    secret = tmp_path / "secret.json"
    secret.write_text("{}", "utf-8")
    manifest_path = folder / "manifest.json"
    original = json.loads(manifest_path.read_text("utf-8"))

    listed = json.loads(json.dumps(original))  # the path listed, with its true hash: only the folder check stops it
    listed["tasks"]["question_classifier"]["manifest"] = "../secret.json"
    listed["files"]["../secret.json"] = {"sha256": "0" * 64, "bytes": 2}
    manifest_path.write_text(json.dumps(listed), "utf-8")
    with pytest.raises(ExportFormatError, match="'../secret.json', which is outside the export folder"):
        OnnxRouter(folder)

    unlisted = json.loads(json.dumps(original))
    unlisted["tasks"]["question_classifier"]["manifest"] = "../secret.json"
    manifest_path.write_text(json.dumps(unlisted), "utf-8")
    with pytest.raises(ExportFormatError, match="secret.json is not listed in"):
        OnnxRouter(folder)


def test_a_folder_that_is_not_there(tmp_path):
    from lora_router.backends.onnx import OnnxRouter

    with pytest.raises(ExportFormatError, match="is not a folder"):
        OnnxRouter(tmp_path / "nowhere")


# ---------------------------------------------------------------- devices and threads
def test_cuda_without_onnxruntime_gpu_says_so(exported):
    import onnxruntime as ort

    from lora_router.backends.onnx import OnnxRouter

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider; install onnxruntime-gpu"):
        OnnxRouter(exported.export, device="cuda")
    with pytest.raises(DeviceError, match="unknown device 'tpu'; valid: cpu, cuda"):
        OnnxRouter(exported.export, device="tpu")


def test_sessions_do_not_spin_and_use_physical_cores():
    from lora_router.backends.onnx import physical_cores, session_options

    opts = session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == physical_cores() >= 1
    assert session_options(1).intra_op_num_threads == 1
    with pytest.raises(DeviceError, match="threads must be >= 1"):
        session_options(0)


def test_int8_layouts_agree_with_pytorch_labels(exported, torch_router, onnx_routers):
    texts = ASK + ["周末去哪儿吃火锅", "昨晚的球赛谁赢了", "Python怎么给列表排序"]
    ref = [r["predicted_label"] for r in torch_router.predict_batch("question_classifier", texts)]
    for layout in ("merged", "shared", "multi"):
        results = onnx_routers[(layout, "int8")].predict_batch("question_classifier", texts)
        ours = [r["predicted_label"] for r in results]
        assert np.mean([a == b for a, b in zip(ours, ref)]) >= 0.9
