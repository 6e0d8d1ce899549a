"""`lora-router eval`: one adapter beside a simple baseline, or the whole chain."""

from pathlib import Path

import click

from ..config import SEQUENCE_CLASSIFICATION
from ..data import load_bundled, read_records, records_for
from ..errors import DataError
from . import _options as opt
from ._output import dump, print_chain_eval, print_eval

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
@opt.base_model
@opt.hub
@opt.json
def eval_cmd(task_name, chain_file, data, plot, thresholds, no_baseline, as_json, **source) -> None:
    """Score a trained adapter on any file, beside a simple baseline; or, with --chain, the whole chain.

    \b
    lora-router eval --task question_classifier --plot cm.png   # + cm.reliability.png
    lora-router eval --chain                                     # the bundled chain test set
    lora-router eval --chain my_questions.jsonl --onnx ./export

    Classification tasks also report the expected calibration error (ECE)
    before and after the temperature fitted at training. The baseline is
    fitted on the adapter's own training split: character n-gram TF-IDF +
    logistic regression for classification, a regular expression for file
    names, retrieval alone for knowledge-base answers.
    """
    if chain_file is not None:
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
