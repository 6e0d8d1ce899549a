"""`lora-router tasks` and `lora-router data`: the registered tasks, checking and printing instruction data."""

import json
import sys
from collections import Counter
from pathlib import Path

import click

from ..adapters import AdapterHub
from ..data import load_bundled
from ..data.records import _read_lines, check_lines
from ..tasks import all_tasks
from . import _options as opt
from ._output import dump, print_problems, table


@click.command("tasks")
@opt.json
def tasks_cmd(as_json: bool) -> None:
    """List the registered tasks (built-in and from the lora_router.tasks entry point)."""
    specs = all_tasks()
    if as_json:
        dump([s.to_dict() for s in specs])
        return
    table([[s.name, s.instruction, s.kind, ", ".join(s.labels) or "-"] for s in specs],
          ["task", "instruction", "kind", "labels"])


@click.group("data")
def data_group() -> None:
    """Check instruction-format JSONL files; print the bundled datasets."""


@data_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hub", "hub_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also accept the instructions of this hub's custom tasks.")
@opt.json
def data_check(file: Path, hub_dir: Path | None, as_json: bool) -> None:
    """Validate FILE: every bad line is reported as `line N: what is wrong`; exit 1 if any.

    Checks JSON, the instruction/input/output fields, known instructions,
    labels of the task, extraction outputs that are substrings of the input,
    and duplicate inputs with conflicting outputs.
    """
    records, problems = check_lines(_read_lines(file), extra_tasks=AdapterHub(hub_dir).specs() if hub_dir else [])
    counts = ", ".join(f"{k} {v}" for k, v in Counter(r.instruction for r in records).items()) or "none"
    print_problems(file, problems, as_json, f"{len(records)} good record(s) ({counts}); ", records=len(records))
    if problems or not records:
        sys.exit(1)


@data_group.command("dump")
@click.argument("task")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
def data_dump(task: str, split: str) -> None:
    """Print a bundled split of TASK as JSONL (e.g. to start your own file)."""
    for r in load_bundled(task, split):
        click.echo(json.dumps(r.to_json(), ensure_ascii=False))
