"""export_hub: the folder, the manifest, the parity gate (fp32 + int8, merged + shared), Optimum loading."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

from lora_router.errors import AdapterNotFoundError, ExportError
from support.export import copy_export, read_manifest

TASKS = ["file_name_pick", "question_answer", "question_classifier", "question_type_classifier"]


def test_manifest_describes_the_export(exported):
    m = read_manifest(exported.export)
    assert m == exported.manifest
    assert m["kind"] == "lora-router-export" and m["format"] == 1
    assert sorted(m["tasks"]) == TASKS
    assert m["layouts"] == ["merged", "shared", "multi"] and m["precisions"] == ["fp32", "int8"]
    assert m["opset"] >= 17
    assert m["base_model"]["fingerprint"] == exported.hub.manifest("question_classifier").base_model["fingerprint"]
    assert m["tasks"]["question_classifier"]["labels"] == ["数据平台相关问题", "通用问题", "无关问题"]
    assert m["tasks"]["file_name_pick"]["head_labels"] == ["O", "B", "I"]
    assert m["tasks"]["file_name_pick"]["shared"]["reads"] == "last_hidden_state"
    assert m["tasks"]["question_answer"]["shared"]["reads"] == "pooler_output"
    assert m["quantization"]["target"] in ("avx512_vnni", "avx512", "avx2", "arm64")
    assert {"torch", "transformers", "peft", "optimum", "onnxruntime", "lora_router"} <= set(m["versions"])
    assert m["thresholds"] == {"question_classifier": 0.5, "question_type_classifier": 0.6}


def test_every_file_is_listed_with_its_sha256(exported):
    m = exported.manifest
    on_disk = {p.relative_to(exported.export).as_posix() for p in exported.export.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(m["files"])
    for rel, entry in m["files"].items():
        assert hashlib.sha256((exported.export / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert m["files"]["tasks/question_answer/knowledge_base.jsonl"]["mutable"] is True
    for rel in ("tokenizer.json", "chain.json", "shared/encoder/model.onnx", "shared/encoder/model_quantized.onnx",
                "shared/adapters/question_classifier.onnx_adapter", "shared/heads/file_name_pick.npz",
                "merged/question_classifier/model.onnx", "merged/file_name_pick/model_quantized.onnx",
                "merged/question_answer/config.json", "tasks/question_type_classifier/task.json"):
        assert rel in m["files"], rel


def test_parity_gate_passed_for_every_task_layout_and_precision(exported):
    parity = exported.manifest["parity"]
    assert sorted(parity) == TASKS
    for task, layouts in parity.items():
        for layout in ("merged", "shared"):
            fp32, int8 = layouts[layout]["fp32"], layouts[layout]["int8"]
            assert fp32["max_abs_logit_diff"] <= 1e-4, (task, layout)
            agreement = [key for key in ("label_agreement", "span_agreement", "answer_agreement") if key in fp32]
            assert len(agreement) == 1, (task, layout, sorted(fp32))  # each kind reports its own agreement
            assert fp32[agreement[0]] == 1.0, (task, layout, agreement)
            # int8 is gated on the task's own metric; agreement and near-ties are reported beside it
            assert int8["metric_drop_points"] <= 1.0, (task, layout)
            assert "near_ties" in int8 or "near_tie_tokens" in int8, (task, layout)
            assert any(k in int8 for k in ("label_agreement", "answer_agreement", "span_agreement"))
    assert {t: parity[t]["merged"]["int8"]["metric"] for t in TASKS} == {
        "file_name_pick": "exact-span F1", "question_answer": "top-1", "question_classifier": "accuracy",
        "question_type_classifier": "accuracy"}
    assert exported.manifest["parity_bounds"]["int8_max_metric_drop_points"] == 1.0
    from lora_router.data import load_bundled

    for task in ("file_name_pick", "question_answer"):  # the bundled test split
        assert parity[task]["merged"]["fp32"]["n"] == len(load_bundled(task, "test"))
    assert parity["question_classifier"]["merged"]["fp32"]["n"] == 9  # the records given


def test_parity_records_default_to_the_bundled_test_split():
    from lora_router.data import load_bundled
    from lora_router.export.parity import parity_records

    bundled = load_bundled("question_classifier", "test")
    assert parity_records("question_classifier", "sequence_classification", None) == bundled
    assert parity_records("question_classifier", "sequence_classification", {"other": []}) == bundled
    custom = parity_records("my_task", "sequence_classification", None)  # no bundled split: every bundled input
    assert len(custom) > 400 and all(r.input for r in custom)
    with pytest.raises(ExportError, match="no held-out records for task 'my_spans'.*parity_records"):
        parity_records("my_spans", "span_extraction", None)


def test_merged_models_load_in_optimum_with_the_same_logits(exported, torch_router):
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTModelForTokenClassification

    from lora_router.backends.onnx import OnnxRouter

    texts = ["数据清洗流程是什么？", "帮我把sales_2024.csv导入到ODS层", "今天天气怎么样"]
    for task, cls in (("question_classifier", ORTModelForSequenceClassification),
                      ("file_name_pick", ORTModelForTokenClassification)):
        enc = torch_router.encoders[task].encode_batch(texts)
        arrays = torch_router.encoders[task].pad(enc)
        reference = torch_router.logits(task, enc)
        for precision, file_name in (("fp32", "model.onnx"), ("int8", "model_quantized.onnx")):
            model = cls.from_pretrained(exported.export / "merged" / task, file_name=file_name)
            logits = model(**{k: v for k, v in arrays.items()}).logits
            ours = OnnxRouter(exported.export, layout="merged", precision=precision, tasks=[task]).logits(task, enc)
            np.testing.assert_allclose(np.asarray(logits), ours, atol=1e-6)
            if precision == "fp32":
                np.testing.assert_allclose(ours, reference, atol=1e-4)
            assert model.config.id2label[0] == ("数据平台相关问题" if task == "question_classifier" else "O")


def test_shared_encoder_without_an_adapter_is_the_base_model(exported):
    import onnxruntime as ort
    import torch

    from lora_router.encoding import TextEncoder
    from lora_router.modeling.base import load_base

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base, tokenizer = load_base(exported.base)
    enc = TextEncoder(tokenizer, 64)
    arrays = enc.pad(enc.encode_batch(["数据清洗流程是什么？", "帮我把sales_2024.csv导入到ODS层"]))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(exported.export / "shared/encoder/model.onnx"), opts)
    hidden, pooled = session.run(["last_hidden_state", "pooler_output"], arrays)
    with torch.no_grad():
        out = base(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    np.testing.assert_allclose(hidden, out.last_hidden_state.numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), atol=1e-5)
    lora = {i.name for i in session.get_overridable_initializers()}
    assert "lora.encoder.layer.0.attention.self.query.A" in lora and len(lora) == 8  # 2 layers x q,v x A,B


def test_parity_gate_names_task_layout_and_figure():
    from lora_router.export import check_parity
    from lora_router.export.parity import parity_bounds

    good = {"n": 10, "max_abs_logit_diff": 1e-6, "label_agreement": 1.0}
    check_parity({"question_classifier": {"merged": {"fp32": good}}})
    with pytest.raises(ExportError, match=r"question_classifier' \(shared int8\): label agreement 97.00% < 99% "
                                          r"\(no gold labels"):
        check_parity({"question_classifier": {"shared": {"int8": {**good, "label_agreement": 0.97}}}})
    # A weakly trained model: near-ties flip under int8 while accuracy barely moves; that passes.
    flips = {**good, "label_agreement": 0.8727, "near_ties": 21, "metric": "accuracy", "metric_pytorch": 63.04,
             "metric_onnx": 62.5, "metric_drop_points": 0.54}
    check_parity({"question_type_classifier": {"merged": {"int8": flips}}})
    worse = {**flips, "metric_onnx": 61.0, "metric_drop_points": 2.04}
    with pytest.raises(ExportError, match=r"(?s)accuracy 61.00 vs PyTorch 63.04 \(2.04 points lower, bound 1; "
                                          r"agreement 87.27%, near-ties 21\).*--int8-max-drop"):
        check_parity({"question_type_classifier": {"merged": {"int8": worse}}})
    check_parity({"question_type_classifier": {"merged": {"int8": worse}}}, int8_max_drop=2.5)  # configurable
    with pytest.raises(ExportError, match="int8 max drop must be in"):
        parity_bounds(-1)
    with pytest.raises(ExportError, match=r"file_name_pick' \(merged fp32\): max \|delta logit\| 0.002 > 0.0001"):
        check_parity({"file_name_pick": {"merged": {"fp32": {"n": 3, "max_abs_logit_diff": 2e-3,
                                                              "span_agreement": 1.0}}}})
    with pytest.raises(ExportError, match=r"exact-span F1 80.00 vs PyTorch 82.00"):
        check_parity({"file_name_pick": {"merged": {"int8": {"n": 3, "max_abs_logit_diff": 0.1, "span_agreement": 0.9,
                                                              "metric": "exact-span F1", "metric_pytorch": 82.0,
                                                              "metric_onnx": 80.0, "metric_drop_points": 2.0}}}})


def test_a_missed_gate_writes_nothing_and_keeps_the_earlier_export(exported, tmp_path, monkeypatch, capfd):
    from lora_router.export import export_hub, parity

    target = copy_export(exported.export, tmp_path / "out")
    before = (target / "manifest.json").read_bytes()
    monkeypatch.setattr(parity, "FP32_MAX_LOGIT_DIFF", 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ExportError, match=r"task 'question_type_classifier' \(merged fp32\): max \|delta logit\|"):
            export_hub(exported.base, exported.hub, target, tasks=["question_type_classifier"], layout="merged",
                       quantize="none", progress=False)
    assert (target / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
    assert capfd.readouterr().out == ""  # library code never prints


def test_bad_arguments_are_refused_before_any_work(exported, tmp_path):
    from lora_router.export import export_hub

    with pytest.raises(ExportError, match="quantize 'int4' is not valid; valid: int8, none"):
        export_hub(exported.base, exported.hub, tmp_path / "a", quantize="int4")
    with pytest.raises(ExportError, match="layout 'fused' is not valid; valid: merged, shared, multi, trunk, both"):
        export_hub(exported.base, exported.hub, tmp_path / "a", layout="fused")
    with pytest.raises(AdapterNotFoundError, match="no adapter for task 'nope'"):
        export_hub(exported.base, exported.hub, tmp_path / "a", tasks=["nope"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not empty and is not an earlier export"):
        export_hub(exported.base, exported.hub, tmp_path / "busy")
    assert not (tmp_path / "a").exists()


def _degraded_quantizer(real):
    """``_Export._quantize`` (static or dynamic int8), then the classifier's weights negated: an int8 model that
    answers badly, whichever scheme wrote it."""

    def quantize(self, folder, *args, **kwargs):
        import numpy as np
        import onnx
        from onnx import numpy_helper

        real(self, folder, *args, **kwargs)
        path = folder / "model_quantized.onnx"
        model = onnx.load(str(path))
        negated = 0
        for init in model.graph.initializer:
            if "classifier" in init.name and init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8):
                value = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array((-value.astype(np.int16)).astype(value.dtype)
                                                      if value.dtype == np.int8 else -value, init.name))
                negated += 1
        assert negated, "the degraded quantizer found the classifier's weights"
        onnx.save(model, str(path))

    return quantize


def test_export_refuses_a_degraded_int8_model_through_the_cli_and_int8_max_drop_reaches_the_gate(
        exported, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lora_router.cli import main
    from lora_router.export import folder

    monkeypatch.setattr(folder._Export, "_quantize", _degraded_quantizer(folder._Export._quantize))
    target = copy_export(exported.export, tmp_path / "out")
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    args = ["export", "--base-model", str(exported.base), "--hub", str(exported.hub.root), "--out", str(target),
            "--tasks", "question_classifier", "--layout", "merged", "--quiet"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1, refused.output
    assert "--int8-max-drop" in refused.output and "question_classifier" in refused.output
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before, "nothing written: the earlier export is kept whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temporary folder left behind"
    allowed = CliRunner().invoke(main, [*args, "--int8-max-drop", "100"])
    assert allowed.exit_code == 0, allowed.output
