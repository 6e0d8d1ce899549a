"""`lora-router review`: the review console in the browser, the queue in the terminal, and the labels' export."""

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ..errors import require
from ..serving.settings import API_KEY_ENV, ServeSettings
from . import _options as opt
from ._output import dump, table

CAPTURE = click.Path(file_okay=False, path_type=Path)


@click.group("review", invoke_without_command=True)
@click.option("--capture", "capture_dir", type=CAPTURE, default=None,
              help="The capture store that `serve --capture DIR` writes; labels go to DIR/labels/.")
@opt.onnx(help="Ask an export's chain from the page (no PyTorch needed).")
@click.option("--hub", "hub_dir", type=opt.FOLDER, default=None, help="Ask a hub's chain instead (development).")
@opt.base_model
@opt.kb(help="Pick entries from this knowledge base [default: the model's, else the one shipped].")
@opt.thresholds(help="Chain thresholds (repeatable).")
@opt.export_options
@click.option("--low-margin", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="A step that beat its second label by less than this is queued.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; another than 127.0.0.1 exposes captured questions (set --api-key).")
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@opt.from_settings(ServeSettings, api_key={"envvar": API_KEY_ENV, "show_envvar": True},
                   api_key_file={"type": opt.FILE})
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.pass_context
def review_group(ctx, capture_dir, onnx, hub_dir, base_model, knowledge_base, thresholds, low_margin, host, port,
                 api_key, api_key_file, log_level, **options) -> None:
    """Review what the service answered, and correct it into training data, in the browser.

    Serves a page on 127.0.0.1: a queue of captured answers ranked by what
    most deserves a look (feedback saying wrong, contradictions between
    steps, uncertain stops, low margins), each question's trace, and
    one-click or one-key corrections of the route, the scene, the type, the
    file names (select them with the mouse) and the knowledge-base entry.
    Each correction is saved at once in DIR/labels/<task>.jsonl, in the
    labelling guide's format (lora-router data check passes). The same key
    rules as `serve`: --api-key, LORA_ROUTER_API_KEY or --api-key-file.

    \b
    lora-router serve --onnx ./export --capture ./captured
    lora-router review --capture ./captured --onnx ./export     # then open http://127.0.0.1:8090
    lora-router review queue --capture ./captured               # the queue in the terminal
    lora-router review label --capture ./captured               # the queue with plain prompts
    lora-router review export --capture ./captured --out ./labels
    """
    if ctx.invoked_subcommand is not None:
        return
    if capture_dir is None:
        raise click.UsageError("give --capture DIR, the folder `serve --capture DIR` writes")
    require("fastapi", "serve")
    if ctx.get_parameter_source("api_key") == ParameterSource.COMMANDLINE:
        click.secho(f"warning: --api-key on the command line is visible to every user of this machine (ps); "
                    f"use {API_KEY_ENV} or --api-key-file", fg="yellow", err=True)
    settings = ServeSettings(api_key=api_key, api_key_file=api_key_file and str(api_key_file))
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.key():
        click.secho(f"warning: listening on {host} without --api-key: anyone who reaches it reads captured "
                    "questions", fg="yellow", err=True)
    if onnx is not None and hub_dir is not None:
        raise click.UsageError("give --onnx DIR or --hub DIR, not both")
    source = None
    if onnx is not None or hub_dir is not None:
        from ..backends.source import ModelSource

        source = ModelSource(onnx=onnx and str(onnx), hub=hub_dir and str(hub_dir), base_model=base_model,
                             options=opt.predictor_options(thresholds, **options))
    from ..review.console import serve_console

    def ready(url: str) -> None:
        click.echo(f"review console on {url} (store {capture_dir}; labels in {capture_dir / 'labels'}); "
                   "Ctrl-C stops", err=True)

    sys.exit(serve_console(capture_dir, source=source, knowledge_base=knowledge_base, settings=settings, host=host,
                           port=port, log_level=log_level, low_margin=low_margin, on_ready=ready))


@review_group.command("queue")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="The capture store.")
@click.option("--low-margin", default=0.2, show_default=True, type=click.FloatRange(0, 1))
@click.option("--all", "everything", is_flag=True, help="Also list answers with no reason to look.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0))
@opt.json
def queue_cmd(capture_dir: Path, low_margin: float, everything: bool, limit: int, as_json: bool) -> None:
    """Print the review queue, best first: score, times asked, route, why, question."""
    from ..capture import CaptureStore
    from ..review import review_queue

    items = review_queue(CaptureStore(capture_dir).records(), low_margin=low_margin, everything=everything)
    if as_json:
        dump({"total": len(items), "items": [i.to_dict() for i in items[:limit]]})
        return
    table([[f"{i.score:.0f}", i.count, i.answer.get("route") or "-", "; ".join(r.detail for r in i.reasons) or "-",
            i.question] for i in items[:limit]], ["score", "times", "route", "why", "question"])
    click.echo(f"{len(items)} item(s) in the queue" + (f"; the first {limit} shown" if len(items) > limit else ""))


@review_group.command("export")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="The capture store whose labels/ the console wrote.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for one <task>.jsonl per task (train on it with `lora-router train --data`).")
@opt.json
def export_cmd(capture_dir: Path, out_dir: Path, as_json: bool) -> None:
    """Write the corrections out per task, each file checked as `lora-router data check` checks it."""
    from ..review import export_labels

    counts = export_labels(capture_dir, out_dir)
    if as_json:
        dump({"out": str(out_dir), "tasks": counts})
        return
    if not counts:
        click.echo(f"no labels in {capture_dir / 'labels'} yet: correct some answers in `lora-router review` first")
        return
    for task, n in counts.items():
        click.echo(f"{out_dir / (task + '.jsonl')}: {n} line(s)")


@review_group.command("label")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="The capture store; labels go to DIR/labels/.")
@opt.kb(help="Pick entries from this knowledge base [default: the one shipped].")
@click.option("--low-margin", default=0.2, show_default=True, type=click.FloatRange(0, 1))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Items to go through.")
def label_cmd(capture_dir: Path, knowledge_base: Path | None, low_margin: float, limit: int) -> None:
    """Work through the queue with plain prompts (no browser): the route, then file names or the entry.

    Each answer is saved at once in DIR/labels/, as the console saves it.
    Enter skips an item, q stops. Items already labelled are left out.
    """
    from ..capture import CaptureStore
    from ..data.bundled import bundled_knowledge_base
    from ..errors import InputError
    from ..kb.file import read_knowledge_base
    from ..review import Correction, LabelsWriter, Teacher, review_queue

    teacher = Teacher(knowledge_base=read_knowledge_base(knowledge_base or bundled_knowledge_base()))
    writer = LabelsWriter(capture_dir)
    done = writer.labelled()
    items = [i for i in review_queue(CaptureStore(capture_dir).records(), low_margin=low_margin)
             if i.question not in done][:limit]
    routes = teacher.routes()
    menu = ", ".join(f"{n} {r}" for n, r in enumerate(routes, start=1))
    for n, item in enumerate(items, start=1):
        click.secho(f"\n[{n}/{len(items)}] {item.question}", bold=True)
        click.echo(f"  the chain said {item.answer.get('route')}; " + "; ".join(r.detail for r in item.reasons))
        choice = click.prompt(f"  route ({menu}; Enter skips, q stops)", default="", show_default=False).strip()
        if choice == "q":
            break
        if not choice.isdigit() or not 1 <= int(choice) <= len(routes):
            continue
        fields: dict = {"route": routes[int(choice) - 1]}
        if fields["route"] == "task":
            names = click.prompt("  file names as written, comma-separated (Enter: none)", default="",
                                 show_default=False)
            fields["file_names"] = [x.strip() for x in names.split(",") if x.strip()]
        elif fields["route"] == "answer":
            candidates = [c["id"] for s in item.answer.get("steps", []) for c in s["result"].get("candidates", [])]
            entry = click.prompt("  entry id" + (f" ({', '.join(candidates[:5])})" if candidates else "")
                                 + " (Enter: no entry)", default="", show_default=False).strip()
            if entry:
                fields["kb_id"] = entry
            else:
                fields["no_entry"] = True
        try:
            saved = writer.save(teacher.lines(Correction(item.question, **fields)))
        except InputError as exc:
            click.secho(f"  not saved: {exc}", fg="red")
            continue
        click.secho("  saved: " + ", ".join(f"{t} ({s})" for t, s in saved.items()), fg="green")
