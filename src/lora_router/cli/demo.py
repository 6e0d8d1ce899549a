"""`lora-router demo` and `lora-router init-base`: the whole job offline, on a random base if need be."""

from pathlib import Path

import click

from ..demo import run_demo
from ..errors import require
from ..modeling import init_base
from ..tasks import all_tasks
from . import _options as opt
from ._output import print_answer, print_trained


@click.command("init-base")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="tiny: 2 layers, hidden 128 (tests, demo); base: exactly bert-base-chinese's shape (benchmarks).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
def init_base_cmd(folder: Path, size: str, seed: int) -> None:
    """Write a RANDOM BERT with the real bert-base-chinese tokenizer into FOLDER.

    For machines that cannot download bert-base-chinese: tests, the offline
    demo, and latency benchmarks. Its predictions mean nothing; every command
    that loads it says so.
    """
    path = init_base(folder, size, seed)
    click.echo(f"wrote a random {size} base to {path} (use it with --base-model {path})")


@click.command("demo")
@click.option("--base-model", envvar=opt.BASE_ENV, default=None, show_envvar=True,
              help="Base model [default: a random tiny base created in the demo folder].")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("lora-router-demo"),
              show_default=True, help="Where the demo writes its base and hub.")
@click.option("--epochs", default=None, type=int,
              help="Most epochs per task; each task stops once its held-out score stops improving "
                   "[default: 10 on the random tiny base, else 5].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(base_model, folder, epochs, quiet) -> None:
    """The main job end to end, offline: a base, every task trained on the bundled data, sample questions.

    Without --base-model it creates a RANDOM tiny base (no download), so the
    metrics show the pipeline works, not what bert-base-chinese reaches.
    """
    require("torch")
    specs = {spec.name: spec for spec in all_tasks()}  # the demo trains the registered tasks

    def report(event: str, payload) -> None:
        if event == "base":
            click.secho(f"base model: {payload}", bold=True)
        elif event == "note":
            click.echo()
            click.echo(payload)
        elif event == "trained":
            click.secho(f"\n== {payload.name}", bold=True)
            print_trained(payload)
        elif event == "answer":
            click.echo()
            print_answer(payload["answer"], specs)
            got, expected = payload["answer"]["route"], payload["expected_route"]
            mark = click.style("as a person would", fg="green") if got == expected else click.style(
                f"a person would say {expected}", fg="yellow")
            click.echo(f"expected route: {expected} ({mark})")
        elif event == "summary":
            _print_summary(payload)

    summary = run_demo(folder, base_model=base_model, epochs=epochs, progress=not quiet, report=report)
    click.secho(f"\ndemo hub: {summary['hub']}  (try: lora-router ask --base-model {summary['base_model']} "
                f"--hub {summary['hub']} \"数据清洗流程是什么？\")", bold=True)


def _print_summary(summary: dict) -> None:
    n, right = len(summary["answers"]), summary["samples_routed_as_expected"]
    chain = summary["chain"]
    click.secho(f"\n{right} of {n} sample questions went where a person would send them; on the bundled chain test "
                f"set ({chain['n']} questions) {chain['route_accuracy']:.0%} of routes are right "
                f"({chain['uncertain']} stopped as uncertain). Details: lora-router eval --chain", bold=True)
    if summary["random_base"]:
        click.echo(
            "Why not all: this demo's base is a RANDOM tiny BERT (nothing is downloaded), so each adapter learns\n"
            "from characters alone, in seconds; a character n-gram baseline often beats it here (see the baseline\n"
            "lines above). The chain's thresholds compare calibrated probabilities, so an unsure step stops as\n"
            "'uncertain' instead of guessing. With the real weights, train the same way on bert-base-chinese:\n"
            "  lora-router demo --base-model bert-base-chinese   (from the Hugging Face cache, or a folder)")
