"""Training throughput: LoRA steps per second as the trainer batches, against random batches and padding to 128."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from .timing import summary

TRAIN_TASK = "question_classifier"
BATCH_SIZE = 8


def training_throughput(base_dir: Path, *, steps: int, warmup: int = 2, device: str = "cpu", seed: int = 0) -> dict:
    """Samples/s of the trainer's step (forward, loss, backward, clip, AdamW) at batch 8.

    The examples are the bundled training data of ``question_classifier``
    (their real length distribution); the timed batches are taken at evenly
    spaced quantiles of an epoch's batch widths. Step ``i`` runs three batches, in a
    rotating order so that each mode meets the same load: ``grouped``, the
    ``i``-th batch the trainer makes (similar lengths, each padded to its
    longest: ``training/batches.py``); ``dynamic``, the ``i``-th batch of a
    plain shuffle padded to its longest; ``padded``, that same batch padded
    to ``max_length`` (128).
    """
    import torch

    from ..config import LoraSettings, TrainSettings
    from ..data import load_bundled
    from ..encoding import TextEncoder
    from ..modeling.base import load_base
    from ..modeling.heads import init_head
    from ..tasks import get_task
    from ..training.batches import epoch_batches
    from ..training.examples import collate, make_examples
    from ..training.loop import add_lora, forward, loss_fn, to_tensors

    spec = get_task(TRAIN_TASK)
    settings = TrainSettings(batch_size=BATCH_SIZE)
    base, tokenizer = load_base(str(base_dir))
    encoder = TextEncoder(tokenizer, settings.max_length)
    examples = make_examples(spec, load_bundled(TRAIN_TASK, "train"), encoder)
    random.Random(seed).shuffle(examples)
    lengths = np.asarray([len(e.enc.input_ids) for e in examples])
    batches = {"grouped": epoch_batches(lengths.tolist(), BATCH_SIZE, seed),
               "dynamic": epoch_batches(lengths.tolist(), BATCH_SIZE, seed, group_by_length=False)}
    # A few steps stand for a whole epoch: take them at evenly spaced quantiles of the epoch's batch widths
    # (10 batches drawn in order once gave grouped batches 15 tokens wide against the epoch's 20).
    for mode, epoch in batches.items():
        by_width = sorted(epoch, key=lambda b: max(lengths[i] for i in b))
        picks = [by_width[int((k + 0.5) * len(by_width) / steps)] for k in range(steps)] if steps else []
        random.Random(seed).shuffle(picks)
        batches[mode] = epoch[:warmup] + picks
    batches["padded"] = batches["dynamic"]
    torch.manual_seed(seed)
    model = add_lora(base, LoraSettings()).to(device)
    head = init_head(spec, base.config, seed).to(device)
    model.train()
    head.train()
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)

    def step(batch, pad_to: int | None) -> float:
        arrays = collate(batch, encoder, pad_to)
        t0 = time.perf_counter()
        logits = forward(model, head, arrays, device)
        loss = loss_fn(spec, logits, to_tensors({"labels": arrays["labels"]}, device)["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # waits for the device
        return time.perf_counter() - t0

    modes = {"grouped": None, "dynamic": None, "padded": settings.max_length}
    times: dict[str, list] = {m: [] for m in modes}
    widths: dict[str, list] = {m: [] for m in modes}
    sizes: dict[str, list] = {m: [] for m in modes}
    names = list(modes)
    for i in range(warmup + steps):
        for mode in names[i % 3:] + names[:i % 3]:
            batch = [examples[j] for j in batches[mode][i]]
            seconds = step(batch, modes[mode])
            if i >= warmup:
                times[mode].append(seconds)
                sizes[mode].append(len(batch))
                widths[mode].append(modes[mode] or max(len(e.enc.input_ids) for e in batch))
    out = {
        "task": TRAIN_TASK, "batch_size": BATCH_SIZE, "steps": steps, "warmup_steps": warmup,
        "lora": LoraSettings().to_dict(), "max_length": settings.max_length, "device": device,
        "data_tokens": {"mean": round(float(lengths.mean()), 1), "p50": float(np.percentile(lengths, 50)),
                        "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max()), "n": int(lengths.size)},
    }
    for mode in modes:
        total = sum(times[mode])
        out[mode] = {"samples_per_s": round(sum(sizes[mode]) / total, 2) if total else None,
                     "step": summary(times[mode]), "mean_width": round(float(np.mean(widths[mode])), 1)}
    if out["padded"]["samples_per_s"]:  # the trainer's way (grouped) and plain dynamic padding, against 128
        for mode, key in (("grouped", "speedup"), ("dynamic", "dynamic_speedup")):
            if out[mode]["samples_per_s"]:
                out[key] = round(out[mode]["samples_per_s"] / out["padded"]["samples_per_s"], 2)
    return out
