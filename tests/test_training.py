import json

import pytest

from conftest import FAST, SCENE_ROWS, write_jsonl
from lora_router.adapters import AdapterHub
from lora_router.backends.torch_peft import Router
from lora_router.config import TrainSettings
from lora_router.errors import AdapterMismatchError, DataError
from lora_router.tasks import get_task
from lora_router.training import train


def test_overfit_classification_save_reload_same_predictions(trained_hub, tiny_base):
    manifest = trained_hub.manifest("question_classifier")
    assert manifest.metrics["accuracy"] == 1.0  # scored on the same handful it overfit
    router = Router(tiny_base, trained_hub, tasks=["question_classifier"])
    for text, label in SCENE_ROWS:
        assert router.predict("question_classifier", text)["predicted_label"] == label
    again = Router(tiny_base, AdapterHub(trained_hub.root), tasks=["question_classifier"])
    for text, _ in SCENE_ROWS:
        a, b = router.predict("question_classifier", text), again.predict("question_classifier", text)
        assert a == b


def test_overfit_extraction_save_reload_same_spans(trained_hub, tiny_base):
    from conftest import FILE_ROWS

    manifest = trained_hub.manifest("file_name_pick")
    assert manifest.metrics["f1"] >= 0.8
    router = Router(tiny_base, trained_hub, tasks=["file_name_pick"])
    hits = 0
    for text, names in FILE_ROWS:
        result = router.predict("file_name_pick", text)
        for span in result["spans"]:
            assert text[span["start"] : span["end"]] == span["text"]
        hits += result["file_names"] == ([names] if isinstance(names, str) else names)
    assert hits >= len(FILE_ROWS) - 1


def test_hub_layout_and_manifest(trained_hub):
    folder = trained_hub.task_dir("question_classifier")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors", "task.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    m = json.loads((folder / "task.json").read_text("utf-8"))  # the document as written
    assert m["format"] == 1
    assert m == trained_hub.manifest("question_classifier").to_dict()  # TaskManifest reads and writes it whole
    assert m["task"]["labels"] == ["数据平台相关问题", "通用问题", "无关问题"]
    assert len(m["base_model"]["fingerprint"]) == 16
    assert len(m["data"]["train_hash"]) == 64
    assert {"torch", "transformers", "peft"} <= set(m["versions"])
    assert m["lora"] == {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["query", "value"], "layers": []}


def test_adapter_loads_with_plain_peft(trained_hub, tiny_base):
    from peft import PeftModel
    from transformers import BertModel

    model = PeftModel.from_pretrained(BertModel.from_pretrained(tiny_base), str(trained_hub.task_dir("file_name_pick")))
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_run_log_has_steps_and_evaluations(trained_hub):
    log = trained_hub.logs_dir / trained_hub.manifest("question_classifier").log
    events = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert steps and {"step", "loss", "learning_rate", "epoch"} <= set(steps[0])
    assert sum(e["event"] == "eval" for e in events) == 30
    assert events[-1]["event"] == "end"


def test_adapter_from_another_base_is_refused(trained_hub, other_base):
    with pytest.raises(AdapterMismatchError, match="question_classifier"):
        Router(other_base, trained_hub, tasks=["question_classifier"])


def test_invalid_data_writes_nothing(tmp_path, tiny_base):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "问题场景分类", "input": "x", "output": "闲聊"}])
    hub = AdapterHub(tmp_path / "hub")
    with pytest.raises(DataError, match="line 1"):
        train(get_task("question_classifier"), base_model=tiny_base, hub=hub, data=bad, progress=False)
    assert not hub.root.exists() or hub.tasks() == []


def test_new_classification_task_from_a_data_file(tmp_path, tiny_base):
    from lora_router.data import infer_task_spec

    rows = [{"instruction": "情感分类", "input": q, "output": a} for q, a in [
        ("报表做得真好", "正面"), ("又失败了，烦死了", "负面"),
        ("这个平台太好用了", "正面"), ("数据全错了，气人", "负面")]]
    data = write_jsonl(tmp_path / "sentiment.jsonl", rows)
    spec = infer_task_spec("sentiment", data)
    hub = AdapterHub(tmp_path / "hub")
    train(spec, base_model=tiny_base, hub=hub, data=data, test_data=data,
          settings=TrainSettings(epochs=2, **FAST), progress=False)
    assert hub.spec("sentiment") == spec
    assert Router(tiny_base, hub).predict("sentiment", "真好")["predicted_label"] in {"正面", "负面"}


def test_batches_hold_every_example_once_and_group_similar_lengths():
    import random

    from lora_router.training.batches import epoch_batches

    rng = random.Random(7)
    lengths = [rng.randint(5, 120) for _ in range(523)]
    grouped = epoch_batches(lengths, 8, seed=1)
    plain = epoch_batches(lengths, 8, seed=1, group_by_length=False)
    for batches in (grouped, plain):
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 8 for b in batches)

    def padding(batches):  # tokens computed on padding when each batch is padded to its longest
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < padding(plain) / 10


def test_grouped_batches_come_in_a_shuffled_order_that_changes_every_epoch():
    from lora_router.training.batches import epoch_batches

    lengths = list(range(1, 201))
    widths = [max(lengths[i] for i in b) for b in epoch_batches(lengths, 8, seed=1)]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)  # not short to long
    assert epoch_batches(lengths, 8, seed=1) != epoch_batches(lengths, 8, seed=2)
    assert epoch_batches(lengths, 8, seed=1) == epoch_batches(lengths, 8, seed=1)


@pytest.mark.slow
def test_training_stops_when_the_held_out_score_stops_improving_and_keeps_the_best_epoch(tmp_path, tiny_base,
                                                                                         scene_file):
    hub = AdapterHub(tmp_path / "hub")
    settings = TrainSettings(epochs=60, **{**FAST, "patience": 2, "group_by_length": True})
    manifest = train(get_task("question_classifier"), base_model=tiny_base, hub=hub, data=scene_file,
                     test_data=scene_file, settings=settings, progress=False)
    stop = manifest.early_stop
    assert stop is not None and stop["after_epoch"] < 60  # a handful of rows is learnt long before epoch 60
    assert stop["after_epoch"] == manifest.best_epoch + 2 == len(manifest.history)
    best = max(manifest.history, key=lambda h: h["score"])
    assert manifest.best_epoch == best["epoch"] and manifest.metrics["macro_f1"] == best["score"]
    saved = hub.manifest("question_classifier")
    assert saved.early_stop == stop and saved.training["patience"] == 2
    events = [json.loads(line) for line in (hub.logs_dir / manifest.log).read_text("utf-8").splitlines()]
    assert sum(e["event"] == "eval" for e in events) == stop["after_epoch"]
    assert [e["epoch"] for e in events if e["event"] == "early_stop"] == [stop["after_epoch"]]
