"""Shared fixtures: a tiny random BERT with the real bert-base-chinese vocabulary, built in code.

Nothing is downloaded. Training fixtures are session-scoped so the suite
trains each small adapter once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# The fixtures overfit a handful of rows on purpose: they run every epoch they ask for (patience 0), in plain
# shuffled batches, so their adapters stay the ones the tests' expectations were written against.
FAST = {"learning_rate": 1e-2, "warmup_steps": 2, "batch_size": 4, "patience": 0, "group_by_length": False}
# Fixtures that train or export. A test that uses one, itself or through another fixture, is marked slow,
# so `python -m pytest -m "not slow"` is the quick loop whatever scope the fixture has.
TRAINS_OR_EXPORTS = frozenset({"trained_hub", "exported", "torch_router", "trained"})


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINS_OR_EXPORTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and spinning threads slow a busy machine."""
    try:
        import torch
    except ImportError:  # the deploy install has no torch
        return
    torch.set_num_threads(1)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


SCENE_ROWS = [
    ("数据清洗流程是什么？", "数据平台相关问题"),
    ("帮我把sales_2024.csv导入到ODS层", "数据平台相关问题"),
    ("昨晚的调度任务为什么失败了", "数据平台相关问题"),
    ("什么是机器学习？", "通用问题"),
    ("Python怎么给列表排序", "通用问题"),
    ("你好，你能做什么？", "通用问题"),
    ("今天天气怎么样", "无关问题"),
    ("周末去哪儿吃火锅", "无关问题"),
    ("昨晚的球赛谁赢了", "无关问题"),
]

FILE_ROWS = [
    ("帮我把sales_2024.csv导入数据仓库", "sales_2024.csv"),
    ("帮我把《2024年度财务报告.xlsx》发给财务部", "2024年度财务报告.xlsx"),
    ("把/data/raw/user_log.parquet和orders.csv合并", ["/data/raw/user_log.parquet", "orders.csv"]),
    ("重跑一下昨天失败的同步任务", []),
    ("上传D:\\报表\\q1.xlsx到平台", "D:\\报表\\q1.xlsx"),
    ("生成上个月的销售报表", []),
]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    from lora_router.modeling import init_base

    return str(init_base(tmp_path_factory.mktemp("base") / "tiny", "tiny"))


@pytest.fixture(scope="session")
def other_base(tmp_path_factory) -> str:
    from lora_router.modeling import init_base

    return str(init_base(tmp_path_factory.mktemp("base2") / "tiny", "tiny", seed=1))


@pytest.fixture(scope="session")
def scene_file(tmp_path_factory) -> Path:
    rows = [{"instruction": "问题场景分类", "input": q, "output": a} for q, a in SCENE_ROWS]
    return write_jsonl(tmp_path_factory.mktemp("data") / "scene.jsonl", rows)


@pytest.fixture(scope="session")
def file_file(tmp_path_factory) -> Path:
    rows = [{"instruction": "文件名称提取", "input": q, "output": a} for q, a in FILE_ROWS]
    return write_jsonl(tmp_path_factory.mktemp("data") / "files.jsonl", rows)


@pytest.fixture(scope="session")
def trained_hub(tmp_path_factory, tiny_base, scene_file, file_file):
    """A hub with question_classifier and file_name_pick overfit on a handful of examples."""
    from lora_router.adapters import AdapterHub
    from lora_router.config import TrainSettings
    from lora_router.tasks import get_task
    from lora_router.training import train

    hub = AdapterHub(tmp_path_factory.mktemp("hub") / "hub")
    train(get_task("question_classifier"), base_model=tiny_base, hub=hub, data=scene_file, test_data=scene_file,
          settings=TrainSettings(epochs=30, **FAST), progress=False)
    train(get_task("file_name_pick"), base_model=tiny_base, hub=hub, data=file_file, test_data=file_file,
          settings=TrainSettings(epochs=60, **FAST), progress=False)
    return hub


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_base, trained_hub):
    """A four-task hub exported once: both layouts, fp32 and int8 (see support/export.py)."""
    from support.export import four_task_export

    return four_task_export(tmp_path_factory, tiny_base, trained_hub)


@pytest.fixture(scope="session")
def torch_router(exported):
    """The PyTorch router over the exported hub, to compare the runtime against."""
    import warnings

    from lora_router.backends.torch_peft import Router

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Router(exported.base, exported.hub)
