"""What the benchmarks run on: a random base, hubs of random adapters, their exports, texts, the chain.

The adapters' LoRA B matrices are drawn from N(0, 0.02) instead of PEFT's
zeros, so every adapter really changes the encoder's output (and a merged
export really differs per task). Latency does not depend on weight values.
Contender (h)'s hub (``trunk_hub``) has them on the upper layers only: the
shared-trunk layout needs every task to leave the lower layers alone
(``train --layers``). Exports are made with ``lora_router.export.export_hub``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..adapters import AdapterHub
from ..config import PAIR_RANKING, LoraSettings, TaskSpec, TrainSettings
from ..errors import ConfigError, ExportError, LoraRouterError

logger = logging.getLogger(__name__)

# The tasks a question passes through on the timed chain, in order.
CHAIN_TASKS = ("question_classifier", "question_type_classifier", "file_name_pick")
# Every task of the default chain gets an adapter: "all tasks loaded" means these four.
HUB_TASKS = ("question_classifier", "question_type_classifier", "file_name_pick", "question_answer")
LENGTHS = (16, 32, 64)
LORA_B_STD = 0.02
PARITY_RECORDS = 8


@dataclass
class Fixture:
    """Paths and inputs shared by every contender."""

    base_dir: Path
    hub_dir: Path
    tasks: tuple[str, ...]
    chain_tasks: tuple[str, ...]
    texts: dict[int, str]  # token length (with [CLS]/[SEP]) -> text


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
        cut = next((c for c in range(1, len(source)) if len(tokenizer.encode(source[:c]).ids) >= n), 0)
        if len(tokenizer.encode(source[:cut]).ids) != n:
            raise ConfigError(f"cannot cut the bundled text to exactly {n} tokens")
        out[n] = source[:cut]
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
    hub_dir = random_hub(folder / "hub", base_dir, seed=seed, lora=lora)
    texts = texts_of_lengths(load_tokenizer(base_dir))
    return Fixture(base_dir, hub_dir, HUB_TASKS, CHAIN_TASKS, texts)


def random_hub(folder: str | Path, base_dir: Path, *, seed: int = 0, lora: LoraSettings | None = None) -> Path:
    """Write (once) and return a hub with a random adapter + head for each of ``HUB_TASKS``."""
    hub = AdapterHub(Path(folder))
    for i, task in enumerate(HUB_TASKS):
        if not hub.has(task):
            write_random_adapter(hub, task, base_dir, seed=seed + 1 + i, lora=lora)
    return hub.root


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
        "format": 1, "task": spec.to_dict(),
        "base_model": {"name": str(base_dir), "fingerprint": base_fp, "hidden_size": base.config.hidden_size,
                       "random": True},
        "lora": lora.to_dict(), "training": TrainSettings().to_dict(),
        "data": {"source": "random (lora_router.bench)", "n_train": 0, "n_test": 0},
        "metrics": {}, "best_epoch": 0, "history": [], "train_samples_per_second": None,
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


def upper_layers(base_dir: Path) -> str:
    """The upper half of the base's encoder layers, as ``train --layers`` takes them (6-11 for bert-base)."""
    n = int(json.loads((Path(base_dir) / "config.json").read_text("utf-8"))["num_hidden_layers"])
    return f"{n // 2}-{n - 1}" if n > 1 else "0"


def trunk_hub(fixture: Fixture, folder: str | Path, *, seed: int = 0) -> Path:
    """Write (once) and return a hub whose adapters sit on ``upper_layers`` of the fixture's base."""
    return random_hub(folder, fixture.base_dir, seed=seed, lora=LoraSettings(layers=upper_layers(fixture.base_dir)))


def export_for_bench(base_dir: Path, hub_dir: Path, out_dir: Path, *, tasks: list[str] | None = None,
                     quantize: str = "int8", layout: str = "both", gate: bool = True, progress: bool = False,
                     int8_scheme: str = "static") -> dict:
    """Export the hub; ``{"dir", "seconds", "manifest", "parity"}`` or ``{"error": reason}``.

    With ``gate`` the parity gate checks the first ``PARITY_RECORDS`` test
    records of each task (the benchmark times speed; the export's own tests
    check accuracy). On a random base an int8 model can miss the gate; the
    export is then repeated without it and the miss is recorded. Static int8
    is calibrated on each task's bundled training split (the random adapters
    were trained on nothing).
    """
    from ..data import bundled_tasks, load_bundled

    names = tasks or AdapterHub(hub_dir).tasks()
    records = {t: load_bundled(t, "test")[:PARITY_RECORDS] for t in names} if gate else None
    calibration = {t: load_bundled(t, "train") for t in names if t in bundled_tasks()}

    def export(gated: bool) -> dict:
        from ..export import export_hub  # the train extra's optimum: a failed import is a failed export

        return export_hub(str(base_dir), str(hub_dir), str(out_dir), tasks=tasks, quantize=quantize, layout=layout,
                          parity=gated, progress=progress, parity_records=records if gated else None,
                          int8_scheme=int8_scheme, calibration_records=calibration)

    parity = "passed" if gate else "not checked"
    t0 = time.perf_counter()
    try:
        try:
            manifest = export(gate)
        except LoraRouterError as exc:
            if not gate or "parity" not in str(exc).lower():
                raise
            parity = f"missed, exported without the gate: {exc}"
            logger.warning("export parity gate missed on the random base: %s", exc)
            manifest = export(False)
    except Exception as exc:  # noqa: BLE001 - a failed export is a result to report
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"dir": str(out_dir), "seconds": round(time.perf_counter() - t0, 1), "manifest": manifest,
            "parity": parity, "parity_records_per_task": PARITY_RECORDS, "quantize": quantize, "layout": layout,
            "int8_scheme": int8_scheme, "tasks": names}


def fixture_export(work: Path, size: str, *, layout: str = "both", gate: bool = True, progress: bool = False) -> Path:
    """The export (int8) of a random ``size`` fixture in ``work``, made unless ``work`` already has it."""
    out = Path(work) / f"export-{size}"
    if not (out / "manifest.json").is_file():
        fixture = build_fixture(Path(work) / f"fixture-{size}", size)
        made = export_for_bench(fixture.base_dir, fixture.hub_dir, out, layout=layout, gate=gate, progress=progress)
        if "error" in made:
            raise ExportError(f"the benchmark's export failed: {made['error']}")
    return out


def write_bench_chain(export_dir: Path, path: Path) -> Path:
    """The chain every benchmark question runs whole (``bench_chain``), for ``export_dir``'s tasks."""
    manifest = json.loads((Path(export_dir) / "manifest.json").read_text("utf-8"))
    specs = {t: TaskSpec.from_dict(info["spec"]) for t, info in manifest["tasks"].items()}
    Path(path).write_text(json.dumps(bench_chain(specs), ensure_ascii=False), "utf-8")
    return Path(path)


def bundled_questions() -> list[str]:
    """The questions of the bundled chain test set, the load of the serve and Ray benchmarks."""
    from ..data.bundled import bundled_dir

    lines = (bundled_dir() / "chain" / "test.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines]


def folder_mb(folder: str | Path) -> float:
    """Size of the files under ``folder`` in MB (MiB)."""
    return round(sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20, 1)
