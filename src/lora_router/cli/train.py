"""`lora-router train`: a LoRA adapter (and its head) per task into the adapter hub."""

import click

from ..adapters import AdapterHub
from ..config import LoraSettings, TrainSettings
from ..data import BUNDLED, infer_task_spec
from ..errors import LoraRouterError, UnknownTaskError, require
from ..tasks import all_tasks, get_task
from ..data.no_answer import NONE
from . import _options as opt
from ._output import dump, print_trained


class DataFile(click.ParamType):
    """A data file that exists, or the word `bundled`."""

    name = "FILE|bundled"

    def convert(self, value, param, ctx):
        if str(value) == BUNDLED:
            return BUNDLED
        return opt.FILE.convert(value, param, ctx)


class NoAnswerSource(DataFile):
    """A data file that exists, `bundled` or `none`."""

    name = "FILE|bundled|none"

    def convert(self, value, param, ctx):
        return NONE if str(value) == NONE else super().convert(value, param, ctx)


@click.command("train")
@click.option("--task", "task_name", required=True,
              help="Task to train, `all` for every registered task, or a new name with --data.")
@click.option("--data", "data", multiple=True, type=DataFile(), metavar="FILE|bundled",
              help="Instruction-format JSONL; repeat to merge several (exact duplicates folded, conflicting "
                   "labels refused), `bundled` for the task's bundled train split [default: bundled].")
@click.option("--prefer-last", is_flag=True,
              help="Where two data lines give one input different labels, keep the later file's label "
                   "(a correction given after the data it corrects) instead of refusing.")
@click.option("--test-data", type=opt.FILE, default=None,
              help="Held-out file for evaluation [default: bundled test split, or 20% of --data].")
@opt.kb(help="Knowledge base for question_answer [default: the bundled one].")
@click.option("--no-answer-examples", type=NoAnswerSource(), default=BUNDLED, show_default=True,
              metavar="FILE|bundled|none",
              help="question_answer: more questions no entry answers, for the no-answer decision to compare a "
                   "question with: a JSONL file (records whose output is \"\" or 通用问题/无关问题, e.g. your "
                   "question_classifier training data), `bundled` (the bundled question classifier's), or `none`.")
@opt.base_model
@opt.hub
@opt.from_settings(TrainSettings, epochs={}, batch_size={}, learning_rate={"flag": "--lr"}, warmup_steps={})
@opt.from_settings(LoraSettings, r={"flag": "--lora-r"}, alpha={"flag": "--lora-alpha"},
                   dropout={"flag": "--lora-dropout"}, target_modules={}, layers={"default": "all"})
@opt.from_settings(TrainSettings, patience={}, max_length={}, seed={}, dynamic_padding={}, group_by_length={})
@opt.quiet
@opt.json
def train_cmd(task_name, data, prefer_last, test_data, knowledge_base, no_answer_examples, base_model, hub, quiet,
              as_json, **settings) -> None:
    """Train a LoRA adapter (and its head) per task into the adapter hub.

    The data is validated first; invalid or conflicting data writes nothing.
    Each epoch is scored on the held-out split (--test-data; else the bundled
    test split when `bundled` is among --data; else 20% of the data) and the
    best epoch is kept. A log of every step goes to <hub>/logs/.

    Each training saves a new version of the adapter; the one it replaces
    stays loadable as --hub HUB@TASK=vN (`lora-router hub versions TASK`).
    task.json records every data file, its lines and how many were used.

    \b
    lora-router train --task question_classifier --base-model ./base
    lora-router train --task all --base-model ./base --hub ./hub
    lora-router train --task my_task --data my.jsonl   # a new classification task
    lora-router train --task question_classifier --data bundled --data review/labels/question_classifier.jsonl
    """
    require("torch")
    from ..training import train

    lora, train_settings = opt.take_settings(LoraSettings, settings), opt.take_settings(TrainSettings, settings)
    store = AdapterHub(hub)
    results = []
    data = list(data) or None
    for spec in _specs_to_train(task_name, data, store):
        if not as_json:
            click.secho(f"training {spec.name} on {base_model} into {store.root}", bold=True, err=True)
        manifest = train(spec, base_model=base_model, hub=store, data=data, test_data=test_data,
                         prefer_last=prefer_last, lora=lora,
                         settings=train_settings, knowledge_base=knowledge_base,
                         no_answer_examples=no_answer_examples, progress=not quiet and not as_json)
        results.append(manifest)
        if not as_json:
            print_trained(manifest)
    if as_json:
        dump([{"task": m.name, "version": m.version, "metrics": m.metrics, "best_epoch": m.best_epoch,
               "train_samples_per_second": m.train_samples_per_second, "data_files": m.data.get("files", []),
               "path": str(store.task_dir(m.name))} for m in results])


def _specs_to_train(task_name: str, data: list | None, store: AdapterHub) -> list:
    if task_name == "all":
        if data is not None and data != [BUNDLED]:
            raise LoraRouterError("--task all trains on the bundled data; give one --task with --data")
        data = None
        return all_tasks()
    try:
        return [get_task(task_name)]
    except UnknownTaskError:
        if store.has(task_name):
            return [store.spec(task_name)]
        files = [d for d in data or () if d != BUNDLED]
        if not files:
            raise
        return [infer_task_spec(task_name, files[0])]
