"""Static int8 (the default): a row's result never depends on what else is in its batch.

Dynamic int8 takes one activation scale per call from the whole batch, so a
question's logits moved with its batch-mates; static int8 calibrates each
scale once on the task's training texts. These tests hold every layout to
bit-identical logits alone and in a batch of 32 of other lengths.
"""

from __future__ import annotations

import numpy as np
import pytest

from lora_router.data import load_bundled

LAYOUTS = ("merged", "shared", "multi")


def _questions(n: int = 31) -> list[str]:
    """Bundled questions of many lengths (the batch pads each row to the longest)."""
    texts = sorted({r.input for r in load_bundled("question_classifier", "test")}, key=len)
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def _same_alone_and_in_batch(router, task: str, texts: list[str]) -> list[int]:
    """Indices of the rows whose logits differ (in any bit) alone and in the batch of every text."""
    encoder = router.encoders[task]
    encoded = encoder.encode_batch(texts, warn=False)
    together = router.logits(task, encoded)
    differ = []
    for i, e in enumerate(encoded):
        alone = router.logits(task, [e])[0]
        row = together[i][: len(e.input_ids)] if alone.ndim == 2 else together[i]
        if not np.array_equal(alone, row):
            differ.append(i)
    return differ


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_rows_int8_logits_are_the_same_alone_and_in_any_batch(exported, layout):
    from lora_router.backends.onnx import OnnxRouter

    assert exported.manifest["quantization"]["mode"] == "static"
    router = OnnxRouter(exported.export, layout=layout, precision="int8")
    short, long_ = "你好", "帮我把/data/raw/user_log_2024_final.parquet和orders_backup.csv合并后导入到ODS层再生成报表"
    texts = [short, *_questions(), long_]
    assert len(texts) >= 32 and len({len(t) for t in texts}) > 10
    for task in ("question_classifier", "file_name_pick"):  # pooled and per-token logits
        assert _same_alone_and_in_batch(router, task, texts) == []
        # and in another batch: the short question among others, in another position
        first = router.logits(task, router.encoders[task].encode_batch([short], warn=False))[0]
        mixed = router.logits(task, router.encoders[task].encode_batch([long_, *texts[5:20], short], warn=False))[-1]
        assert np.array_equal(first, mixed[: len(first)])


def test_one_call_rows_of_several_tasks_match_each_task_alone_bit_for_bit(exported):
    from lora_router.backends.onnx import OnnxRouter

    router = OnnxRouter(exported.export, layout="multi", precision="int8")
    texts = _questions(12)
    rows = [(task, e) for task in ("question_classifier", "question_type_classifier", "file_name_pick")
            for e in router.encoders[task].encode_batch(texts, warn=False)]
    together = router.mixed_logits(rows)
    for (task, e), logits in zip(rows, together):
        alone = router.logits(task, [e])[0]
        assert np.array_equal(alone, logits[: len(alone)])


def test_the_manifest_says_what_static_int8_was_calibrated_on(exported):
    q = exported.manifest["quantization"]
    assert q["row_independent"] is True and q["per_channel"] is True
    assert set(q["calibration"]) == set(exported.manifest["tasks"])
    assert all(n > 0 for n in q["calibration"].values())


def test_dynamic_int8_stays_available_behind_its_flag(trained_hub, tiny_base, tmp_path):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.export import export_hub
    from support.export import _decisive_records

    manifest = export_hub(tiny_base, trained_hub, tmp_path / "out", tasks=["question_classifier"], layout="multi",
                          int8_scheme="dynamic", progress=False, parity_records=_decisive_records())
    assert manifest.quantization["mode"] == "dynamic"
    router = OnnxRouter(tmp_path / "out", precision="int8")
    assert router.predict("question_classifier", "今天天气怎么样")["predicted_label"]


def test_an_unknown_int8_scheme_is_refused_before_any_work(tmp_path):
    from lora_router.errors import ExportError
    from lora_router.export import export_hub

    with pytest.raises(ExportError, match="int8 scheme 'per-row' is not valid; valid: static, dynamic"):
        export_hub("unused", tmp_path / "hub", tmp_path / "out", int8_scheme="per-row")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the pass itself, on a graph built in code
def _two_layer_graph(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(8, 16)).astype(np.float32), rng.normal(size=(16, 4)).astype(np.float32)
    bias = rng.normal(size=16).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                               numpy_helper.from_array(bias, "b1")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_the_pass_quantises_constant_matmuls_folds_the_bias_and_keeps_excluded_nodes_float(tmp_path):
    import onnx
    import onnxruntime as ort

    from lora_router.export.static_int8 import quantize_static_int8

    _two_layer_graph(tmp_path / "f.onnx")
    rng = np.random.default_rng(1)
    calib = [{"x": rng.normal(size=(4, 8)).astype(np.float32)} for _ in range(4)]
    info = quantize_static_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", iter(calib), exclude=["mm2"])
    assert info["matmuls"] == 1 and info["weight_bits"] == 8
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert ops == ["QuantizeLinear", "MatMulIntegerToFloat", "Relu", "MatMul"]  # the bias Add went into the kernel
    x = rng.normal(size=(6, 8)).astype(np.float32)
    f = ort.InferenceSession(str(tmp_path / "f.onnx")).run(None, {"x": x})[0]
    q = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": x})[0]
    assert np.abs(f - q).max() < 0.05 * np.abs(f).max()
    assert np.array_equal(ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": x[2:3]})[0], q[2:3])


def test_the_pass_refuses_to_calibrate_on_nothing(tmp_path):
    from lora_router.errors import ExportError
    from lora_router.export.static_int8 import quantize_static_int8

    _two_layer_graph(tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="needs calibration inputs"):
        quantize_static_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", iter([]))
    assert not (tmp_path / "q.onnx").exists()
