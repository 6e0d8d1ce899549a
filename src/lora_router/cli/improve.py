"""`lora-router improve`: review export -> train -> compare -> export, in one command; exit 3 when not better."""

from pathlib import Path

import click

from ..config import TrainSettings
from ..errors import require
from ..evaluation.significance import ALPHA
from . import _options as opt
from ._output import dump, print_compare
from .train import DataFile


@click.command("improve")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="The capture store whose labels/ `lora-router review` wrote.")
@opt.hub
@opt.base_model
@click.option("--export-to", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The export folder to replace when the new router is better (the one `serve --onnx` runs).")
@click.option("--work", "work_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where this run's labels and report.json go [default: CAPTURE/improve/<UTC time>].")
@click.option("--data", "data", multiple=True, type=DataFile(), metavar="FILE|bundled",
              help="What each corrected task trains on besides its labels; repeatable [default: bundled].")
@click.option("--test-data", type=opt.FILE, default=None,
              help="Held-out file to score epochs and compare on [default: each task's bundled test split].")
@opt.kb(help="Knowledge base for question_answer [default: the one it was trained with].")
@opt.from_settings(TrainSettings, epochs={}, batch_size={}, learning_rate={"flag": "--lr"}, seed={}, patience={},
                   group_by_length={})
@click.option("--alpha", type=click.FloatRange(0.0001, 0.5), default=ALPHA, show_default=True,
              help="Significance level of the comparison (McNemar's test).")
@click.option("--layout", default="all", show_default=True, help="Export layouts, as `export --layout`.")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True)
@click.option("--export-version", "version", default=None, metavar="NAME",
              help="The new export's version, named in every trace [default: the time of export].")
@opt.quiet
@opt.json
def improve_cmd(capture_dir, hub, base_model, export_to, work_dir, data, test_data, knowledge_base, alpha, layout,
                quantize, version, quiet, as_json, **settings) -> None:
    """Turn a week's reviewed corrections into a better router, or say why not.

    \b
    1 labels   the corrections in CAPTURE/labels/, one checked file per task
    2 train    each corrected task on --data (bundled) + its labels: a new hub version
    3 compare  previous vs new version, on the corrections and on the test split
    4 export   only if every task is not significantly worse on the test split
               and gets more corrections right; written beside --export-to,
               parity-gated, swapped in at once

    When a task fails the gate nothing is exported, the comparisons (with the
    questions that flipped) are printed and the command exits 3, so a
    scheduled job can stop there. The export in service is untouched, and the
    hub serves what it served before: the versions the run trained are kept,
    numbered, but rejected with the reasons (`hub versions TASK` lists them;
    load one with --hub HUB@TASK=vN), so a later plain `export` cannot ship
    them. WORK/report.json keeps what was decided.

    \b
    lora-router improve --capture ./captured --hub ./hub --base-model ./base --export-to ./export
    lora-router improve --capture ./captured --hub ./hub --export-to ./export --json > week.json
    """
    require("torch")
    require("optimum.exporters.onnx", "train")
    from ..improve import STAGES, improve

    def tell(stage: str, info: dict) -> None:
        if as_json:
            return
        step = f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}"
        if stage == "labels":
            click.secho(f"{step}: " + ", ".join(f"{t} {n} line(s)" for t, n in info["labels"].items())
                        + f" -> {info['out']}", bold=True, err=True)
            for task, why in info["skipped"].items():
                click.secho(f"  skipped {task}: {why}", fg="yellow", err=True)
        elif stage == "train":
            old = f"v{info['old']}" if info["old"] else "none"
            click.secho(f"{step}: {info['task']} {old} -> v{info['new']}", bold=True, err=True)
        elif stage == "compare":
            click.secho(f"{step}: {info['task']}", bold=True, err=True)
            for name in ("labels", "test"):
                print_compare(info[name])
        else:
            click.secho(f"{step}: " + ("exported" if info["promoted"] else "refused, nothing exported"),
                        bold=True, err=True, fg="green" if info["promoted"] else "red")
            for task, v in info["rejected"].items():
                click.secho(f"  {task} v{v['rejected']} rejected, v{v['current']} current again in the hub",
                            fg="yellow", err=True)

    report = improve(capture_dir, hub, base_model, export_to, work_dir=work_dir, data=list(data) or ["bundled"],
                     test_data=test_data, settings=opt.take_settings(TrainSettings, settings),
                     alpha=alpha, layout=layout, quantize=quantize, version=version,
                     knowledge_base=knowledge_base, progress=not quiet and not as_json, on_stage=tell)
    if as_json:
        dump(report.to_dict())
    elif report.promoted:
        click.echo(f"{export_to} is now export {report.export['version']} (id {report.export['id']}); "
                   f"report: {Path(report.work_dir) / 'report.json'}")
    else:
        for reason in report.reasons:
            click.secho(f"not promoted: {reason}", fg="red")
        click.echo(f"{export_to} is unchanged; report: {Path(report.work_dir) / 'report.json'}")
    if not report.promoted:
        click.get_current_context().exit(3)
