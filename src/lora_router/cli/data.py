"""`lora-router tasks` and `lora-router data`: the registered tasks, checking and printing instruction data."""

import json
import sys
from collections import Counter
from pathlib import Path

import click

from ..adapters import AdapterHub
from . import _options as opt
from ._output import dump, table, verdict


@click.command("tasks")
@opt.json
def tasks_cmd(as_json: bool) -> None:
    """List the registered tasks (built-in and from the lora_router.tasks entry point)."""
    from ..tasks import all_tasks

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
    from ..data.records import _read_lines, check_lines

    extra = AdapterHub(hub_dir).specs() if hub_dir else []
    records, problems = check_lines(_read_lines(file), extra_tasks=extra)
    if as_json:
        dump({"file": str(file), "records": len(records),
              "problems": [{"line": n, "message": m} for n, m in problems]})
    else:
        for n, msg in problems:
            click.echo(f"line {n}: {msg}")
        counts = Counter(r.instruction for r in records)
        summary = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        click.echo(f"{file}: {len(records)} good record(s) ({summary}); {verdict(problems)}")
    if problems or not records:
        sys.exit(1)


@data_group.command("dump")
@click.argument("task")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
def data_dump(task: str, split: str) -> None:
    """Print a bundled split of TASK as JSONL (e.g. to start your own file)."""
    from ..data import load_bundled

    for r in load_bundled(task, split):
        click.echo(json.dumps(r.to_json(), ensure_ascii=False))
