"""The offline main job: a base, every task trained on the bundled data, sample questions.

A new user reads the demo's answers first, so each sample question carries
the route a person would give it (docs/labelling-guide.md), and the demo says how many the
adapters got right and, on a random base, why the rest went astray. The
bundled chain test set gives the same figure over 183 questions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# Each sample question and the route a person would give it (docs/labelling-guide.md).
EXPECTED_ROUTES = {
    "数据清洗流程是什么？": "answer",
    "帮我把sales_2024.csv导入到ODS层": "task",
    "ODS层和DWD层有什么区别？": "answer",
    "把/data/raw/user_log.parquet和orders.csv合并": "task",
    "Python怎么给列表排序": "general",
    "周末去哪儿吃火锅": "out_of_scope",
}
SAMPLE_QUESTIONS = tuple(EXPECTED_ROUTES)

# A random tiny base learns only with a larger step and more epochs than the
# original tool's defaults, which are meant for the pretrained bert-base-chinese.
TINY_RANDOM_SETTINGS = {"epochs": 10, "learning_rate": 5e-3, "warmup_steps": 20}


def run_demo(
    folder: str | Path,
    *,
    base_model: str | None = None,
    epochs: int | None = None,
    progress: bool = True,
    report: Callable[[str, object], None] = lambda event, payload: None,
) -> dict:
    """Create (or use) a base, train every registered task into ``folder/hub``, ask sample questions."""
    from .adapters import AdapterHub
    from .backends.torch_peft import Router
    from .config import TrainSettings
    from .modeling import init_base
    from .tasks import all_tasks
    from .training import train

    folder = Path(folder)
    random_base = base_model is None
    if base_model is None:
        base_dir = folder / "tiny-base"
        if not (base_dir / "config.json").is_file():
            init_base(base_dir, "tiny")
        base_model = str(base_dir)
        options = dict(TINY_RANDOM_SETTINGS)
    else:
        options = {}
    if epochs is not None:
        options["epochs"] = epochs
    report("base", base_model)
    hub = AdapterHub(folder / "hub")
    for spec in all_tasks():
        manifest = train(spec, base_model=base_model, hub=hub, settings=TrainSettings(**options), progress=progress)
        report("trained", manifest)
    router = Router(base_model, hub)
    answers = router.ask_batch(list(SAMPLE_QUESTIONS))
    for out in answers:
        report("answer", {"answer": out, "expected_route": EXPECTED_ROUTES[out["question"]]})
    from .evaluation.chain import bundled_chain_cases, evaluate_chain, read_chain_cases

    chain = evaluate_chain(router, read_chain_cases(bundled_chain_cases()))
    summary = {"base_model": base_model, "random_base": random_base, "hub": str(hub.root), "answers": answers,
               "samples_routed_as_expected": sum(a["route"] == EXPECTED_ROUTES[a["question"]] for a in answers),
               "chain": chain}
    report("summary", summary)
    return summary
