"""What the benchmark runs on: a random base, a hub of random adapters, texts, the chain.

The adapters' LoRA B matrices are drawn from N(0, 0.02) instead of PEFT's
zeros, so every adapter really changes the encoder's output (and a merged
export really differs per task). Latency does not depend on weight values.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..adapters import AdapterHub
from ..config import PAIR_RANKING, LoraSettings, TaskSpec, TrainSettings
from ..errors import ConfigError

logger = logging.getLogger(__name__)

# The tasks a question passes through on the timed chain, in order.
CHAIN_TASKS = ("question_classifier", "question_type_classifier", "file_name_pick")
# Every task of the default chain gets an adapter: "all tasks loaded" means these four.
HUB_TASKS = ("question_classifier", "question_type_classifier", "file_name_pick", "question_answer")
LENGTHS = (16, 32, 64)
LORA_B_STD = 0.02


@dataclass
class Fixture:
    """Paths and inputs shared by every contender."""

    base_dir: Path
    hub_dir: Path
    tasks: tuple[str, ...]
    chain_tasks: tuple[str, ...]
    texts: dict[int, str]  # token length (with [CLS]/[SEP]) -> text

    def to_dict(self) -> dict:
        return {"base_dir": str(self.base_dir), "hub_dir": str(self.hub_dir), "tasks": list(self.tasks),
                "chain_tasks": list(self.chain_tasks), "texts": {str(k): v for k, v in self.texts.items()}}


def bench_chain(specs: dict[str, TaskSpec], tasks: tuple[str, ...] = CHAIN_TASKS) -> dict:
    """A chain spec in which every label leads to the next task: each question runs every step.

    With random adapters the default chain would stop at a random step; a
    fixed path makes the chain's cost the same for every contender and run.
    """
    steps = []
    for i, task in enumerate(tasks):
        if i + 1 < len(tasks):
            labels = specs[task].labels
            steps.append({"task": task, "threshold": 0.0, "on": {label: tasks[i + 1] for label in labels}})
        else:
            steps.append({"task": task, "route": "task"})
    return {"version": 1, "start": tasks[0], "steps": steps}


def texts_of_lengths(tokenizer, lengths: tuple[int, ...] = LENGTHS) -> dict[int, str]:
    """Questions from the bundled data cut to exactly ``n`` tokens ([CLS] and [SEP] included)."""
    from ..data import load_bundled

    source = "".join(r.input for r in load_bundled("question_classifier", "train"))
    out = {}
    for n in lengths:
        text = None
        for cut in range(1, len(source)):
            k = len(tokenizer.encode(source[:cut]).ids)
            if k == n:
                text = source[:cut]
                break
            if k > n:
                break
        if text is None:
            raise ConfigError(f"cannot cut the bundled text to exactly {n} tokens")
        out[n] = text
    return out


def build_fixture(folder: str | Path, size: str, *, seed: int = 0, lora: LoraSettings | None = None) -> Fixture:
    """Write the random base and a hub with a random adapter + head for each of ``HUB_TASKS``."""
    from ..encoding import load_tokenizer
    from ..modeling import init_base

    folder = Path(folder)
    base_dir = folder / "base"
    if not (base_dir / "config.json").is_file():
        logger.info("writing a random %s base into %s", size, base_dir)
        init_base(base_dir, size, seed=seed)
    hub = AdapterHub(folder / "hub")
    for i, task in enumerate(HUB_TASKS):
        if not hub.has(task):
            write_random_adapter(hub, task, base_dir, seed=seed + 1 + i, lora=lora)
    texts = texts_of_lengths(load_tokenizer(base_dir))
    return Fixture(base_dir, hub.root, HUB_TASKS, CHAIN_TASKS, texts)


def write_random_adapter(hub: AdapterHub, task: str, base_dir: Path, *, seed: int,
                         lora: LoraSettings | None = None) -> Path:
    """Save a hub folder for ``task`` exactly as ``train`` does, with random non-zero LoRA weights."""
    import torch

    from .. import __version__
    from ..modeling.base import fingerprint, load_base
    from ..modeling.heads import init_head
    from ..tasks import get_task
    from ..training.loop import add_lora

    spec = get_task(task)
    lora = lora or LoraSettings()
    settings = TrainSettings()
    base, _ = load_base(str(base_dir))
    base_fp = fingerprint(base)
    torch.manual_seed(seed)
    model = add_lora(base, lora)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, LORA_B_STD, generator=gen)
    head = init_head(spec, base.config, seed)
    manifest = {
        "format": 1,
        "task": spec.to_dict(),
        "base_model": {"name": str(base_dir), "fingerprint": base_fp, "hidden_size": base.config.hidden_size,
                       "random": True},
        "lora": lora.to_dict(),
        "training": settings.to_dict(),
        "data": {"source": "random (lora_router.bench)", "n_train": 0, "n_test": 0},
        "metrics": {},
        "best_epoch": 0,
        "history": [],
        "train_samples_per_second": None,
        "versions": {"lora_router": __version__, "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benchmark_random_adapter": {"seed": seed, "lora_b_std": LORA_B_STD},
    }
    if spec.kind == PAIR_RANKING:
        from ..data.bundled import bundled_knowledge_base
        from ..kb import Answerer

        manifest["knowledge_base"] = Answerer(bundled_knowledge_base()).manifest_info()

    def write(folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)
        head.save(folder)
        (folder / "task.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")

    return hub.save(task, write)
