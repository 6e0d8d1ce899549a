"""The offline main job of README's first command, end to end (one epoch, so it stays quick)."""

import pytest

from lora_router.demo import EXPECTED_ROUTES, SAMPLE_QUESTIONS, run_demo


@pytest.mark.slow
def test_demo_trains_every_task_and_answers_the_sample_questions(tmp_path):
    seen = []
    summary = run_demo(tmp_path / "demo", epochs=1, progress=False, report=lambda event, payload: seen.append(event))
    assert seen.count("trained") == 4 and seen.count("answer") == len(SAMPLE_QUESTIONS)
    assert sorted(p.name for p in (tmp_path / "demo" / "hub").iterdir() if p.name != "logs") == [
        "file_name_pick", "question_answer", "question_classifier", "question_type_classifier"]
    for out in summary["answers"]:
        assert out["route"] in {"answer", "task", "general", "out_of_scope", "uncertain"}
        assert out["steps"][0]["task"] == "question_classifier"
    assert summary["samples_routed_as_expected"] == sum(
        a["route"] == EXPECTED_ROUTES[a["question"]] for a in summary["answers"])
    assert summary["random_base"] and summary["chain"]["n"] >= 150
