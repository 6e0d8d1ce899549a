"""The cascade against the adapters alone, on one export made with ``--cascade`` and the bundled chain set.

Per mode (the layout's default ``ask``, and the step-by-step chain): the
share of classification steps and of questions the n-gram first pass decides,
the chain set's route accuracy, and each question's ``ask`` latency and the
time of its classification steps, every question asked with and without the
cascade back to back (who goes first alternating), so a shared machine's
drift hits both alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..evaluation.chain import bundled_chain_cases, evaluate_chain, read_chain_cases
from .timing import summary

logger = logging.getLogger(__name__)


def measure_cascade(export_dir: str | Path, *, rounds: int = 3, layout: str | None = None,
                    precision: str | None = None, cases_path: str | Path | None = None) -> dict:
    """``{"export", "cascade", "modes": {mode: figures}}``: the cascade's figures against the adapters alone."""
    from ..backends.onnx import OnnxRouter

    cases = read_chain_cases(cases_path or bundled_chain_cases())
    questions = [c.question for c in cases]
    out: dict = {"export": str(export_dir), "questions": len(questions), "rounds": rounds, "modes": {}}
    for mode, speculate in (("default", None), ("step_by_step", False)):
        routers = {name: OnnxRouter(export_dir, layout=layout, precision=precision, speculate=speculate,
                                    cascade=name == "cascade")
                   for name in ("adapters", "cascade")}
        first = routers["cascade"]
        out.update(layout=first.layout, precision=first.precision, cascade=first.manifest.cascade)
        if mode == "default" and not first.speculate:
            continue  # the layout walks the chain step by step anyway: one mode
        figures: dict = {"speculate": first.speculate}
        for name, router in routers.items():
            chain = evaluate_chain(router, cases)
            figures[name] = {"route_accuracy": chain["route_accuracy"], **_decided(router.ask_batch(questions))}
        times = _interleaved_per_question(routers, questions, rounds)
        for name in routers:
            figures[name]["latency"] = summary(times[name]["ask"])
            ms = np.asarray(times[name]["classification_ms"])
            figures[name]["classification_ms"] = {"p50": round(float(np.median(ms)), 3),
                                                  "mean": round(float(ms.mean()), 3)}
        figures["p50_ratio_adapters_over_cascade"] = round(
            figures["adapters"]["latency"]["p50_ms"] / figures["cascade"]["latency"]["p50_ms"], 3)
        figures["classification_p50_ratio_adapters_over_cascade"] = round(
            figures["adapters"]["classification_ms"]["p50"] / max(figures["cascade"]["classification_ms"]["p50"],
                                                                  1e-3), 3)
        figures["route_accuracy_change_points"] = round(
            100 * (figures["cascade"]["route_accuracy"] - figures["adapters"]["route_accuracy"]), 2)
        out["modes"][mode] = figures
        logger.info("cascade %s: %s", mode, figures)
    return out


def _decided(answers: list[dict]) -> dict:
    """Shares the n-gram first pass decided: of classification steps run, and of questions (every such step)."""
    steps = [s["result"].get("decided_by") for a in answers for s in a["steps"] if "predicted_label" in s["result"]]
    by_question = [all(s["result"].get("decided_by") == "ngram" for s in a["steps"] if "predicted_label" in s["result"])
                   for a in answers]
    return {"classification_steps": len(steps),
            "ngram_step_share": round(float(np.mean([d == "ngram" for d in steps])), 4) if steps else 0.0,
            "ngram_question_share": round(float(np.mean(by_question)), 4) if by_question else 0.0}


def _interleaved_per_question(routers: dict, questions: list[str], rounds: int) -> dict[str, dict[str, list]]:
    """Per router, seconds of ``ask`` per question and the milliseconds its classification steps took.

    Each question is asked of every router back to back, who goes first alternating. The classification
    figure compares like with like where the routes differ (a question the adapters leave uncertain at step 1
    costs less than one routed on to the knowledge base).
    """
    import time

    times: dict[str, dict[str, list]] = {name: {"ask": [], "classification_ms": []} for name in routers}
    for q in questions[:8]:  # warm-up
        for router in routers.values():
            router.ask(q)
    names = list(routers)
    for r in range(rounds):
        for i, q in enumerate(questions):
            for name in names[(r + i) % 2:] + names[: (r + i) % 2]:
                t0 = time.perf_counter()
                answer = routers[name].ask(q)
                times[name]["ask"].append(time.perf_counter() - t0)
                times[name]["classification_ms"].append(
                    sum(s["ms"] for s in answer["steps"] if "predicted_label" in s["result"]))
    return times
