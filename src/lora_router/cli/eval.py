"""`lora-router eval`: one adapter beside a simple baseline, or the whole chain."""

from pathlib import Path

import click

from ..config import SEQUENCE_CLASSIFICATION
from ..data import load_bundled, read_records, records_for
from ..errors import DataError
from ..evaluation.significance import ALPHA
from ..tasks import task_for_instruction
from . import _options as opt
from ._output import dump, print_chain_eval, print_compare, print_eval

_BUNDLED_CHAIN = "<bundled>"


@click.command("eval")
@click.option("--task", "task_name", default=None, help="Trained task to score.")
@click.option("--chain", "chain_file", is_flag=False, flag_value=_BUNDLED_CHAIN, default=None, metavar="[FILE]",
              help="Score the whole chain instead, on questions with their expected route, file names and "
                   "knowledge-base id [FILE default: the bundled chain test set].")
@click.option("--data", type=opt.FILE, default=None, help="Instruction-format JSONL [default: the bundled test split].")
@opt.kb(help="Knowledge base for question_answer.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a confusion-matrix picture (PNG) and beside it a reliability diagram (NAME.reliability.png).")
@opt.onnx(help="Score an exported ONNX folder instead of base + hub.")
@opt.thresholds(help="Chain thresholds (with --chain).")
@click.option("--no-baseline", is_flag=True, help="Do not fit and score the simple baseline.")
@click.option("--compare", nargs=2, default=None, metavar="OLD NEW",
              help="Compare two routers on the same questions: each a hub (with --base-model), a hub version "
                   "(HUB@v1, HUB@TASK=v1) or an export folder. Exits 3 when NEW is significantly worse.")
@click.option("--alpha", type=click.FloatRange(0.0001, 0.5), default=ALPHA, show_default=True,
              help="With --compare: significance level of McNemar's test; the intervals are 1 - alpha.")
@opt.base_model
@opt.hub
@opt.json
def eval_cmd(task_name, chain_file, data, plot, thresholds, no_baseline, compare, alpha, as_json, **source) -> None:
    """Score a trained adapter on any file, beside a simple baseline; or, with --chain, the whole chain;
    or, with --compare OLD NEW, two routers on the same questions.

    \b
    lora-router eval --task question_classifier --plot cm.png   # + cm.reliability.png
    lora-router eval --chain                                     # the bundled chain test set
    lora-router eval --chain my_questions.jsonl --onnx ./export
    lora-router eval --task question_classifier --compare ./hub@v1 ./hub
    lora-router eval --data review/labels/question_classifier.jsonl --compare ./hub@v1 ./hub
    lora-router eval --chain --compare ./export-old ./export-new --json

    --compare shows each metric of OLD and NEW, the difference with a paired
    bootstrap interval, McNemar's test on the headline (accuracy; whole-record
    match for file names; answer accuracy for answers; end to end for the
    chain) and the questions that went right -> wrong and wrong -> right. It
    exits 3 when NEW is significantly worse on the headline (p < --alpha), so
    a CI job can gate on it; 0 otherwise.

    Classification tasks also report the expected calibration error (ECE)
    before and after the temperature fitted at training. The baseline is
    fitted on the adapter's own training split: character n-gram TF-IDF +
    logistic regression for classification, a regular expression for file
    names, retrieval alone for knowledge-base answers.
    """
    if compare:
        given = click.get_current_context().get_parameter_source
        if plot or source.get("onnx") or given("hub") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--compare OLD NEW names both routers; leave out --onnx, --hub and --plot")
        _compare(compare, task_name, chain_file, data, thresholds, alpha, as_json, source["base_model"])
    elif chain_file is not None:
        if task_name or data or plot:
            raise click.UsageError("--chain scores the whole chain; leave out --task, --data and --plot")
        _eval_chain(chain_file, as_json, thresholds=thresholds, **source)
    elif not task_name:
        raise click.UsageError("give --task TASK (one adapter) or --chain [FILE] (the whole chain)")
    else:
        _eval_task(task_name, data, plot, not no_baseline, as_json, **source)


def _eval_task(task: str, data: Path | None, plot: Path | None, with_baseline: bool, as_json: bool,
               **source) -> None:
    from ..evaluation.tasks import baseline, evaluate, plot_confusion, plot_reliability, reliability_path

    router = opt.build_predictor(tasks=[task], **source)
    spec = router.specs[task]
    records = records_for(read_records(data, extra_tasks=[spec]), spec) if data else load_bundled(task, "test")
    if not records:
        raise DataError(str(data), [(0, f"no records with instruction {spec.instruction!r}")])
    metrics = evaluate(router, task, records)
    base = baseline(router, task, records) if with_baseline else None
    pictures = plot and spec.kind == SEQUENCE_CLASSIFICATION
    if pictures:
        plot_confusion(metrics, str(plot), title=task)
        plot_reliability(metrics["calibration"], reliability_path(str(plot)), title=task)
    if as_json:
        dump({"task": task, **metrics, **({"baseline": base} if base else {})})
        return
    print_eval(task, spec.kind, metrics, base, "the bundled test split" if data is None else str(data))
    if pictures:
        click.echo(f"confusion matrix: {plot}\nreliability diagram: {reliability_path(str(plot))}")


def _compare(sides: tuple[str, str], task: str | None, chain_file: str | None, data: Path | None,
             thresholds, alpha: float, as_json: bool, base_model: str) -> None:
    from ..evaluation.chain import bundled_chain_cases, read_chain_cases
    from ..evaluation.compare import WORSE, compare_chain, compare_task

    if chain_file is not None:
        if task or data:
            raise click.UsageError("--chain compares the whole chain; leave out --task and --data")
        path = bundled_chain_cases() if chain_file == _BUNDLED_CHAIN else Path(chain_file)
        cases = read_chain_cases(path)
        old, new = (_open(side, base_model, thresholds=thresholds) for side in sides)
        report, where = compare_chain(old, new, cases, alpha=alpha), str(path)
    else:
        task = task or _task_of(data)
        old, new = (_open(side, base_model, tasks=[task]) for side in sides)
        spec = old.specs[task]
        records = records_for(read_records(data, extra_tasks=[spec]), spec) if data else load_bundled(task, "test")
        if not records:
            raise DataError(str(data), [(0, f"no records with instruction {spec.instruction!r}")])
        report = compare_task(old, new, task, records, alpha=alpha)
        where = str(data) if data else "the bundled test split"
    report = {"old": sides[0], "new": sides[1], "old_router": old.source, "new_router": new.source, "data": where,
              **report}
    if as_json:
        dump(report)
    else:
        print_compare(report)
    if report["verdict"] == WORSE:
        click.get_current_context().exit(3)


def _open(side: str, base_model: str, **options):
    """An export folder (it has manifest.json) opens with onnxruntime; anything else as a hub (HUB@vN too)."""
    from ..adapters import parse_hub
    from ..backends.onnx.export_layout import MANIFEST_FILE

    if (Path(side) / MANIFEST_FILE).is_file():
        return opt.build_predictor(onnx=Path(side), **options)
    if not parse_hub(side)[0].is_dir():
        raise click.BadParameter(f"{side!r} is neither an export folder nor a hub folder", param_hint="--compare")
    return opt.build_predictor(base_model=base_model, hub=side, **options)


def _task_of(data: Path | None) -> str:
    """The one task whose instruction every record of ``data`` has (a review labels file is per task)."""
    if data is None:
        raise click.UsageError("give --task TASK, --data FILE (its task is read from the instructions) or --chain")
    found = {task_for_instruction(r.instruction).name for r in read_records(data)}
    if len(found) != 1:
        raise click.UsageError(f"{data} holds records of {', '.join(sorted(found))}; choose one with --task")
    return found.pop()


def _eval_chain(chain_file: str, as_json: bool, **source) -> None:
    from ..evaluation.chain import bundled_chain_cases, evaluate_chain, read_chain_cases

    path = bundled_chain_cases() if chain_file == _BUNDLED_CHAIN else Path(chain_file)
    cases = read_chain_cases(path)
    router = opt.build_predictor(**source)
    result = evaluate_chain(router, cases)
    if as_json:
        dump({"file": str(path), "router": router.source, **result})
    else:
        print_chain_eval(result, path, router.source)
