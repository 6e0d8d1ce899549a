"""question_answer's no-answer decision: the bundled test split, a 5-fold CV of train, and questions nobody tuned on.

    lora-router init-base /tmp/kb-B --size tiny
    lora-router train --task question_answer --base-model /tmp/kb-B --hub /tmp/kb-H \\
        --epochs 10 --lr 5e-3 --warmup-steps 20
    python benchmarks/kb_noanswer.py --base /tmp/kb-B --hub /tmp/kb-H --out benchmarks/results/kb-noanswer-tiny.json

(``--train`` does the first two steps when the folders are missing.) One
cross-encoder, the adapter in ``--hub``; the decision is refitted by the
library's own fit (``kb/fitting.py``) on the bundled train split, so a change to
the decision is measured without retraining the cross-encoder:

* ``saved``:   ``lora-router eval --task question_answer --json``, the decision the adapter saved, on test

and, for the decision fitted without examples (``decisions.logistic``), with the
training questions without an answer as examples (``kb/examples.py``;
``decisions.logistic+examples``, adapters trained before ``--no-answer-examples``),
and with the bundled question classifier's questions outside the platform as
well (``decisions.logistic+examples+classifier``; ``data/no_answer.py``, what
``lora-router train`` does by default), and reading the model of what the top
entry leaves over as well (``decisions.logistic+examples+classifier+residual``;
``kb/residual.py``, what training saves since):

* ``test``:    the decision fitted on all of train, on test (``holdout_answering``)
* ``cv5``:     5-fold CV of train (``cross_validate_answering``): each question scored by a decision
               fitted on the other folds, with its own phrasing left out of the knowledge base
* ``unseen``:  the decision fitted on all of train, on each ``--unseen`` file (by default
               ``benchmarks/data/kb_unseen.jsonl``: hand-written, kept out of the bundled data, never tuned on)

The cross-encoder saw the training questions, so the CV measures the decision,
not the cross-encoder; on the random tiny base the cross-encoder ranks no
better than chance and the decision reads retrieval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
from pathlib import Path

import numpy as np

from lora_router import Router
from lora_router.data import load_bundled, read_records
from lora_router.data.no_answer import read_no_answer_examples
from lora_router.evaluation.answering import cross_validate_answering, holdout_answering
from lora_router.evaluation.tasks import evaluate

TASK = "question_answer"
KEYS = ("top1", "mrr", "no_answer_precision", "no_answer_recall", "answer_accuracy", "n", "n_answerable")
DEMO_TRAINING = {"epochs": 10, "learning_rate": 5e-3, "warmup_steps": 20}  # the docs' demo settings
HERE = Path(__file__).resolve().parent


class CachedScorer:
    """The router's cross-encoder with every (question, phrasing) pair scored once across the measures."""

    def __init__(self, router):
        self.router, self.memo = router, {}

    def answerer(self, task):
        return self.router.answerer(task)

    def score_pairs(self, task, pairs):
        new = list(dict.fromkeys(p for p in pairs if p not in self.memo))
        if new:
            self.memo.update(zip(new, np.asarray(self.router.score_pairs(task, new)).reshape(-1).tolist()))
        return np.array([self.memo[p] for p in pairs], dtype=np.float64)


def ensure_trained(base: Path, hub: Path) -> None:
    """The tiny random base and a question_answer adapter trained with the demo settings, where missing."""
    if not (base / "config.json").is_file():
        from lora_router.modeling.base import init_base

        init_base(base, "tiny")
    if not (hub / TASK / "task.json").is_file():
        from lora_router.adapters import AdapterHub
        from lora_router.config import TrainSettings
        from lora_router.tasks import get_task
        from lora_router.training import train

        train(get_task(TASK), base_model=str(base), hub=AdapterHub(hub), settings=TrainSettings(**DEMO_TRAINING),
              progress=False)


def _figures(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEYS if k in metrics}


def measure(base: Path, hub: Path, unseen: list[Path], analyzer: str | None = None,
            knowledge_base: Path | None = None) -> dict:
    router = Router(str(base), str(hub), tasks=[TASK], knowledge_base=knowledge_base)
    scorer = CachedScorer(router)
    train, test = load_bundled(TASK, "train"), load_bundled(TASK, "test")
    saved = router.answerer(TASK).settings
    settings = dataclasses.replace(saved, decision=None, **({"analyzer": analyzer} if analyzer else {}))
    out = {
        "adapter": str(hub / TASK),
        "saved_decision": "threshold" if not saved.decision else
        "+".join(["logistic", *(["examples"] if "no_answer_examples" in saved.decision else []),
                  *(["residual"] if "residual_model" in saved.decision else [])]),
        "analyzer": settings.analyzer,
        "knowledge_base": str(router.answerer(TASK).path),
        "train_questions": len(train),
        "train_no_answer": sum(r.output == "" for r in train),
        "saved": _figures(evaluate(router, TASK, test)),
        "decisions": {},
    }
    classifier = read_no_answer_examples("bundled")
    out["classifier_examples"] = len(classifier)
    for name, examples, extra, residual in (("logistic", False, [], False), ("logistic+examples", True, [], False),
                                            ("logistic+examples+classifier", True, classifier, False),
                                            ("logistic+examples+classifier+residual", True, classifier, True)):
        options = {"settings": settings, "with_examples": examples, "extra_examples": extra,
                   "with_residual": residual}
        figures = {"test": _figures(holdout_answering(scorer, TASK, train, test, **options)),
                   "cv5": _figures(cross_validate_answering(scorer, TASK, train, **options))}
        for path in unseen:
            figures[path.name] = _figures(holdout_answering(scorer, TASK, train, read_records(path), **options))
        out["decisions"][name] = figures
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the base model folder (lora-router init-base)")
    parser.add_argument("--hub", type=Path, required=True, help="a hub with a trained question_answer adapter")
    parser.add_argument("--train", action="store_true",
                        help="create the tiny random base and train the adapter (demo settings) where missing")
    parser.add_argument("--unseen", type=Path, nargs="*", default=[HERE / "data" / "kb_unseen.jsonl"],
                        help="held-out question_answer files to score (default: benchmarks/data/kb_unseen.jsonl)")
    parser.add_argument("--analyzer", default=None, help="retrieve with this analyzer instead of the adapter's")
    parser.add_argument("--kb", type=Path, default=None,
                        help="answer from this knowledge base instead of the adapter's")
    parser.add_argument("--out", type=Path, required=True, help="JSON file the figures are written to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.train:
        ensure_trained(args.base, args.hub)
    figures = measure(args.base, args.hub, args.unseen, args.analyzer, args.kb)
    figures["commit"] = _commit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", "utf-8")
    tmp.replace(args.out)
    rows = [("saved", "", figures["saved"])]
    rows += [(split, decision, f) for decision, splits in figures["decisions"].items() for split, f in splits.items()]
    for split, decision, f in rows:
        print(f"{decision:37s} {split:16s} top-1 {f['top1']:.3f}  no-answer P {f['no_answer_precision']:.3f} "
              f"R {f['no_answer_recall']:.3f}  n {f['n']}")


if __name__ == "__main__":
    main()
