"""The one-call layout (multi): rows of several tasks in one onnxruntime call, and ask in one call.

The step-by-step chain (``speculate=False``) and ``predict`` per task are the
references: the one call must give the same routes, steps, labels, spans and
answers. Parity with the merged models and the PyTorch router is in
test_runtime.py (layout "multi") and in the export's parity gate.
"""

from __future__ import annotations

import threading

import pytest

from lora_router.core.chain import ROUTES, Chain
from support.export import ASK

CHAIN_TASKS = ("question_classifier", "question_type_classifier", "file_name_pick")


@pytest.fixture(scope="module")
def questions():
    from lora_router.data import load_bundled

    return ASK + [r.input for r in load_bundled("question_classifier", "test")][::3]


def _routers(export, **kwargs):
    from lora_router.backends.onnx import OnnxRouter

    return (OnnxRouter(export, layout="multi", precision="fp32", speculate=True, **kwargs),
            OnnxRouter(export, layout="multi", precision="fp32", speculate=False, **kwargs))


def _same_answers(ours: list[dict], ref: list[dict]) -> None:
    for a, b in zip(ours, ref, strict=True):
        assert a["route"] == b["route"], a["question"]
        assert [s["task"] for s in a["steps"]] == [s["task"] for s in b["steps"]]
        for sa, sb in zip(a["steps"], b["steps"]):
            ra, rb = sa["result"], sb["result"]
            assert set(ra) == set(rb)
            assert ra.get("predicted_label") == rb.get("predicted_label")
            assert [(s["start"], s["end"]) for s in ra.get("spans", [])] == \
                [(s["start"], s["end"]) for s in rb.get("spans", [])]
            for label, p in (rb.get("probabilities") or {}).items():
                assert ra["probabilities"][label] == pytest.approx(p, abs=1e-5)
        assert (a["file_names"], a["answer"], a.get("note")) == (b["file_names"], b["answer"], b.get("note"))
        assert a.keys() == b.keys()


def test_ask_in_one_call_answers_as_the_chain_step_by_step(exported, questions):
    one_call, step_by_step = _routers(exported.export)
    assert one_call.speculated_tasks() == list(CHAIN_TASKS)
    ours, ref = one_call.ask_batch(questions), step_by_step.ask_batch(questions)
    _same_answers(ours, ref)
    assert [one_call.ask(q) for q in ASK][0]["route"] == ref[0]["route"]
    routes = {a["route"] for a in ref}
    assert {"task", "answer"} <= routes and len(routes) >= 3, routes


def test_every_route_is_the_same_in_one_call(exported, questions):
    """Thresholds that stop the chain early, a chain step without a model, labels routed nowhere."""
    uncertain = _routers(exported.export, thresholds={"question_classifier": 0.99})
    _same_answers(uncertain[0].ask_batch(questions[:12]), uncertain[1].ask_batch(questions[:12]))
    assert {a["route"] for a in uncertain[0].ask_batch(questions[:12])} == {"uncertain"}
    missing = _routers(exported.export, tasks=["question_classifier", "question_type_classifier"])
    ours = missing[0].ask_batch(questions)
    _same_answers(ours, missing[1].ask_batch(questions))
    assert any("is not trained" in (a.get("note") or "") for a in ours)
    spec = Chain.load().to_dict()
    spec["steps"][0]["on"] = {"通用问题": "route:general"}  # the other labels go nowhere: uncertain
    odd = _routers(exported.export, chain=Chain.from_dict(spec))
    _same_answers(odd[0].ask_batch(questions), odd[1].ask_batch(questions))
    seen = set()
    for routers in (uncertain, missing, odd, _routers(exported.export)):
        seen |= {a["route"] for a in routers[0].ask_batch(questions)}
    assert seen == set(ROUTES)


def test_one_call_step_times_add_up_to_the_call(exported):
    from lora_router.backends.onnx import OnnxRouter

    one_call, _ = _routers(exported.export)
    answer = one_call.ask(ASK[0])
    assert all(s["ms"] > 0 for s in answer["steps"])
    assert OnnxRouter(exported.export).speculate is False  # multi walks the chain step by step unless asked


def test_predict_mixed_equals_predict_per_task(exported, questions):
    one_call, _ = _routers(exported.export)
    items = [(task, q) for i, q in enumerate(questions[:20])
             for task in (CHAIN_TASKS + ("question_answer",))[i % 4:]]
    mixed = one_call.predict_mixed(items)
    for (task, text), got in zip(items, mixed, strict=True):
        want = one_call.predict(task, text)
        assert got.keys() == want.keys()
        assert got.get("predicted_label") == want.get("predicted_label")
        assert got.get("file_names") == want.get("file_names")
        assert got.get("kb_id") == want.get("kb_id")
        for label, p in (want.get("probabilities") or {}).items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_mixed_batches_from_many_threads_never_mix_tasks(exported, questions):
    from lora_router.backends.onnx import OnnxRouter

    router = OnnxRouter(exported.export, layout="multi", precision="int8")
    batches = [[(CHAIN_TASKS[(i + j) % 3], questions[(i * 7 + j) % len(questions)]) for j in range(5)]
               for i in range(12)]
    expected = [router.predict_mixed(b) for b in batches]
    results: dict[int, list] = {}

    def worker(n: int) -> None:
        results[n] = [router.predict_mixed(b) for b in batches[n:] + batches[:n]]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, got in results.items():
        assert got == expected[n:] + expected[:n]


def test_parity_gate_checks_the_one_call_layout(exported):
    for task, layouts in exported.manifest["parity"].items():
        fp32 = layouts["multi"]["fp32"]
        assert fp32["max_abs_logit_diff_vs_merged"] <= 1e-5, task
        assert fp32["mixed_max_abs_logit_diff"] <= 1e-5, task
        assert "mixed_max_abs_logit_diff" in layouts["multi"]["int8"]


def test_the_gate_names_a_one_call_layout_that_mixes_rows():
    from lora_router.errors import ExportError
    from lora_router.export import check_parity

    figures = {"n": 4, "max_abs_logit_diff": 1e-6, "label_agreement": 1.0, "mixed_max_abs_logit_diff": 0.3}
    with pytest.raises(ExportError, match=r"question_classifier' \(multi fp32\): mixed max abs logit diff 0.3 > 1e-05"):
        check_parity({"question_classifier": {"multi": {"fp32": figures}}})


def test_the_graph_onnxruntime_optimised_at_export_is_opened_on_the_same_onnxruntime(exported, monkeypatch):
    import onnxruntime as ort

    from lora_router.backends.onnx import OnnxRouter

    optimized = exported.manifest["multi"]["optimized"]
    assert optimized["int8"] == "multi/encoder/model_quantized_optimized.onnx"
    assert optimized["onnxruntime"] == ort.__version__
    assert OnnxRouter(exported.export, tasks=["question_classifier"]).backend._one_call_file() == optimized["int8"]
    monkeypatch.setattr(ort, "__version__", "0.0.1")  # another onnxruntime: the plain graph
    assert OnnxRouter(exported.export, tasks=["question_classifier"]).backend._one_call_file() == \
        "multi/encoder/model_quantized.onnx"
