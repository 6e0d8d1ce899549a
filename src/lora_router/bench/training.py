"""Training throughput: LoRA steps per second with and without dynamic padding."""

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

    The batches are the bundled training data of ``question_classifier`` in a
    seeded order (their real length distribution); each batch is run once
    padded to its longest example (dynamic padding) and once padded to
    ``max_length`` (128), alternating which goes first.
    """
    import torch

    from ..config import LoraSettings, TrainSettings
    from ..data import load_bundled
    from ..encoding import TextEncoder
    from ..modeling.base import load_base
    from ..modeling.heads import init_head
    from ..tasks import get_task
    from ..training.examples import collate, make_examples
    from ..training.loop import add_lora, forward, loss_fn, to_tensors

    spec = get_task(TRAIN_TASK)
    settings = TrainSettings(batch_size=BATCH_SIZE)
    base, tokenizer = load_base(str(base_dir))
    encoder = TextEncoder(tokenizer, settings.max_length)
    examples = make_examples(spec, load_bundled(TRAIN_TASK, "train"), encoder)
    random.Random(seed).shuffle(examples)
    lengths = np.asarray([len(e.enc.input_ids) for e in examples])
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

    modes = {"dynamic": None, "padded": settings.max_length}
    times: dict[str, list] = {m: [] for m in modes}
    widths: dict[str, list] = {m: [] for m in modes}
    n_batches = max(1, len(examples) // BATCH_SIZE)
    for i in range(warmup + steps):
        batch = examples[(i % n_batches) * BATCH_SIZE:(i % n_batches + 1) * BATCH_SIZE]
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for mode in order:
            seconds = step(batch, modes[mode])
            if i >= warmup:
                times[mode].append(seconds)
                widths[mode].append(modes[mode] or max(len(e.enc.input_ids) for e in batch))
    out = {
        "task": TRAIN_TASK, "batch_size": BATCH_SIZE, "steps": steps, "warmup_steps": warmup,
        "lora": LoraSettings().to_dict(), "max_length": settings.max_length, "device": device,
        "data_tokens": {"mean": round(float(lengths.mean()), 1), "p50": float(np.percentile(lengths, 50)),
                        "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max()), "n": int(lengths.size)},
    }
    for mode in modes:
        total = sum(times[mode])
        out[mode] = {"samples_per_s": round(BATCH_SIZE * len(times[mode]) / total, 2) if total else None,
                     "step": summary(times[mode]), "mean_width": round(float(np.mean(widths[mode])), 1)}
    if out["dynamic"]["samples_per_s"] and out["padded"]["samples_per_s"]:
        out["dynamic_speedup"] = round(out["dynamic"]["samples_per_s"] / out["padded"]["samples_per_s"], 2)
    return out
