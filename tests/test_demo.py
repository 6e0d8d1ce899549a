"""The offline main job of README's first command, end to end (one epoch, so it stays quick)."""

import pytest

from lora_router.adapters import AdapterHub
from lora_router.demo import EXPECTED_ROUTES, SAMPLE_QUESTIONS, run_demo


@pytest.mark.slow
def test_demo_trains_every_task_and_answers_the_sample_questions(tmp_path):
    events = []
    summary = run_demo(tmp_path / "demo", epochs=1, progress=False,
                       report=lambda event, payload: events.append((event, payload)))
    seen = [event for event, _ in events]
    assert seen.count("trained") == 4 and seen.count("answer") == len(SAMPLE_QUESTIONS)
    assert sorted(p.name for p in (tmp_path / "demo" / "hub").iterdir() if p.name != "logs") == [
        "file_name_pick", "question_answer", "question_classifier", "question_type_classifier"]
    for out in summary["answers"]:
        assert out["route"] in {"answer", "task", "general", "out_of_scope", "uncertain"}
        assert out["steps"][0]["task"] == "question_classifier"
    assert summary["samples_routed_as_expected"] == sum(
        a["route"] == EXPECTED_ROUTES[a["question"]] for a in summary["answers"])
    assert summary["random_base"] and summary["chain"]["n"] >= 150

    # On the random base the knowledge-base cross-encoder gets no say in the answers, and the demo says why.
    notes = [payload for event, payload in events if event == "note"]
    assert len(notes) == 1 and "question_answer" in notes[0] and "retrieval alone" in notes[0]
    qa = AdapterHub(tmp_path / "demo" / "hub").manifest("question_answer")
    assert qa.knowledge_base["relevance_weight"] == 0.0
    assert qa.metrics["top1"] == qa.baseline["metrics"]["top1"]  # it ranks exactly as retrieval alone
