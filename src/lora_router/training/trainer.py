"""``train(task, ...)``: one LoRA adapter and its head into the adapter hub.

A plain loop rather than Transformers' ``Trainer``: Trainer's best-epoch
keeping writes a checkpoint of the whole model (400 MB for bert-base) every
epoch, while an adapter and its head are 2 MB and fit in memory. The pieces
that Transformers does well are used as they are (the warm-up schedule).
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from pathlib import Path

from .. import __version__
from ..adapters import TASK_FILE, AdapterHub, TaskManifest, adapter_sha256
from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, LoraSettings, TaskSpec, TrainSettings
from ..data import BUNDLED, DataSources, TrainData, data_hash, split_data
from ..data.bundled import bundled_knowledge_base
from ..data.no_answer import read_no_answer_examples
from ..encoding import TextEncoder, default_encoding
from ..errors import require
from ..evaluation.metrics import best_epoch_score

logger = logging.getLogger(__name__)


def _versions() -> dict:
    import peft
    import torch
    import transformers

    return {"lora_router": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


class RunLog:
    """JSON lines under ``<hub>/logs/``: every step's loss and learning rate, every evaluation."""

    def __init__(self, hub: AdapterHub, task: str):
        hub.logs_dir.mkdir(parents=True, exist_ok=True)
        self.path = hub.logs_dir / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}-{random.randrange(16**4):04x}.jsonl"
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, **event) -> None:
        self._fh.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def train(
    spec: TaskSpec,
    *,
    base_model: str,
    hub: AdapterHub,
    data: DataSources = None,
    test_data: str | Path | None = None,
    prefer_last: bool = False,
    lora: LoraSettings | None = None,
    settings: TrainSettings | None = None,
    knowledge_base: str | Path | None = None,
    answer_settings=None,
    no_answer_examples: str | Path | None = BUNDLED,
    progress: bool = True,
) -> TaskManifest:
    """Train ``spec``'s adapter on ``base_model`` and save it atomically into ``hub``.

    ``data`` is one file, several (merged by ``data.merge_data``; ``"bundled"``
    names the bundled train split), or None for the bundled splits. Returns the
    saved ``task.json``. Invalid or conflicting data raises before anything is written. ``answer_settings``
    (``kb.AnswerSettings``, question_answer only) replaces the answerer's defaults; its
    ``relevance_weight`` caps the cross-encoder's fitted weight (0: answers by retrieval alone).
    ``no_answer_examples`` (question_answer only; ``data/no_answer.py``): more questions without an answer
    for the no-answer decision to compare with: ``"bundled"`` (the question classifier's bundled training
    questions outside the platform), a data file, or ``"none"``.
    """
    torch = require("torch")
    from transformers import get_linear_schedule_with_warmup

    from ..modeling.base import fingerprint, is_random, load_base
    from ..modeling.heads import init_head
    from ..progress import progress as progress_bar
    from .batches import epoch_batches
    from .examples import collate
    from .loop import add_lora, evaluate_examples, forward, loss_fn

    lora = lora or LoraSettings()
    settings = settings or TrainSettings()
    split = split_data(spec, data, test_data, settings.seed, prefer_last=prefer_last)
    extra_no_answer = read_no_answer_examples(no_answer_examples) if spec.kind == PAIR_RANKING else []
    base, tokenizer = load_base(base_model)
    encoder = TextEncoder(tokenizer, settings.max_length, **default_encoding(tokenizer))
    base_fp = fingerprint(base)

    if spec.kind == PAIR_RANKING:
        from .ranking import RankingTask

        kb_path = Path(knowledge_base) if knowledge_base else bundled_knowledge_base()
        job = RankingTask(spec, kb_path, split.train, split.test, encoder, settings.seed, answer_settings,
                          no_answer_examples=extra_no_answer)
        train_examples = job.training_examples()
    else:
        from .examples import make_examples

        job = None
        train_examples = make_examples(spec, split.train, encoder)
        test_examples = make_examples(spec, split.test, encoder)

    torch.manual_seed(settings.seed)
    model = add_lora(base, lora)
    head = init_head(spec, base.config, settings.seed)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    pad_to = None if settings.dynamic_padding else settings.max_length
    lengths = [len(e.enc.input_ids) for e in train_examples]
    group = settings.group_by_length and settings.dynamic_padding
    steps_per_epoch = len(epoch_batches(lengths, settings.batch_size, settings.seed, group_by_length=group))
    total = steps_per_epoch * settings.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, min(settings.warmup_steps, total // 2), total)

    log = RunLog(hub, spec.name)
    log.write(event="start", task=spec.name, base_model=base_model, lora=lora.to_dict(),
              settings=settings.to_dict(), n_train=len(train_examples), n_test=len(split.test),
              **({"no_answer_examples": str(no_answer_examples), "n_no_answer_examples": len(job.no_answer_examples)}
                 if job is not None else {}))
    best: dict | None = None
    history = []
    stopped: dict | None = None
    step = 0
    seen = 0
    train_seconds = 0.0
    bar = progress_bar(total, f"train {spec.name}", enabled=progress, unit="step", log_every=steps_per_epoch)
    try:
        for epoch in range(1, settings.epochs + 1):
            model.train()
            head.train()
            t0 = time.perf_counter()
            for indices in epoch_batches(lengths, settings.batch_size, settings.seed + epoch, group_by_length=group):
                batch = [train_examples[j] for j in indices]
                arrays = collate(batch, encoder, pad_to)
                logits = forward(model, head, arrays)
                loss = loss_fn(spec, logits, torch.from_numpy(arrays["labels"]))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                seen += len(batch)
                lr = scheduler.get_last_lr()[0]
                log.write(event="step", step=step, epoch=epoch, loss=round(loss.item(), 6), learning_rate=lr)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                bar.update(1)
            train_seconds += time.perf_counter() - t0
            metrics = job.evaluate(model, head) if job else evaluate_examples(spec, model, head, test_examples, encoder)
            score = best_epoch_score(spec.kind, metrics)
            history.append({"epoch": epoch, "score": score})
            log.write(event="eval", epoch=epoch, step=step, metrics=metrics)
            logger.info("epoch %d: %s", epoch, score)
            if best is None or score > best["score"]:
                best = {"epoch": epoch, "score": score, "metrics": metrics, "state": _snapshot(model, head)}
            elif settings.patience and epoch - best["epoch"] >= settings.patience and epoch < settings.epochs:
                stopped = {"after_epoch": epoch, "best_epoch": best["epoch"], "patience": settings.patience,
                           "reason": f"no better held-out score in the {settings.patience} epoch(s) "
                                     f"after epoch {best['epoch']}"}
                log.write(event="early_stop", epoch=epoch, step=step, **stopped)
                logger.info("stopping after epoch %d: %s", epoch, stopped["reason"])
                break
    except BaseException as exc:
        log.write(event="failed", error=f"{type(exc).__name__}: {exc}")
        log.close()
        raise
    finally:
        bar.close()

    assert best is not None
    _restore(model, head, best["state"])
    calibration = None
    if job is None and spec.kind == SEQUENCE_CLASSIFICATION and test_examples:
        calibration = _calibrate(model, head, test_examples, encoder, split)
        log.write(event="calibration", **calibration)
    from ..evaluation.baselines import baseline_for

    baseline = baseline_for(spec, split.train, split.test, answerer=job.answerer if job else None, seed=settings.seed)
    manifest = TaskManifest(
        task=spec,
        base_model={"name": base_model, "fingerprint": base_fp, "hidden_size": base.config.hidden_size,
                    "random": is_random(base.config)},
        lora=lora.to_dict(),
        training=settings.to_dict(),
        encoding=encoder.encoding,
        data={"source": split.source, "train_hash": data_hash(split.train), "test_hash": data_hash(split.test),
              "n_train": len(split.train), "n_test": len(split.test), "n_train_examples": len(train_examples),
              "files": split.files, "duplicates_folded": split.duplicates,
              "conflicts_resolved": split.conflicts_resolved},
        metrics=best["metrics"],
        best_epoch=best["epoch"],
        history=history,
        early_stop=stopped,
        train_samples_per_second=round(seen / train_seconds, 2) if train_seconds else None,
        versions=_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        log=str(log.path.name),
        knowledge_base=job.manifest_info() if job is not None else None,
        calibration=calibration,
        baseline=baseline,
    )

    def write(folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)
        head.save(folder)
        manifest.adapter_sha256 = adapter_sha256(folder)
        manifest.save(folder / TASK_FILE)

    hub.save(spec.name, write)
    manifest.version = hub.latest_version(spec.name) or 1  # the hub numbers what it saves
    log.write(event="end", best_epoch=best["epoch"], metrics=best["metrics"],
              samples_per_second=manifest.train_samples_per_second)
    log.close()
    return manifest


def _calibrate(model, head, examples, encoder: TextEncoder, split: TrainData) -> dict:
    """The temperature of a classification head, fitted on the held-out split (evaluation/calibration.py)."""
    import numpy as np

    from ..evaluation.calibration import calibrate
    from .loop import predict_logits

    logits = np.stack(predict_logits(model, head, examples, encoder))
    where = "bundled test split" if split.source == "bundled" else f"held-out split of {split.source}"
    return calibrate(logits, [int(e.target) for e in examples], where)


def _snapshot(model, head) -> dict:
    from peft import get_peft_model_state_dict

    lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {"lora": lora, "head": {k: v.detach().clone() for k, v in head.state_dict().items()}}


def _restore(model, head, state: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state["lora"])
    head.load_state_dict(state["head"])

