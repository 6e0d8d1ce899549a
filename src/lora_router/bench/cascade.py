"""The cascade against the adapters alone, on one export made with ``--cascade`` and the bundled chain set.

Per mode (the layout's default ``ask``, and the step-by-step chain): the
share of classification steps and of questions the n-gram first pass decides,
the chain set's route accuracy, and each question's ``ask`` latency, every
question timed with and without the cascade in the same rounds
(``bench.timing.interleaved``), so a shared machine's drift hits both alike.
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
            figures[name]["latency"] = summary(times[name])
        figures["p50_ratio_adapters_over_cascade"] = round(
            figures["adapters"]["latency"]["p50_ms"] / figures["cascade"]["latency"]["p50_ms"], 3)
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


def _interleaved_per_question(routers: dict, questions: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds of ``ask`` per question and router; each question is asked of every router back to back."""
    from .timing import interleaved

    times: dict[str, list[float]] = {name: [] for name in routers}
    for q in questions[:8]:  # warm-up
        for router in routers.values():
            router.ask(q)
    for r in range(rounds):
        for i, q in enumerate(questions):
            names = list(routers)[(r + i) % 2:] + list(routers)[: (r + i) % 2]  # who goes first alternates
            timed = interleaved({name: (lambda router=routers[name], q=q: router.ask(q)) for name in names}, 1,
                                warmup=0)
            for name in routers:
                times[name] += timed[name]
    return times
