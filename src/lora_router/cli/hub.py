"""`lora-router hub`: list, show and remove trained adapters; list their versions and choose the current one."""

import click

from ..adapters import AdapterHub
from ..evaluation.metrics import headline
from . import _options as opt
from ._output import dump, table


@click.group("hub")
def hub_group() -> None:
    """List, show and remove trained adapters; list their versions and choose which one is current."""


@hub_group.command("list")
@opt.hub
@opt.json
def hub_list(hub, as_json) -> None:
    """Every task with an adapter in the hub, with its headline metric."""
    store = AdapterHub(hub)
    rows = [{"task": task, "version": m.version, "versions": store.versions(task), "kind": m.kind,
             "base_model": m.base_model["name"],
             "fingerprint": m.base_model["fingerprint"], "created": m.created,
             "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float))},
             "path": str(store.task_dir(task))} for task in store.tasks() for m in [store.manifest(task)]]
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo(f"no adapters in {store.root}; train one: lora-router train --task question_classifier")
        return
    table([[r["task"], f"v{r['version']}", r["kind"], headline(r["kind"], r["metrics"]), r["base_model"], r["created"]]
           for r in rows], ["task", "version", "kind", "metric", "base model", "created"])


@hub_group.command("versions")
@click.argument("task")
@opt.hub
@opt.json
def hub_versions(task, hub, as_json) -> None:
    """Every version of TASK's adapter the hub keeps, with its metric and data; load one with --hub HUB@TASK=vN.

    The current version is the one a plain --hub loads (and `export` ships);
    a rejected one (a refused `improve` rejects what it trained) is kept and
    loadable by its number, with the reasons it was rejected.

    \b
    lora-router hub versions question_classifier
    lora-router eval --task question_classifier --compare ./hub@v1 ./hub
    """
    store = AdapterHub(hub)
    store.manifest(task)
    current = store.latest_version(task)
    rows = []
    for v in store.versions(task):
        m = AdapterHub(store.root, {task: v}).manifest(task)
        rows.append({"version": v, "current": v == current, "rejected": store.rejection(task, v),
                     "created": m.created, "metrics": {k: x for k, x in m.metrics.items()
                                                       if isinstance(x, (int, float))},
                     "data": m.data.get("files") or m.data.get("source"), "kind": m.kind,
                     "hub": f"{store.root}@{task}=v{v}"})
    if as_json:
        dump(rows)
        return
    table([[f"v{r['version']}", _status(r), r["created"], headline(r["kind"], r["metrics"]),
            ", ".join(f"{f['file']} ({f['used']})" for f in r["data"]) if isinstance(r["data"], list)
            else str(r["data"]), r["hub"]] for r in rows],
          ["version", "status", "created", "metric", "data (lines used)", "load as"])
    for r in rows:
        for reason in (r["rejected"] or {}).get("reasons", []):
            click.secho(f"v{r['version']} rejected: {reason}", fg="yellow")


def _status(row: dict) -> str:
    if row["current"]:
        return "current"
    return "rejected" if row["rejected"] else ""


@hub_group.command("use")
@click.argument("task")
@click.argument("version")
@opt.hub
@opt.json
def hub_use(task, version, hub, as_json) -> None:
    """Make VERSION (e.g. v2) of TASK's adapter current again: what a plain --hub loads and `export` ships.

    The version current until now stays kept and loadable by its number. A
    rejected version (a refused `improve` rejects what it trained) may be put
    back in service this way too, by your decision.

    \b
    lora-router hub versions question_classifier
    lora-router hub use question_classifier v2
    """
    number = version[1:] if version.lower().startswith("v") else version
    if not number.isdigit():
        raise click.BadParameter(f"{version!r} is not a version; give it as vN, e.g. v2 "
                                 "(lora-router hub versions TASK lists them)", param_hint="VERSION")
    store = AdapterHub(hub)
    before = store.latest_version(task)
    store.use(task, int(number))
    result = {"task": task, "current": store.latest_version(task), "was": before,
              "adapter_sha256": store.adapter_sha256(task)}
    if as_json:
        dump(result)
        return
    click.echo(f"{task}: v{result['current']} is current (was v{before}); `lora-router export` ships it")


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
    """Delete TASK's adapter, and every earlier version of it, from the hub."""
    store = AdapterHub(hub)
    store.manifest(task)
    if not yes:
        click.confirm(f"remove adapter {task!r} from {store.root}?", abort=True)
    store.remove(task)
    click.echo(f"removed {task}")
