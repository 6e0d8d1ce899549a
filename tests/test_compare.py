"""`eval --compare OLD NEW`: paired statistics checked on known values, flips listed, exit 3 on a worse NEW."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from lora_router.data import Record
from lora_router.evaluation.compare import BETTER, SAME, WORSE, compare_task
from lora_router.evaluation.significance import (
    binomial_two_sided,
    mcnemar,
    mcnemar_counts,
    paired_bootstrap,
)
from lora_router.tasks import get_task

SPEC = get_task("question_classifier")


# McNemar against textbook tables.

def test_mcnemar_chi_square_matches_the_textbook_table():
    # Wikipedia's McNemar example: b = 121, c = 59; chi2 with continuity correction (|121-59|-1)^2/180 = 20.672.
    test = mcnemar_counts(121, 59)
    assert test.statistic == pytest.approx(20.6722, abs=1e-4)
    assert test.p_value == pytest.approx(5.45e-6, rel=1e-3)
    assert test.method.startswith("chi-square")
    # Agresti, Categorical Data Analysis (presidential approval): b = 150, c = 86 -> corrected chi2 16.82.
    assert mcnemar_counts(150, 86).statistic == pytest.approx(16.8178, abs=1e-4)


def test_mcnemar_is_exact_binomial_for_few_discordant_questions():
    # 1 vs 6 discordant: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125, far from the chi-square's 0.1306.
    test = mcnemar_counts(1, 6)
    assert test.method == "exact binomial" and test.statistic is None
    assert test.p_value == pytest.approx(0.125)
    assert mcnemar_counts(6, 1).p_value == test.p_value  # two-sided: the direction does not matter
    assert mcnemar_counts(0, 0).p_value == 1.0
    assert binomial_two_sided(0, 9) == pytest.approx(2 / 512)


def test_mcnemar_counts_right_to_wrong_and_wrong_to_right_from_paired_answers():
    old = [True, True, True, False, False, True]
    new = [True, False, False, True, False, True]
    test = mcnemar(old, new)
    assert (test.right_to_wrong, test.wrong_to_right) == (2, 1)


def test_paired_bootstrap_agrees_with_the_normal_approximation_on_many_questions():
    rng = np.random.default_rng(1)
    n = 2000
    old = rng.random(n) < 0.70
    new = np.where(rng.random(n) < 0.9, old, rng.random(n) < 0.85)
    interval = paired_bootstrap(lambda idx: (old[idx].mean(), new[idx].mean()), n, resamples=2000, seed=0)
    d = new.astype(float) - old.astype(float)
    half = 1.96 * d.std(ddof=1) / math.sqrt(n)
    assert interval.difference == pytest.approx(d.mean())
    assert interval.low == pytest.approx(d.mean() - half, abs=0.25 * half)
    assert interval.high == pytest.approx(d.mean() + half, abs=0.25 * half)


def test_paired_bootstrap_of_identical_answers_is_exactly_zero():
    right = np.array([True, False, True, True])
    interval = paired_bootstrap(lambda idx: (right[idx].mean(), right[idx].mean()), 4, resamples=200)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.excludes_zero()


# compare_task on routers that answer from a table (no model needed).

class TableEncoder:
    def encode_batch(self, texts):
        return list(texts)


class TableRouter:
    """Says the label the table gives each question."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.specs = {SPEC.name: SPEC}
        self.encoders = {SPEC.name: TableEncoder()}

    def logits(self, task, texts):
        return np.array([[5.0 if label == self.answers[t] else 0.0 for label in SPEC.labels] for t in texts])


def _records(n_each: int):
    labels = SPEC.labels[:3]
    return [Record(SPEC.instruction, f"问题{i}-{label}", label, line=i + 1)
            for i, label in enumerate(labels[k % 3] for k in range(3 * n_each))]


def test_flips_are_listed_with_the_line_and_what_each_router_said():
    records = _records(4)
    gold = {r.input: r.output for r in records}
    wrong = SPEC.labels[0]
    old = TableRouter({**gold, records[1].input: wrong})  # OLD misses line 2
    new = TableRouter({**gold, records[2].input: wrong})  # NEW misses line 3 instead
    report = compare_task(old, new, SPEC.name, records, resamples=200)
    assert report["verdict"] == SAME
    assert [(q["line"], q["old"], q["new"]) for q in report["right_to_wrong"]] == [(3, records[2].output, wrong)]
    assert [(q["line"], q["gold"]) for q in report["wrong_to_right"]] == [(2, records[1].output)]
    accuracy = report["metrics"][0]
    assert (accuracy["metric"], accuracy["old"], accuracy["new"], accuracy["difference"]) == (
        "accuracy", round(11 / 12, 4), round(11 / 12, 4), 0.0)


def test_a_new_router_wrong_on_many_questions_is_significantly_worse_and_a_fixed_one_better():
    records = _records(5)
    gold = {r.input: r.output for r in records}
    broken = {t: SPEC.labels[(SPEC.labels.index(label) + 1) % 3] for t, label in gold.items()}
    worse = compare_task(TableRouter(gold), TableRouter(broken), SPEC.name, records, resamples=200)
    assert worse["verdict"] == WORSE
    assert worse["mcnemar"]["right_to_wrong"] == len(records) and worse["mcnemar"]["p_value"] < 0.05
    assert worse["metrics"][0]["ci_high"] < 0  # the interval agrees: the whole of it is below zero
    assert compare_task(TableRouter(broken), TableRouter(gold), SPEC.name, records, resamples=200)["verdict"] == BETTER


# The command, on a trained tiny hub (slow: uses trained_hub).

def _damaged_copy(hub_root, folder):
    """The hub with question_classifier's head rows rotated: every label it gave is now another one."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(hub_root, folder)
    head = folder / "question_classifier" / "head.safetensors"
    state = load_file(str(head))
    save_file({k: np.roll(v, 1, axis=0) for k, v in state.items()}, str(head))
    return folder


def _compare(*args):
    return CliRunner().invoke(__import__("lora_router.cli", fromlist=["main"]).main,
                              ["eval", *map(str, args)], catch_exceptions=False)


def test_two_identical_hubs_show_no_difference_and_exit_0(trained_hub, tiny_base, scene_file, tmp_path):
    copy = shutil.copytree(trained_hub.root, tmp_path / "copy")
    result = _compare("--task", "question_classifier", "--data", scene_file, "--compare", trained_hub.root, copy,
                      "--base-model", tiny_base, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == SAME and report["right_to_wrong"] == report["wrong_to_right"] == []
    assert all(m["difference"] == 0 for m in report["metrics"])


def test_a_damaged_hub_is_significantly_worse_and_exits_3(trained_hub, tiny_base, scene_file, tmp_path):
    damaged = _damaged_copy(trained_hub.root, tmp_path / "damaged")
    result = _compare("--data", scene_file, "--compare", trained_hub.root, damaged, "--base-model", tiny_base)
    assert result.exit_code == 3, result.output
    assert "verdict: NEW is worse" in result.stdout and "right -> wrong (9)" in result.stdout
    # The other way round the damaged one is OLD: NEW is better, and CI lets it through.
    assert _compare("--data", scene_file, "--compare", damaged, trained_hub.root, "--base-model", tiny_base,
                    "--json").exit_code == 0


def test_the_chain_of_two_identical_hubs_compares_equal(trained_hub, tiny_base, tmp_path):
    copy = shutil.copytree(trained_hub.root, tmp_path / "copy")
    result = _compare("--chain", "--compare", trained_hub.root, copy, "--base-model", tiny_base, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "chain" and report["headline"] == "end_to_end_accuracy" and report["n"] > 0
    assert report["mcnemar"]["right_to_wrong"] == report["mcnemar"]["wrong_to_right"] == 0


def test_an_export_compares_with_itself_on_answers_and_file_names(exported, file_file):
    for task, data in (("question_answer", exported.root / "qa.jsonl"), ("file_name_pick", file_file)):
        result = _compare("--task", task, "--data", data, "--compare", exported.export, exported.export, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["verdict"] == SAME and report["headline"] in ("answer_accuracy", "exact_match")
        assert all(m["difference"] in (0, None) for m in report["metrics"])
