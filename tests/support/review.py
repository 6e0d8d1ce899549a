"""Capture stores written by hand in the contract's line format, and a real ``lora-router review`` process.

``chain_answer`` runs the real chain (``core.chain.run_chain``) over canned
step results, so an answer has the shape ``ask`` gives without a model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from lora_router.core.chain import Chain, run_chain
from lora_router.tasks import get_task

from .serve import STARTUP_S, CliProcess

SHARD = "testhost-1-abcd"


def classification(task: str, label: str, p: float) -> dict:
    """A classification step's result: ``label`` at ``p``, the second label at 80% of the rest (so ``p`` must be
    above 0.45 to be the top)."""
    others = [lb for lb in get_task(task).labels if lb != label]
    rest = [(1 - p) * 0.8] + [(1 - p) * 0.2 / max(1, len(others) - 1)] * (len(others) - 1)
    probabilities = {label: p, **{o: round(q, 6) for o, q in zip(others, rest)}}
    return {"predicted_label": label, "confidence": p, "probabilities": probabilities}


def chain_answer(question: str, *, scene: tuple[str, float] = ("数据平台相关问题", 0.95),
                 kind: tuple[str, float] = ("任务处理", 0.95), files: tuple[str, ...] = (),
                 kb_id: str | None = None, candidates: tuple[tuple[str, str, float], ...] = ()) -> dict:
    """The chain's answer to ``question`` had its steps said these things (``candidates``: id, question, score)."""
    spans = [{"text": f, "start": question.index(f), "end": question.index(f) + len(f), "score": 0.9} for f in files]
    results = {
        "question_classifier": classification("question_classifier", *scene),
        "question_type_classifier": classification("question_type_classifier", *kind),
        "file_name_pick": {"file_names": list(files), "spans": spans},
        "question_answer": {"answer": f"answer of {kb_id}" if kb_id else "", "kb_id": kb_id,
                            "confidence": candidates[0][2] if candidates else 0.0,
                            "candidates": [{"id": i, "question": q, "score": s} for i, q, s in candidates]},
    }
    return run_chain(Chain.load(), [question], lambda task, texts: [results[task] for _ in texts], set(results))[0]


def write_captures(folder: Path, answers: list[tuple[str, dict]], *, start: int = 0) -> list[str]:
    """Capture lines of ``(id, answer)`` pairs, one second apart, in one shard; the ids."""
    shard = folder / "captures" / SHARD
    shard.mkdir(parents=True, exist_ok=True)
    with open(shard / "000001.jsonl", "a", encoding="utf-8") as fh:
        for n, (capture_id, answer) in enumerate(answers, start=start):
            fh.write(json.dumps({"v": 1, "id": capture_id, "time": f"2026-12-03T10:{n // 60:02d}:{n % 60:02d}.000000Z",
                                 "endpoint": "ask", "question": answer["question"], "answer": answer},
                                ensure_ascii=False) + "\n")
    return [i for i, _ in answers]


def write_feedback(folder: Path, lines: list[dict]) -> None:
    """Feedback lines (the contract's fields; missing ones null) in one shard's feedback file."""
    (folder / "feedback").mkdir(parents=True, exist_ok=True)
    with open(folder / "feedback" / f"{SHARD}.jsonl", "a", encoding="utf-8") as fh:
        for line in lines:
            full = {"v": 1, "time": "2026-12-03T11:00:00.000000Z", "verdict": None, "route": None, "labels": {},
                    "file_names": None, "kb_id": None, "no_entry": False, "comment": "", **line}
            fh.write(json.dumps(full, ensure_ascii=False) + "\n")


class ReviewConsole(CliProcess):
    """``lora-router review --capture DIR ARGS`` on a free loopback port, stopped on exit."""

    def __init__(self, capture: Path, *args: str, log_path: Path, env: dict | None = None):
        super().__init__(["review", "--capture", str(capture)], *args, log_path=log_path, env=env)

    def __enter__(self) -> ReviewConsole:
        deadline = time.monotonic() + STARTUP_S
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"review exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            raise TimeoutError(f"review console not up in {STARTUP_S} s:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

