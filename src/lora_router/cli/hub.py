"""`lora-router hub`: list, show and remove trained adapters."""

import click

from ..adapters import AdapterHub
from ..evaluation.metrics import headline
from . import _options as opt
from ._output import dump, table


@click.group("hub")
def hub_group() -> None:
    """List, show and remove trained adapters."""


@hub_group.command("list")
@opt.hub
@opt.json
def hub_list(hub, as_json) -> None:
    """Every task with an adapter in the hub, with its headline metric."""
    store = AdapterHub(hub)
    rows = [{"task": task, "kind": m.kind, "base_model": m.base_model["name"],
             "fingerprint": m.base_model["fingerprint"], "created": m.created,
             "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float))},
             "path": str(store.task_dir(task))} for task in store.tasks() for m in [store.manifest(task)]]
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo(f"no adapters in {store.root}; train one: lora-router train --task question_classifier")
        return
    table([[r["task"], r["kind"], headline(r["kind"], r["metrics"]), r["base_model"], r["created"]]
           for r in rows], ["task", "kind", "metric", "base model", "created"])


@hub_group.command("show")
@click.argument("task")
@opt.hub
def hub_show(task, hub) -> None:
    """Print TASK's task.json (spec, base, settings, data hash, metrics, versions)."""
    dump(AdapterHub(hub).manifest(task).to_dict())


@hub_group.command("remove")
@click.argument("task")
@opt.hub
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def hub_remove(task, hub, yes) -> None:
    """Delete TASK's adapter from the hub."""
    store = AdapterHub(hub)
    store.manifest(task)
    if not yes:
        click.confirm(f"remove adapter {task!r} from {store.root}?", abort=True)
    store.remove(task)
    click.echo(f"removed {task}")
