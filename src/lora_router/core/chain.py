"""The chain ``ask`` runs, as data, and the one runner both routers use.

A chain spec is JSON::

    {"version": 1, "start": "question_classifier",
     "steps": [
       {"task": "question_classifier", "threshold": 0.5,
        "on": {"数据平台相关问题": "question_type_classifier",
               "通用问题": "route:general", "无关问题": "route:out_of_scope"}},
       {"task": "question_type_classifier", "threshold": 0.6,
        "on": {"问题回答": "question_answer", "任务处理": "file_name_pick"}},
       {"task": "question_answer", "route": "answer"},
       {"task": "file_name_pick", "route": "task"}]}

A classification step goes where its label points (another step, or
``route:NAME`` to stop); below its threshold the chain stops with route
``uncertain`` (the fallback idea of Rasa's FallbackClassifier). A step
without ``on`` ends the chain with its ``route``. A new task plugs in by
adding a step, not by editing a router. No torch here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .results import ChainAnswer, TaskResult, result_confidence

ROUTE_PREFIX = "route:"
ROUTES = ("answer", "task", "general", "out_of_scope", "uncertain")

DEFAULT_CHAIN = {
    "version": 1,
    "start": "question_classifier",
    "steps": [
        {"task": "question_classifier", "threshold": 0.5,
         "on": {"数据平台相关问题": "question_type_classifier", "通用问题": "route:general",
                "无关问题": "route:out_of_scope"}},
        {"task": "question_type_classifier", "threshold": 0.6,
         "on": {"问题回答": "question_answer", "任务处理": "file_name_pick"}},
        {"task": "question_answer", "route": "answer"},
        {"task": "file_name_pick", "route": "task"},
    ],
}


@dataclass
class Step:
    task: str
    threshold: float = 0.0
    on: dict[str, str] = field(default_factory=dict)
    route: str | None = None


@dataclass
class Chain:
    start: str
    steps: dict[str, Step]

    @classmethod
    def from_dict(cls, data: dict) -> Chain:
        try:
            steps = {s["task"]: Step(s["task"], float(s.get("threshold", 0.0)), dict(s.get("on", {})), s.get("route"))
                     for s in data["steps"]}
            chain = cls(data.get("start") or data["steps"][0]["task"], steps)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"chain spec is not valid ({exc!r}); see lora_router.core.chain.DEFAULT_CHAIN"
            ) from None
        chain.validate()
        return chain

    @classmethod
    def load(cls, path: str | Path | None = None) -> Chain:
        """The chain in a JSON file, or the default chain of docs/labelling-guide.md."""
        if path is None:
            return cls.from_dict(DEFAULT_CHAIN)
        try:
            return cls.from_dict(json.loads(Path(path).read_text("utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read chain spec {path}: {exc}") from None

    def to_dict(self) -> dict:
        steps = []
        for s in self.steps.values():
            d: dict = {"task": s.task}
            if s.on:
                d.update(threshold=s.threshold, on=s.on)
            if s.route:
                d["route"] = s.route
            steps.append(d)
        return {"version": 1, "start": self.start, "steps": steps}

    def validate(self) -> None:
        if self.start not in self.steps:
            raise ConfigError(f"chain starts at {self.start!r}, which is not one of its steps")
        for s in self.steps.values():
            if not s.on and not s.route:
                raise ConfigError(f"chain step {s.task!r} needs 'on' (label -> next) or 'route'")
            if not 0.0 <= s.threshold <= 1.0:
                raise ConfigError(f"chain step {s.task!r}: threshold must be in [0, 1], got {s.threshold}")
            for label, target in s.on.items():
                if not target.startswith(ROUTE_PREFIX) and target not in self.steps:
                    raise ConfigError(f"chain step {s.task!r}: label {label!r} goes to unknown step {target!r}")

    def with_thresholds(self, thresholds: dict[str, float]) -> Chain:
        for task, value in thresholds.items():
            if task not in self.steps:
                raise ConfigError(f"threshold for {task!r}, which is not a step of the chain ({', '.join(self.steps)})")
            self.steps[task].threshold = float(value)
        self.validate()
        return self

    def tasks(self) -> list[str]:
        return list(self.steps)


PredictBatch = Callable[[str, Sequence[str]], list]


def run_chain(chain: Chain, texts: Sequence[str], predict_batch: PredictBatch,
              available: set[str]) -> list[ChainAnswer]:
    """Answer ``texts`` through the chain, batching each step's forward passes.

    ``predict_batch(task, texts)`` gives one result dict per text;
    ``available`` are the tasks that have a model. A step whose task has no
    model ends the chain at its route with a note instead of an answer.
    """
    outs = [new_answer(t) for t in texts]
    pending = {i: chain.start for i in range(len(texts))}
    while pending:
        by_task: dict[str, list[int]] = {}
        for i, task in pending.items():
            by_task.setdefault(task, []).append(i)
        pending = {}
        for task, idx in by_task.items():
            step = chain.steps[task]
            if task not in available:
                for i in idx:
                    finish_missing(outs[i], step)
                continue
            t0 = time.perf_counter()
            results = predict_batch(task, [texts[i] for i in idx])
            ms = round((time.perf_counter() - t0) * 1000 / len(idx), 3)
            for i, result in zip(idx, results):
                outs[i]["steps"].append({"task": task, "result": result, "ms": ms})
                nxt = apply_step(outs[i], step, result)
                if nxt:
                    pending[i] = nxt
    return outs


def new_answer(text: str) -> ChainAnswer:
    """The empty answer of one question, which ``apply_step`` fills step by step."""
    return ChainAnswer(question=text, steps=[], route=None, file_names=[], answer=None)


def apply_step(out: ChainAnswer, step: Step, result: TaskResult) -> str | None:
    """Apply one step's ``result`` to ``out``: the next step's task, or None when the route is decided.

    ``run_chain`` and the service's per-request runner both go through here,
    so the chain's rules live in one place. The caller appends the step entry.
    """
    if not step.on:
        out["route"] = step.route
        if "file_names" in result:
            out["file_names"] = result["file_names"]
        if "answer" in result:
            out["answer"] = result["answer"] or None
            if not result["answer"]:
                out["note"] = "no knowledge-base entry answers this question confidently"
        return None
    label = result.get("predicted_label")
    if result_confidence(result) < step.threshold:
        out["route"] = "uncertain"
        out["uncertain_step"] = step.task
        out["note"] = (f"{step.task} was unsure: {label} at {result_confidence(result):.2f} "
                       f"< threshold {step.threshold:.2f}")
        return None
    target = step.on.get(label)
    if target is None:
        out["route"] = "uncertain"
        out["uncertain_step"] = step.task
        out["note"] = f"{step.task} gave label {label!r}, which the chain does not route"
        return None
    if target.startswith(ROUTE_PREFIX):
        out["route"] = target[len(ROUTE_PREFIX):]
        return None
    return target


def finish_missing(out: ChainAnswer, step: Step) -> None:
    """End ``out`` at a step whose task has no model."""
    out["route"] = step.route or "uncertain"
    out["note"] = f"{step.task} is not trained, so this step gives no result (lora-router train --task {step.task})"
