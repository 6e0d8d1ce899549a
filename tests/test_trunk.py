"""Adapters on the upper layers only (train --layers), and the trunk layout that runs the lower layers once.

The tiny base has 2 layers: adapters on layer 1 leave layer 0 (and the
embeddings) to a trunk that every task shares.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from conftest import FAST, write_jsonl
from lora_router.config import LoraSettings
from lora_router.errors import ConfigError, ExportError
from support.export import ASK, QTYPE_ROWS


@pytest.fixture(scope="module")
def trunk_export(tmp_path_factory, tiny_base, scene_file, file_file):
    """Three tasks trained with LoRA on layer 1 only, exported merged + trunk, fp32 + int8, through the gate."""
    from lora_router.adapters import AdapterHub
    from lora_router.config import TrainSettings
    from lora_router.export import export_hub
    from lora_router.tasks import get_task
    from lora_router.training import train
    from support.export import _decisive_records

    root = tmp_path_factory.mktemp("trunk")
    hub = AdapterHub(root / "hub")
    qtype = write_jsonl(root / "qtype.jsonl",
                        [{"instruction": "问题类型分类", "input": q, "output": a} for q, a in QTYPE_ROWS])
    upper = LoraSettings(layers="1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task, data, epochs in (("question_classifier", scene_file, 30), ("question_type_classifier", qtype, 30),
                                   ("file_name_pick", file_file, 60)):
            train(get_task(task), base_model=tiny_base, hub=hub, data=data, test_data=data, lora=upper,
                  settings=TrainSettings(epochs=epochs, **FAST), progress=False)
        manifest = export_hub(tiny_base, hub, root / "out", layout="merged,trunk", progress=False,
                              parity_records=_decisive_records())
    return root, hub, manifest.to_dict()


def test_layers_take_ranges_lists_and_all():
    assert LoraSettings(layers="6-11").layers == (6, 7, 8, 9, 10, 11)
    assert LoraSettings(layers="0, 2,4").layers == (0, 2, 4)
    assert LoraSettings(layers="all").layers == LoraSettings().layers == ()
    assert LoraSettings.from_dict(LoraSettings(layers=[3, 1]).to_dict()).layers == (1, 3)
    for bad in ("6-", "11-6", "x", "-1"):
        with pytest.raises(ConfigError, match="lora layers"):
            LoraSettings(layers=bad)


@pytest.mark.slow
def test_train_layers_puts_lora_on_those_layers_only(trunk_export):
    _, hub, _ = trunk_export
    config = json.loads((hub.task_dir("question_classifier") / "adapter_config.json").read_text("utf-8"))
    assert config["layers_to_transform"] == [1]
    assert hub.manifest("question_classifier").lora["layers"] == [1]
    from safetensors.numpy import load_file

    names = load_file(str(hub.task_dir("file_name_pick") / "adapter_model.safetensors"))
    assert names and all(".layer.1." in n for n in names)


def test_layers_past_the_base_are_refused(tiny_base):
    from lora_router.modeling.base import load_base
    from lora_router.training.loop import add_lora

    base, _ = load_base(tiny_base)
    with pytest.raises(ConfigError, match=r"lora layers \[1, 2, 3\] go past the base's 2 layers; valid: 0-1"):
        add_lora(base, LoraSettings(layers="1-3"))


def test_trunk_layout_is_refused_naming_the_task_with_adapters_on_every_layer(tmp_path, tiny_base, trained_hub):
    from lora_router.export import export_hub

    with pytest.raises(ExportError, match=r"task\(s\) 'file_name_pick' \(all layers\), 'question_classifier' "
                                          r"\(all layers\) put LoRA on layer 0"):
        export_hub(tiny_base, trained_hub, tmp_path / "out", layout="trunk", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_hub_with_one_all_layer_task_is_refused_naming_it(tmp_path, tiny_base, trained_hub, trunk_export):
    from lora_router.adapters import AdapterHub
    from lora_router.export import export_hub

    _, upper_hub, _ = trunk_export
    hub = AdapterHub(tmp_path / "hub")
    shutil.copytree(upper_hub.root, hub.root)
    shutil.rmtree(hub.task_dir("question_classifier"))
    shutil.copytree(trained_hub.task_dir("question_classifier"), hub.task_dir("question_classifier"))
    with pytest.raises(ExportError, match=r"task\(s\) 'question_classifier' \(all layers\) put LoRA on layer 0"):
        export_hub(tiny_base, hub, tmp_path / "out", layout="multi,trunk", progress=False)


@pytest.mark.slow
def test_trunk_export_runs_the_lower_layers_once_and_passes_the_gate(trunk_export):
    root, _, manifest = trunk_export
    assert manifest["layouts"] == ["merged", "trunk"]
    assert manifest["trunk"]["trunk_layers"] == 1
    assert manifest["trunk"]["lora_modules"] == ["encoder.layer.1.attention.self.query",
                                                 "encoder.layer.1.attention.self.value"]
    for task, layouts in manifest["parity"].items():
        fp32 = layouts["trunk"]["fp32"]
        assert fp32["max_abs_logit_diff"] <= 1e-4 and fp32["max_abs_logit_diff_vs_merged"] <= 1e-5, task
        assert fp32["mixed_max_abs_logit_diff"] <= 1e-5, task


@pytest.mark.slow
def test_trunk_answers_as_pytorch_and_as_the_chain_step_by_step(trunk_export):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.backends.torch_peft import Router

    root, hub, manifest = trunk_export
    router = OnnxRouter(root / "out")
    assert (router.layout, router.precision, router.speculate) == ("trunk", "int8", True)  # the chain in one call
    fp32 = OnnxRouter(root / "out", precision="fp32")
    step_by_step = OnnxRouter(root / "out", precision="fp32", speculate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_router = Router(manifest["base_model"]["name"], hub)
    ours, ref, steps = fp32.ask_batch(ASK), torch_router.ask_batch(ASK), step_by_step.ask_batch(ASK)
    for a, b, c in zip(ours, ref, steps, strict=True):
        assert a["route"] == b["route"] == c["route"]
        assert [s["result"].get("predicted_label") for s in a["steps"]] == \
            [s["result"].get("predicted_label") for s in b["steps"]] == \
            [s["result"].get("predicted_label") for s in c["steps"]]
        assert a["file_names"] == b["file_names"] == c["file_names"]
    mixed = fp32.predict_mixed([("file_name_pick", ASK[0]), ("question_classifier", ASK[0]),
                                ("question_type_classifier", ASK[1])])
    assert mixed[0]["file_names"] == torch_router.predict("file_name_pick", ASK[0])["file_names"]
    assert mixed[1]["predicted_label"] == torch_router.predict("question_classifier", ASK[0])["predicted_label"]


@pytest.mark.slow
def test_trunk_int8_rows_are_the_same_alone_and_in_any_batch(trunk_export):
    from lora_router.backends.onnx import OnnxRouter
    from test_static_int8 import _questions, _same_alone_and_in_batch

    root, _, manifest = trunk_export
    assert manifest["quantization"]["mode"] == "static"
    router = OnnxRouter(root / "out", layout="trunk", precision="int8")
    texts = ["你好", *_questions()]
    for task in ("question_classifier", "file_name_pick"):
        assert _same_alone_and_in_batch(router, task, texts) == []
    rows = [(task, e) for task in ("question_classifier", "question_type_classifier", "file_name_pick")
            for e in router.encoders[task].encode_batch(texts[:10], warn=False)]
    for (task, e), logits in zip(rows, router.mixed_logits(rows)):
        alone = router.logits(task, [e])[0]
        assert np.array_equal(alone, logits[: len(alone)])


def test_train_cli_takes_layers(tiny_base, tmp_path):
    from click.testing import CliRunner

    from lora_router.cli import main

    result = CliRunner().invoke(main, ["train", "--task", "question_classifier", "--base-model", tiny_base,
                                       "--hub", str(tmp_path / "hub"), "--layers", "1-5", "--quiet"])
    assert result.exit_code == 1
    assert "lora layers [1, 2, 3, 4, 5] go past the base's 2 layers; valid: 0-1" in result.output
    assert "--layers" in CliRunner().invoke(main, ["train", "--help"]).output
