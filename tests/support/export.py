"""Shared by test_export.py and test_runtime.py (no tests here): one tiny hub with all four
tasks, exported once per session in both layouts, fp32 and int8, through the real parity gate.

The conftest's ``trained_hub`` (question_classifier, file_name_pick) is copied, and
question_type_classifier and question_answer are trained quickly on a handful of rows.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

from conftest import write_jsonl

QTYPE_ROWS = [
    ("数据清洗流程是什么？", "问题回答"),
    ("怎么申请订单表的查询权限？", "问题回答"),
    ("ODS层和DWD层有什么区别", "问题回答"),
    ("怎么导入csv文件？", "问题回答"),
    ("帮我把sales_2024.csv导入到ODS层", "任务处理"),
    ("重跑一下昨天失败的同步任务", "任务处理"),
    ("生成上个月的销售报表", "任务处理"),
    ("把orders.csv导出到本地", "任务处理"),
]

ASK = [
    "帮我把sales_2024.csv导入到ODS层",
    "数据清洗流程是什么？",
    "今天天气怎么样",
    "什么是机器学习？",
    "把/data/raw/user_log.parquet和orders.csv合并",
    "ODS层和DWD层有什么区别",
]

_CACHE: dict[str, SimpleNamespace] = {}


def _qa_rows() -> list[dict]:
    """A few knowledge-base questions and two with no answer (bundled knowledge base)."""
    from lora_router.data import load_bundled

    records = load_bundled("question_answer", "train")
    rows = [r.to_json() for r in records[::16]]
    rows += [{"instruction": "问题回答", "input": q, "output": ""} for q in ("今天天气怎么样", "讲个笑话")]
    return rows


def _decisive_records() -> dict:
    """Held-out records for the two classifiers: the rows their adapters were overfit on.

    A tiny random encoder (hidden size 64) gives margins on unseen text of the
    size of int8 rounding, so int8 label agreement on the bundled test splits
    is a coin toss here (1-2 flips in 110-180). The gate runs on the bundled
    splits for file_name_pick and question_answer in these tests, and for every
    task on the base-size model in benchmarks/export_figures.py.
    """
    from conftest import SCENE_ROWS
    from lora_router.data import Record

    return {"question_classifier": [Record("问题场景分类", q, a) for q, a in SCENE_ROWS],
            "question_type_classifier": [Record("问题类型分类", q, a) for q, a in QTYPE_ROWS]}


def four_task_export(tmp_path_factory, tiny_base: str, trained_hub) -> SimpleNamespace:
    """``base``, ``hub``, ``export`` (folder) and ``manifest`` of the session's export."""
    if "export" in _CACHE:
        return _CACHE["export"]
    from lora_router.adapters import AdapterHub
    from lora_router.config import TrainSettings
    from lora_router.export import export_hub
    from lora_router.tasks import get_task
    from lora_router.training import train

    root = tmp_path_factory.mktemp("export")
    hub = AdapterHub(root / "hub")
    shutil.copytree(trained_hub.root, hub.root)
    qtype = write_jsonl(root / "qtype.jsonl",
                        [{"instruction": "问题类型分类", "input": q, "output": a} for q, a in QTYPE_ROWS])
    qa = write_jsonl(root / "qa.jsonl", _qa_rows())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(get_task("question_type_classifier"), base_model=tiny_base, hub=hub, data=qtype, test_data=qtype,
              settings=TrainSettings(epochs=30, learning_rate=2e-2, warmup_steps=2, batch_size=4, patience=0,
                                     group_by_length=False),
              progress=False)
        train(get_task("question_answer"), base_model=tiny_base, hub=hub, data=qa, test_data=qa,
              settings=TrainSettings(epochs=3, learning_rate=5e-3, warmup_steps=2, batch_size=16, patience=0,
                                     group_by_length=False),
              progress=False)
        manifest = export_hub(tiny_base, hub, root / "out", progress=False, parity_records=_decisive_records())
    # the manifest as the document on disk (tests check the file format); export_hub returned it typed
    assert read_manifest(root / "out") == manifest.to_dict()
    _CACHE["export"] = SimpleNamespace(base=tiny_base, hub=hub, export=root / "out",
                                       manifest=read_manifest(root / "out"), root=root)
    return _CACHE["export"]


def copy_export(src: Path, dst: Path, *, merged: bool = False) -> Path:
    """A copy of an export to damage (without the merged models unless asked: they are most of its bytes)."""
    ignore = None if merged else shutil.ignore_patterns("merged")
    shutil.copytree(src, dst, ignore=ignore)
    return dst


def versioned_copy(src: Path, dst: Path, version: str, **manifest_fields) -> Path:
    """A copy of the export ``src`` that names itself ``version`` (its id ``id-<version>``): the same models,
    told apart by which version answers."""
    copy_export(src, dst)
    manifest = read_manifest(dst)
    manifest.update(id=f"id-{version}", version=version, **manifest_fields)
    (dst / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
    return dst


# Every question answered as a general one at step 1: a chain that differs from the trained one at a glance.
CHAIN_ALL_GENERAL = {"version": 1, "start": "question_classifier", "steps": [
    {"task": "question_classifier", "threshold": 0.0,
     "on": {"数据平台相关问题": "route:general", "通用问题": "route:general", "无关问题": "route:general"}}]}


# Every question out of scope: an export worse than the trained one on questions it routes to general.
CHAIN_ALL_OUT_OF_SCOPE = {"version": 1, "start": "question_classifier", "steps": [
    {"task": "question_classifier", "threshold": 0.0,
     "on": {"数据平台相关问题": "route:out_of_scope", "通用问题": "route:out_of_scope",
            "无关问题": "route:out_of_scope"}}]}


def general_chain_file(export: Path, path: Path, n: int = 24) -> tuple[Path, list[str]]:
    """A chain test file of the bundled chain questions that ``export`` routes to ``general``, with that as their
    gold route: the export gets every one right, by construction. Fails when it routes fewer than 10 so."""
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.evaluation.chain import bundled_chain_cases, read_chain_cases

    questions = [c.question for c in read_chain_cases(bundled_chain_cases())]
    answers = OnnxRouter(export).ask_batch(questions)  # as a server loads it
    general = [q for q, a in zip(questions, answers) if a["route"] == "general"][:n]
    assert len(general) >= 10, "the test needs questions the export routes to general"
    path.write_text("".join(json.dumps({"question": q, "route": "general", "file_names": []}, ensure_ascii=False)
                            + "\n" for q in general), "utf-8")
    return path, general


def set_chain(folder: Path, chain: dict) -> Path:
    """Make the export in ``folder`` run ``chain``: chain.json and its sha256 in the manifest rewritten."""
    import hashlib

    text = json.dumps(chain, ensure_ascii=False, indent=2) + "\n"
    (folder / "chain.json").write_text(text, "utf-8")
    manifest = read_manifest(folder)
    data = text.encode("utf-8")
    manifest["files"]["chain.json"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return folder


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text("utf-8"))
