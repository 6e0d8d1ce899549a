"""The ``lora-router`` command: the only module that prints or imports click.

Every command parses its options and calls a plain library function; errors
of the library (``LoraRouterError``) become one-line messages and exit codes:
1 for a failed command, 2 for bad input.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import warnings
from pathlib import Path

import click

from . import __version__
from .errors import DataError, InputError, LoraRouterError

BASE_ENV = "LORA_ROUTER_BASE_MODEL"


# ---------------------------------------------------------------- plumbing
def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.secho(f"warning: {message}", fg="yellow", err=True)


def handle_errors(fn):
    """Turn library errors into messages and exit codes, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except LoraRouterError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted; nothing was half written", fg="red", err=True)
            sys.exit(130)

    return wrapper


def base_option(fn):
    return click.option(
        "--base-model", envvar=BASE_ENV, default="bert-base-chinese", show_default=True, show_envvar=True,
        help="Hugging Face id (from the local cache) or folder of the base BERT.",
    )(fn)


def hub_option(fn):
    from .adapters.hub import HUB_ENV

    return click.option(
        "--hub", envvar=HUB_ENV, type=click.Path(file_okay=False, path_type=Path), default=None, show_envvar=True,
        help="Adapter hub folder [default: ~/.lora-router/hub].",
    )(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")(fn)


def _hub(path):
    from .adapters import AdapterHub

    return AdapterHub(path)


def _dump(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(_width(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(_pad(h, w) for h, w in zip(header, widths))
    click.secho(line, bold=True)
    for r in rows:
        click.echo("  ".join(_pad(str(c), w) for c, w in zip(r, widths)))


def _width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, width: int) -> str:
    return s + " " * (width - _width(s))


# ---------------------------------------------------------------- the group
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lora-router")
def main() -> None:
    """Route Chinese data-platform questions with one bert-base-chinese and a LoRA adapter per task.

    \b
    Start offline:   lora-router demo
    Train one task:  lora-router train --task file_name_pick --base-model DIR
    Ask:             lora-router ask "帮我把sales_2024.csv导入到ODS层"
    Ship ONNX:       lora-router export --out DIR --quantize int8

    The base model comes from --base-model (env LORA_ROUTER_BASE_MODEL), the
    adapters from --hub (env LORA_ROUTER_HUB, default ~/.lora-router/hub).
    """


@main.command("init-base")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="tiny: 2 layers, hidden 128 (tests, demo); base: exactly bert-base-chinese's shape (benchmarks).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@handle_errors
def init_base_cmd(folder: Path, size: str, seed: int) -> None:
    """Write a RANDOM BERT with the real bert-base-chinese tokenizer into FOLDER.

    For machines that cannot download bert-base-chinese: tests, the offline
    demo, and latency benchmarks. Its predictions mean nothing; every command
    that loads it says so.
    """
    from .modeling import init_base

    path = init_base(folder, size, seed)
    click.echo(f"wrote a random {size} base to {path} (use it with --base-model {path})")


@main.command("tasks")
@json_option
@handle_errors
def tasks_cmd(as_json: bool) -> None:
    """List the registered tasks (built-in and from the lora_router.tasks entry point)."""
    from .tasks import all_tasks

    specs = all_tasks()
    if as_json:
        _dump([s.to_dict() for s in specs])
        return
    _table([[s.name, s.instruction, s.kind, ", ".join(s.labels) or "-"] for s in specs],
           ["task", "instruction", "kind", "labels"])


# ---------------------------------------------------------------- data
@main.group("data")
def data_group() -> None:
    """Check instruction-format JSONL files; print the bundled datasets."""


@data_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hub", "hub_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also accept the instructions of this hub's custom tasks.")
@json_option
@handle_errors
def data_check(file: Path, hub_dir: Path | None, as_json: bool) -> None:
    """Validate FILE: every bad line is reported as `line N: what is wrong`; exit 1 if any.

    Checks JSON, the instruction/input/output fields, known instructions,
    labels of the task, extraction outputs that are substrings of the input,
    and duplicate inputs with conflicting outputs.
    """
    from .data.records import _read_lines, check_lines

    extra = _hub(hub_dir).specs() if hub_dir else []
    records, problems = check_lines(_read_lines(file), extra_tasks=extra)
    if as_json:
        _dump({"file": str(file), "records": len(records),
               "problems": [{"line": n, "message": m} for n, m in problems]})
    else:
        for n, msg in problems:
            click.echo(f"line {n}: {msg}")
        counts: dict[str, int] = {}
        for r in records:
            counts[r.instruction] = counts.get(r.instruction, 0) + 1
        summary = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        verdict = click.style("ok", fg="green") if not problems else click.style(f"{len(problems)} bad", fg="red")
        click.echo(f"{file}: {len(records)} good record(s) ({summary}); {verdict}")
    if problems or not records:
        sys.exit(1)


@data_group.command("dump")
@click.argument("task")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@handle_errors
def data_dump(task: str, split: str) -> None:
    """Print a bundled split of TASK as JSONL (e.g. to start your own file)."""
    from .data import load_bundled

    for r in load_bundled(task, split):
        click.echo(json.dumps(r.to_json(), ensure_ascii=False))


# ---------------------------------------------------------------- train / eval
@main.command("train")
@click.option("--task", "task_name", required=True,
              help="Task to train, `all` for every registered task, or a new name with --data.")
@click.option("--data", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Instruction-format JSONL [default: the bundled data of the task].")
@click.option("--test-data", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Held-out file for evaluation [default: bundled test split, or 20% of --data].")
@click.option("--kb", "knowledge_base", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Knowledge base for question_answer [default: the bundled one].")
@base_option
@hub_option
@click.option("--epochs", default=5, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", "learning_rate", default=2e-4, show_default=True, type=float)
@click.option("--warmup-steps", default=50, show_default=True)
@click.option("--lora-r", default=16, show_default=True)
@click.option("--lora-alpha", default=32, show_default=True)
@click.option("--lora-dropout", default=0.1, show_default=True, type=float)
@click.option("--target-modules", default="query,value", show_default=True)
@click.option("--layers", default="all", show_default=True,
              help="Encoder layers that get LoRA, e.g. 6-11: with every task on the same upper layers, "
                   "`export --layout trunk` runs the lower layers once per question for the whole chain.")
@click.option("--max-length", default=128, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--no-dynamic-padding", is_flag=True, help="Pad every batch to --max-length (slower).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
@handle_errors
def train_cmd(task_name, data, test_data, knowledge_base, base_model, hub, epochs, batch_size, learning_rate,
              warmup_steps, lora_r, lora_alpha, lora_dropout, target_modules, layers, max_length, seed,
              no_dynamic_padding, quiet, as_json) -> None:
    """Train a LoRA adapter (and its head) per task into the adapter hub.

    The data is validated first; invalid data writes nothing. Each epoch is
    scored on the held-out split and the best epoch is kept. A log of every
    step goes to <hub>/logs/.

    \b
    lora-router train --task question_classifier --base-model ./base
    lora-router train --task all --base-model ./base --hub ./hub
    lora-router train --task my_task --data my.jsonl   # a new classification task
    """
    from .config import LoraSettings, TrainSettings
    from .errors import require

    require("torch")
    from .training import train

    lora = LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=target_modules,
                        layers=layers)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             warmup_steps=warmup_steps, max_length=max_length, seed=seed,
                             dynamic_padding=not no_dynamic_padding)
    store = _hub(hub)
    specs = _specs_to_train(task_name, data, store)
    results = []
    for spec in specs:
        if not as_json:
            click.secho(f"training {spec.name} on {base_model} into {store.root}", bold=True, err=True)
        manifest = train(spec, base_model=base_model, hub=store, data=data, test_data=test_data, lora=lora,
                         settings=settings, knowledge_base=knowledge_base, progress=not quiet and not as_json)
        results.append(manifest)
        if not as_json:
            _print_metrics(spec.name, manifest.metrics, manifest)
    if as_json:
        _dump([{"task": m.name, "metrics": m.metrics, "best_epoch": m.best_epoch,
                "train_samples_per_second": m.train_samples_per_second,
                "path": str(store.task_dir(m.name))} for m in results])


def _specs_to_train(task_name: str, data, store):
    from .data import infer_task_spec
    from .errors import UnknownTaskError
    from .tasks import all_tasks, get_task

    if task_name == "all":
        if data is not None:
            raise LoraRouterError("--task all trains on the bundled data; give one --task with --data")
        return all_tasks()
    try:
        return [get_task(task_name)]
    except UnknownTaskError:
        if store.has(task_name):
            return [store.spec(task_name)]
        if data is None:
            raise
        return [infer_task_spec(task_name, data)]


def _print_label_tables(m: dict) -> None:
    """Per-label precision/recall/F1 and the confusion matrix of a classification task's metrics."""
    rows = [[label, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])]
            for label, v in m["per_label"].items()]
    _table(rows, ["label", "precision", "recall", "f1", "support"])
    click.echo("confusion matrix (rows gold, columns predicted):")
    _table([[lab, *map(str, row)] for lab, row in zip(m["labels"], m["confusion_matrix"])],
           ["", *[str(i) for i in range(len(m["labels"]))]])


def _print_metrics(task: str, m: dict, manifest=None) -> None:
    if "accuracy" in m:
        click.echo(f"{task}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']})")
        _print_label_tables(m)
    elif "top1" in m:
        click.echo(f"{task}: top-1 {m['top1']:.4f}  MRR {m['mrr']:.4f}  no-answer P {m['no_answer_precision']:.4f} "
                   f"R {m['no_answer_recall']:.4f}  (n={m['n']}, answerable {m['n_answerable']})")
    else:
        click.echo(f"{task}: exact-span precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
                   f"F1 {m['f1']:.4f}  whole-record match {m['exact_match']:.4f}  (n={m['n']})")
    if manifest:
        click.echo(f"  best epoch {manifest.best_epoch}, {manifest.train_samples_per_second} samples/s, "
                   f"log {manifest.log}")
        base = (manifest.baseline or {}).get("metrics")
        if base:  # the same figure of the simple baseline (training/baseline.py), on the same split
            key = "accuracy" if "accuracy" in m else "top1" if "top1" in m else "f1"
            click.echo(f"  baseline ({manifest.baseline['name']}): {key} {base[key]:.4f}")
        cal = manifest.calibration
        if cal:
            click.echo(f"  confidence: temperature {cal['temperature']:.3g}, ECE {cal['ece_before']:.4f} -> "
                       f"{cal['ece_after']:.4f} on the {cal['fitted_on']} it was fitted on")


_BUNDLED_CHAIN = "<bundled>"


@main.command("eval")
@click.option("--task", "task_name", default=None, help="Trained task to score.")
@click.option("--chain", "chain_file", is_flag=False, flag_value=_BUNDLED_CHAIN, default=None, metavar="[FILE]",
              help="Score the whole chain instead, on questions with their expected route, file names and "
                   "knowledge-base id [FILE default: the bundled chain test set].")
@click.option("--data", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Instruction-format JSONL [default: the bundled test split].")
@click.option("--kb", "knowledge_base", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Knowledge base for question_answer.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a confusion-matrix picture (PNG) and beside it a reliability diagram (NAME.reliability.png).")
@click.option("--onnx", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Score an exported ONNX folder instead of base + hub.")
@click.option("--threshold", "thresholds", multiple=True, metavar="TASK=P", help="Chain thresholds (with --chain).")
@click.option("--no-baseline", is_flag=True, help="Do not fit and score the simple baseline.")
@base_option
@hub_option
@json_option
@handle_errors
def eval_cmd(task_name, chain_file, data, knowledge_base, plot, onnx, thresholds, no_baseline, base_model, hub,
             as_json) -> None:
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
        _eval_chain(chain_file, base_model, hub, onnx, knowledge_base, thresholds, as_json)
        return
    if not task_name:
        raise click.UsageError("give --task TASK (one adapter) or --chain [FILE] (the whole chain)")
    from .data import load_bundled, read_records, records_for
    from .evaluation.tasks import baseline, evaluate, plot_confusion, plot_reliability, reliability_path

    if onnx:
        from .backends.onnx import OnnxRouter

        router = OnnxRouter(onnx, tasks=[task_name], knowledge_base=knowledge_base)
    else:
        from .backends.torch_peft import Router

        router = Router(base_model, _hub(hub), tasks=[task_name], knowledge_base=knowledge_base)
    spec = router.specs[task_name]
    records = records_for(read_records(data, extra_tasks=[spec]), spec) if data else load_bundled(task_name, "test")
    if not records:
        raise DataError(str(data), [(0, f"no records with instruction {spec.instruction!r}")])
    metrics = evaluate(router, task_name, records)
    base = None if no_baseline else baseline(router, task_name, records)
    pictures = []
    if plot and "confusion_matrix" in metrics:
        plot_confusion(metrics, str(plot), title=task_name)
        pictures.append(f"confusion matrix: {plot}")
        plot_reliability(metrics["calibration"], reliability_path(str(plot)), title=task_name)
        pictures.append(f"reliability diagram: {reliability_path(str(plot))}")
    if as_json:
        _dump({"task": task_name, **metrics, **({"baseline": base} if base else {})})
        return
    _print_eval(task_name, metrics, base, "the bundled test split" if data is None else str(data))
    for line in pictures:
        click.echo(line)


_EVAL_FIGURES = {  # (key, name) of the figures eval shows adapter vs baseline
    "classification": [("accuracy", "accuracy"), ("macro_f1", "macro-F1")],
    "span": [("precision", "exact-span precision"), ("recall", "exact-span recall"), ("f1", "exact-span F1"),
             ("exact_match", "whole-record match")],
    "ranking": [("top1", "top-1"), ("mrr", "MRR"), ("no_answer_precision", "no-answer precision"),
                ("no_answer_recall", "no-answer recall"), ("answer_accuracy", "answer accuracy")],
}


def _print_eval(task: str, m: dict, base: dict | None, where: str) -> None:
    kind = "classification" if "accuracy" in m else "ranking" if "top1" in m else "span"
    b = (base or {}).get("metrics")
    click.secho(f"{task} on {where} (n={m['n']})", bold=True)
    rows = [[name, f"{m[key]:.4f}", f"{b[key]:.4f}" if b else "-"] for key, name in _EVAL_FIGURES[kind]]
    cal = m.get("calibration")
    if cal:
        rows.append(["ECE (calibration error)", f"{cal['ece_after']:.4f}", f"{b['ece']:.4f}" if b else "-"])
        rows.append(["ECE before temperature", f"{cal['ece_before']:.4f}", ""])
        if "ece_after_cross_fitted" in cal:
            rows.append(["ECE after, cross-fitted", f"{cal['ece_after_cross_fitted']:.4f}", ""])
    _table(rows, ["figure", "adapter", "baseline"])
    if b:
        fitted = f", fitted on {base['trained_on']}" if base.get("trained_on") else ""
        click.echo(f"baseline: {base['name']}{fitted}")
    elif base is not None:
        click.echo(f"baseline: none ({base.get('reason')})")
    if cal:
        if cal["fitted_on"]:
            same = (" (these same records: the ECE after it is optimistic; the cross-fitted figure fits T on "
                    "4/5 of them and measures the other 1/5)") if cal["fitted_on_this_data"] else ""
            click.echo(f"confidence: temperature {cal['temperature']:.3g} fitted on the {cal['fitted_on']} at "
                       f"training{same}")
        else:
            click.echo("confidence: no temperature (adapter trained before calibration; retrain to fit one)")
    if kind == "classification":
        _print_label_tables(m)


def _eval_chain(chain_file, base_model, hub, onnx, knowledge_base, thresholds, as_json) -> None:
    from .evaluation.chain import bundled_chain_cases, evaluate_chain, read_chain_cases

    path = bundled_chain_cases() if chain_file == _BUNDLED_CHAIN else Path(chain_file)
    cases = read_chain_cases(path)
    router = _router(base_model, hub, onnx, knowledge_base, thresholds)
    result = evaluate_chain(router, cases)
    if as_json:
        _dump({"file": str(path), "router": router.source, **result})
        return
    r = result
    click.secho(f"chain on {path} ({router.source}), n={r['n']}", bold=True)
    click.echo(f"route accuracy {r['route_accuracy']:.4f}   end to end (route, files, answer all right) "
               f"{r['end_to_end_accuracy']:.4f}   uncertain {r['uncertain']}")
    _table([[route, _fmt(v["precision"]), _fmt(v["recall"]), str(v["support"]), str(v["predicted"])]
            for route, v in r["routes"].items()], ["route", "precision", "recall", "expected", "given"])
    fn, an = r["file_names"], r["answers"]
    click.echo(f"file names, exact set, on task questions routed to task: {_fmt(fn['exact_set_accuracy'])} "
               f"(n={fn['n']})")
    click.echo(f"answers, right entry or rightly none, on answer questions routed to answer: "
               f"{_fmt(an['accuracy'])} (n={an['n']})")
    click.echo("route confusion (rows expected, columns given):")
    conf = r["route_confusion"]
    _table([[g, *map(str, row)] for g, row in zip(conf["rows"], conf["matrix"])], ["", *conf["labels"]])
    if r["wrong_at"]:
        seen = {k for v in r["wrong_at"].values() for k in v}
        reasons = [k for k in ("label", "below threshold", "not trained", "file names", "answer") if k in seen]
        reasons += sorted(seen - set(reasons))
        click.echo("where the wrong ones went wrong (the first step that decided against the expected route, "
                   "or the end step that gave the wrong files or answer):")
        _table([[step, *[str(v.get(k, "")) for k in reasons]] for step, v in r["wrong_at"].items()],
               ["step", *reasons])


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


# ---------------------------------------------------------------- hub
@main.group("hub")
def hub_group() -> None:
    """List, show and remove trained adapters."""


@hub_group.command("list")
@hub_option
@json_option
@handle_errors
def hub_list(hub, as_json) -> None:
    """Every task with an adapter in the hub, with its headline metric."""
    store = _hub(hub)
    rows = []
    for task in store.tasks():
        m = store.manifest(task)
        rows.append({"task": task, "kind": m.kind, "base_model": m.base_model["name"],
                     "fingerprint": m.base_model["fingerprint"], "created": m.created,
                     "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float))},
                     "path": str(store.task_dir(task))})
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo(f"no adapters in {store.root}; train one: lora-router train --task question_classifier")
        return
    _table([[r["task"], r["kind"], _headline(r["metrics"]), r["base_model"], r["created"]] for r in rows],
           ["task", "kind", "metric", "base model", "created"])


def _headline(m: dict) -> str:
    for key, name in (("macro_f1", "macro-F1"), ("f1", "span F1"), ("top1", "top-1")):
        if key in m:
            return f"{name} {m[key]:.3f}"
    return "-"


@hub_group.command("show")
@click.argument("task")
@hub_option
@handle_errors
def hub_show(task, hub) -> None:
    """Print TASK's task.json (spec, base, settings, data hash, metrics, versions)."""
    _dump(_hub(hub).manifest(task).to_dict())


@hub_group.command("remove")
@click.argument("task")
@hub_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def hub_remove(task, hub, yes) -> None:
    """Delete TASK's adapter from the hub."""
    store = _hub(hub)
    store.manifest(task)
    if not yes:
        click.confirm(f"remove adapter {task!r} from {store.root}?", abort=True)
    store.remove(task)
    click.echo(f"removed {task}")


# ---------------------------------------------------------------- export / bench
@main.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--tasks", default=None, help="Comma-separated tasks [default: every task in the hub].")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True,
              help="Also write dynamic int8 models, configured for this CPU.")
@click.option("--layout", default="all", show_default=True,
              help="merged: one model per task; shared: one encoder + an .onnx_adapter and a head per task; "
                   "multi: every task in one graph, the chain in one call; trunk: as multi, the layers below "
                   "every adapter run once per question (adapters trained with --layers); both: merged,shared; "
                   "all: merged,shared,multi. Several: comma-separated.")
@click.option("--no-parity", is_flag=True, help="Skip the parity gate (not recommended).")
@click.option("--kb", "knowledge_base", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Knowledge base to ship [default: the one question_answer was trained with].")
@click.option("--threshold", "thresholds", multiple=True, metavar="TASK=P", help="Chain thresholds to ship.")
@click.option("--int8-max-drop", default=1.0, show_default=True, type=float, metavar="POINTS",
              help="How far int8 may score the task's own metric below PyTorch (percentage points).")
@base_option
@hub_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
@handle_errors
def export_cmd(out, tasks, quantize, layout, no_parity, knowledge_base, thresholds, int8_max_drop, base_model, hub,
               quiet, as_json) -> None:
    """Merge each adapter into the base and write ONNX models that run without PyTorch.

    Each model is checked against the PyTorch router on the task's held-out
    split (fp32: max |Δlogit| <= 1e-4 and every label/span the same; int8: the
    task's own metric, accuracy / exact-span F1 / top-1, at most --int8-max-drop
    points below PyTorch, with label agreement and near-ties reported beside it);
    a missed bound fails naming the task and the figure, and nothing is
    written. Run the result with `lora-router ask --onnx DIR` or
    `lora_router.backends.onnx.OnnxRouter(DIR)`.
    """
    from .errors import require

    require("optimum.onnxruntime")
    from .export import export_hub

    manifest = export_hub(base_model, _hub(hub), out, tasks=tasks.split(",") if tasks else None, quantize=quantize,
                          layout=layout, parity=not no_parity, progress=not quiet and not as_json,
                          knowledge_base=knowledge_base, thresholds=_parse_thresholds(thresholds) or None,
                          int8_max_drop=int8_max_drop)
    if as_json:
        _dump(manifest.to_dict())
        return
    click.echo(f"exported {', '.join(manifest.tasks)} to {out}")
    if manifest.parity:
        _print_parity(manifest.parity)


def _print_parity(report: dict) -> None:
    rows = []
    for task, layouts in report.items():
        for layout, precisions in layouts.items():
            for precision, f in precisions.items():
                agreement = next((f[k] for k in ("label_agreement", "answer_agreement", "span_agreement") if k in f),
                                 None)
                ties = f.get("near_ties", f.get("near_tie_tokens"))
                rows.append([task, layout, precision, f.get("metric", "-"),
                             f"{f['metric_pytorch']:.2f}" if "metric_pytorch" in f else "-",
                             f"{f['metric_onnx']:.2f}" if "metric_onnx" in f else "-",
                             f"{f['metric_drop_points']:+.2f}" if "metric_drop_points" in f else "-",
                             f"{agreement:.2%}" if agreement is not None else "-",
                             "-" if ties is None else str(ties) + (" tokens" if "near_tie_tokens" in f else ""),
                             f"{f['max_abs_logit_diff']:.2g}"])
    click.echo("parity gate (held-out split; drop = PyTorch minus ONNX, in points; near-ties: top-2 gap < 0.05):")
    _table(rows, ["task", "layout", "precision", "metric", "pytorch", "onnx", "drop", "agreement", "near-ties",
                  "max |Δlogit|"])


@main.command("bench")
@click.option("--size", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="tiny: a quick check of the harness; base: bert-base-chinese's exact shape (minutes).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Where results.json, results.md and chart.png go.")
@click.option("--runs", type=int, default=None, help="Timed runs per figure [default: 50].")
@click.option("--serve", "serve_mode", is_flag=True,
              help="Benchmark `lora-router serve` instead: requests/s and p50/p99 at 1, 8, 32 clients, dynamic "
                   "batching on and off, against in-process OnnxRouter.ask.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="With --serve: the export to serve [default: a random model of --size, exported int8].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def bench_cmd(size, device, out_dir, runs, serve_mode, export_dir, quiet) -> None:
    """Measure latency, memory, cold start and training: the original tool's way against the router and ONNX.

    Builds a random model of the chosen size (latency does not depend on the
    weight values) with random adapters, times every contender interleaved in
    rounds, and writes results.json, a markdown table and a chart.
    """
    from .errors import require

    if serve_mode:
        require("fastapi", "serve")
        from .bench.serve import run_serve_bench

        run_serve_bench(out_dir, size=size, export_dir=export_dir, requests=runs or 200, progress=not quiet)
        click.echo((out_dir / "results.md").read_text("utf-8"))
        click.echo(f"written: {out_dir / 'results.json'}, {out_dir / 'results.md'}")
        return
    require("torch")
    from .bench import run_bench

    run_bench(size=size, device=device, out_dir=out_dir, runs=runs, progress=not quiet)
    click.echo((out_dir / "results.md").read_text("utf-8"))
    click.echo(f"written: {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'chart.png'}")


# ---------------------------------------------------------------- knowledge base
@main.group("kb")
def kb_group() -> None:
    """Check knowledge-base files for question_answer."""


@kb_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@handle_errors
def kb_check(file: Path, as_json: bool) -> None:
    """Validate a knowledge base: `line N: what is wrong` for every bad line; exit 1 if any.

    Entries are JSON lines {"id", "question" or "questions": [...], "answer"}.
    Checks JSON, fields, empty questions and answers, duplicate ids and
    phrasings used by two entries.
    """
    from .kb import check_knowledge_base

    problems = check_knowledge_base(file)
    if as_json:
        _dump({"file": str(file), "problems": [{"line": n, "message": m} for n, m in problems]})
    else:
        for n, msg in problems:
            click.echo(f"line {n}: {msg}" if n else msg)
        click.echo(f"{file}: " + (click.style("ok", fg="green") if not problems
                                  else click.style(f"{len(problems)} bad", fg="red")))
    if problems:
        sys.exit(1)


# ---------------------------------------------------------------- ask / chat / menu / demo
def _router(base_model, hub, onnx, knowledge_base, thresholds, device="cpu"):
    parsed = _parse_thresholds(thresholds)
    if onnx:
        from .backends.onnx import OnnxRouter

        return OnnxRouter(onnx, device=device, knowledge_base=knowledge_base, thresholds=parsed or None)
    from .errors import require

    require("torch")
    from .backends.torch_peft import Router

    return Router(base_model, _hub(hub), thresholds=parsed, knowledge_base=knowledge_base, device=device)


def _parse_thresholds(items) -> dict[str, float]:
    out = {}
    for item in items or ():
        task, _, value = item.partition("=")
        try:
            out[task] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: use TASK=VALUE, e.g. question_classifier=0.6") from None
    return out


def router_options(fn):
    fn = click.option("--threshold", "thresholds", multiple=True, metavar="TASK=P",
                      help="Confidence below which the chain stops as `uncertain` (repeatable).")(fn)
    fn = click.option("--kb", "knowledge_base", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                      default=None, help="Answer from this knowledge base instead of the trained one.")(fn)
    fn = click.option("--onnx", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
                      help="Use an exported ONNX folder (no PyTorch needed) instead of base + hub.")(fn)
    fn = click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)(fn)
    return hub_option(base_option(fn))


@main.command("serve")
@click.option("--onnx", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Serve an export folder with onnxruntime (no PyTorch needed).")
@click.option("--hub", "hub_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Serve a hub with the PyTorch router instead (development).")
@base_option
@click.option("--kb", "knowledge_base", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Answer from this knowledge base instead of the one shipped (it may change while serving).")
@click.option("--threshold", "thresholds", multiple=True, metavar="TASK=P", help="Chain thresholds (repeatable).")
@click.option("--chain", "chain_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Run this chain spec (JSON) instead of the one shipped with the models.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default=None,
              help="Export precision to serve [default: int8 when exported]. int8 scores move slightly with what "
                   "else is in the batch; fp32 answers do not.")
@click.option("--layout", default=None, help="Export layout to serve [default: the fastest exported].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 exposes the service to the network (set --api-key).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes on one port, each with its own models (and its own /metrics).")
@click.option("--max-batch-tokens", default=8192, show_default=True, type=click.IntRange(1),
              help="Padded tokens (rows x longest) in one forward pass.")
@click.option("--max-batch-requests", default=32, show_default=True, type=click.IntRange(1),
              help="Questions in one forward pass; 1 turns dynamic batching off.")
@click.option("--max-wait-ms", default=2.0, show_default=True, type=click.FloatRange(0, 1000),
              help="How long a batch waits for more questions while others are in flight.")
@click.option("--max-concurrent-requests", default=512, show_default=True, type=click.IntRange(1),
              help="Requests in flight before new ones get 429 with Retry-After.")
@click.option("--max-client-batch", default=64, show_default=True, type=click.IntRange(1),
              help="Questions (or inputs) in one request; more is 413.")
@click.option("--max-question-chars", default=10_000, show_default=True, type=click.IntRange(1),
              help="Longest question accepted (413 above); longer than the model takes is cut with a warning.")
@click.option("--api-key", envvar="LORA_ROUTER_API_KEY", show_envvar=True, default=None,
              help="Require Authorization: Bearer KEY on every endpoint but /health.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser calls from this origin (repeatable); no CORS by default.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--engine", type=click.Choice(["uvicorn", "ray"]), default="uvicorn", show_default=True,
              help="uvicorn: one machine. ray: replicas on a Ray cluster (the ray extra), several exports.")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1),
              help="[ray] Replicas of the service, each with its own models.")
@click.option("--address", default=None, metavar="auto|ADDR",
              help="[ray] Join this Ray cluster (auto: the one `ray start` made here) [default: start one].")
@click.option("--export", "exports", multiple=True, metavar="ID=DIR",
              help="[ray] Also serve this export under ID (repeatable); requests name it in the "
                   "serve_multiplexed_model_id header. --onnx DIR is export 'default'.")
@click.option("--exports-root", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="[ray] Serve every export folder under DIR, by its folder name (loaded when first asked).")
@click.option("--default-export", default=None, metavar="ID",
              help="[ray] The export answering requests that name none [default: --onnx, or the only --export].")
@click.option("--max-exports-per-replica", default=3, show_default=True, type=click.IntRange(1),
              help="[ray] Exports one replica holds; the least recently used is unloaded for another.")
@click.option("--replica-cpus", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="[ray] CPUs each replica reserves (and onnxruntime threads, rounded down, at least 1).")
@click.option("--ship", is_flag=True,
              help="[ray] Upload --exports-root with the job (at most 512 MiB zipped) instead of reading it from "
                   "a path every node shares.")
@handle_errors
def serve_cmd(onnx, hub_dir, base_model, knowledge_base, thresholds, chain_file, device, precision, layout, host, port,
              workers, max_batch_tokens, max_batch_requests, max_wait_ms, max_concurrent_requests, max_client_batch,
              max_question_chars, api_key, cors_origins, log_format, log_level, engine, replicas, address, exports,
              exports_root, default_export, max_exports_per_replica, replica_cpus, ship) -> None:
    """Serve the chain over HTTP: POST /v1/ask, /v1/tasks/TASK/predict, /metrics, /docs.

    Needs the serve extra: pip install "lora-router[serve]". Concurrent
    requests are batched per chain step. SIGTERM stops after answering what
    is in flight; SIGHUP reloads the export (a damaged one is refused and the
    old models keep serving).

    \b
    lora-router serve --onnx ./export
    curl -s localhost:8080/v1/ask -d '{"question": "帮我把sales_2024.csv导入到ODS层"}'
    curl -s localhost:8080/v1/tasks/question_classifier/predict -d '{"inputs": "数据清洗流程是什么？"}'
    lora-router serve --hub ./hub --base-model ./base --port 9000 --log-format json
    lora-router serve --engine ray --onnx ./export --replicas 2
    lora-router serve --engine ray --address auto --exports-root /mnt/exports --default-export team-a
    """
    from .errors import require

    require("fastapi", "serve")
    from .serving import ModelSource, ServeSettings
    from .serving.host import serve

    settings = ServeSettings(max_batch_tokens=max_batch_tokens, max_batch_requests=max_batch_requests,
                             max_wait_ms=max_wait_ms, max_concurrent_requests=max_concurrent_requests,
                             max_client_batch=max_client_batch, max_question_chars=max_question_chars,
                             api_key=api_key, cors_origins=list(cors_origins), log_format=log_format)
    if engine == "ray":
        if hub_dir is not None or workers > 1:
            raise click.UsageError("--engine ray serves exports (--onnx, --export, --exports-root) and scales "
                                   "with --replicas; --hub and --workers are for --engine uvicorn")
        _serve_on_ray(onnx, exports, exports_root, default_export, max_exports_per_replica, settings,
                      dict(knowledge_base=knowledge_base and str(knowledge_base),
                           thresholds=_parse_thresholds(thresholds), device=device, precision=precision,
                           layout=layout, chain=chain_file and str(chain_file)),
                      replicas=replicas, replica_cpus=replica_cpus, address=address, host=host, port=port,
                      ship=ship, log_format=log_format, log_level=log_level)
        return
    if onnx is None and hub_dir is None:
        raise click.UsageError("give --onnx DIR (an export) or --hub DIR (a hub, for development)")
    if onnx is not None:
        from .backends.onnx import read_manifest

        read_manifest(onnx)  # a folder that is not an export fails here, before the server starts
    from .core.options import PredictorOptions

    options = PredictorOptions(knowledge_base=knowledge_base, thresholds=_parse_thresholds(thresholds),
                               device=device, precision=precision, layout=layout, chain=chain_file)
    source = ModelSource(onnx=onnx and str(onnx), hub=hub_dir and str(hub_dir), base_model=base_model,
                         options=options)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.secho(f"warning: listening on {host} without --api-key: anyone who reaches it can ask", fg="yellow",
                    err=True)
    sys.exit(serve(source, settings, host=host, port=port, workers=workers, log_level=log_level))


def _serve_on_ray(onnx, exports, exports_root, default_export, max_exports_per_replica, settings, options, *,
                  replicas, replica_cpus, address, host, port, ship, log_format, log_level) -> None:
    from .backends.onnx import read_manifest
    from .serving.host import configure_logging
    from .serving.ray import DEFAULT_EXPORT_ID, EXPORT_HEADER, ExportCatalog, serve_exports

    folders = {DEFAULT_EXPORT_ID: onnx} if onnx is not None else {}
    for item in exports:
        export_id, sep, folder = item.partition("=")
        if not sep or not export_id or not folder:
            raise click.BadParameter(f"{item!r} is not ID=DIR", param_hint="--export")
        folders[export_id] = Path(folder)
    for folder in folders.values():
        read_manifest(folder)  # a folder that is not an export fails here, before the cluster starts
    # Absolute paths: replicas run in other processes, on other nodes, and must find the same folders.
    catalog = ExportCatalog(exports={k: str(Path(v).resolve()) for k, v in folders.items()},
                            root=exports_root and str(exports_root.resolve()),
                            default=default_export or (DEFAULT_EXPORT_ID if onnx is not None else None),
                            max_exports_per_replica=max_exports_per_replica)
    configure_logging(log_format, log_level)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        click.secho(f"warning: listening on {host} without --api-key: anyone who reaches it can ask", fg="yellow",
                    err=True)

    def ready(url: str) -> None:
        known = catalog.known()
        click.echo(f"serving on Ray Serve at {url} ({replicas} replica{'s' * (replicas > 1)}; exports: "
                   f"{', '.join(known)}; default: {catalog.default or 'none'})")
        click.echo(f"name an export with the header {EXPORT_HEADER}: ID; Ctrl-C or SIGTERM stops")

    sys.exit(serve_exports(catalog, options, settings, replicas=replicas, replica_cpus=replica_cpus,
                           address=address, host=host, port=port, ship=ship, on_ready=ready))


def _print_answer(out: dict) -> None:
    rows = []
    for step in out["steps"]:
        res = step["result"]
        if "predicted_label" in res:
            what, conf = res["predicted_label"], f"{res['confidence']:.3f}"
        elif "file_names" in res:
            what, conf = ", ".join(res["file_names"]) or "(no file)", "-"
        else:
            what = (res.get("kb_id") or "(no answer)")
            conf = f"{res.get('confidence', 0):.3f}"
        rows.append([step["task"], what, conf, f"{step['ms']:.1f}"])
    click.secho(out["question"], bold=True)
    if rows:
        _table(rows, ["step", "result", "confidence", "ms"])
    if out["route"]:
        click.echo(f"route: {click.style(out['route'], fg='cyan', bold=True)}")
    if out.get("file_names"):
        click.echo(f"files: {', '.join(out['file_names'])}")
    if out.get("answer"):
        click.echo(f"answer: {out['answer']}")
    if out.get("note"):
        click.echo(f"note: {out['note']}")


@main.command("ask")
@click.argument("question")
@click.option("--task", "only_task", default=None, help="Run one task's adapter instead of the chain.")
@router_options
@json_option
@handle_errors
def ask_cmd(question, only_task, base_model, hub, onnx, knowledge_base, thresholds, device, as_json) -> None:
    """Run the chain on QUESTION and print each step and the decision.

    QUESTION `-` reads one question per line from stdin and writes one JSON
    object per line (a bad line gets {"error": ...} and the rest go on).

    \b
    lora-router ask "帮我把sales_2024.csv导入到ODS层"
    lora-router ask --json "ODS层和DWD层有什么区别？"
    lora-router ask --onnx ./export - < questions.txt
    lora-router ask --task file_name_pick "把a.csv和b.xlsx合并"
    """
    if question != "-" and not question.strip():
        raise InputError("the question is empty; ask something, e.g. lora-router ask \"数据清洗流程是什么？\"")
    router = _router(base_model, hub, onnx, knowledge_base, thresholds, device)
    ask = (lambda text: _one_task(router, only_task, text)) if only_task else router.ask
    if question == "-":
        _ask_stream(ask)
        return
    out = ask(question)
    _dump(out) if as_json else _print_answer(out)


def _one_task(router, task: str, text: str) -> dict:
    """One task's result in the shape of a one-step chain, so it prints and streams the same way."""
    t0 = time.perf_counter()
    result = router.predict(task, text)
    out = {"question": text, "steps": [{"task": task, "result": result,
                                        "ms": round((time.perf_counter() - t0) * 1000, 3)}],
           "route": None, "file_names": result.get("file_names", []), "answer": result.get("answer") or None}
    return out


def _ask_stream(ask) -> None:
    stream = click.get_text_stream("stdin", errors="replace")
    for n, line in enumerate(stream, start=1):
        text = line.rstrip("\n").rstrip("\r")
        try:
            out = ask(text)
        except InputError as exc:
            out = {"line": n, "question": text, "error": str(exc)}
        click.echo(json.dumps(out, ensure_ascii=False))


@main.command("chat")
@router_options
@handle_errors
def chat_cmd(base_model, hub, onnx, knowledge_base, thresholds, device) -> None:
    """Ask questions one after another (empty line or `exit` to leave)."""
    router = _router(base_model, hub, onnx, knowledge_base, thresholds, device)
    click.echo("lora-router chat: type a question; `exit` or Ctrl-D leaves.")
    _chat_loop(router)


def _chat_loop(router) -> None:
    while True:
        try:
            text = click.prompt(click.style("问题", fg="green"), default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        if text.strip().lower() in {"", "exit", "quit", "q", "退出"}:
            return
        try:
            _print_answer(router.ask(text))
        except InputError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
        click.echo()


MENU = """
🤖 PEFT LoRA 数据平台训练系统
基于BERT-base-chinese的指令微调
============================================================
1. 训练问题场景分类器
2. 训练问题类型分类器
3. 测试推理功能
4. 交互式测试
0. 退出
============================================================"""

SAMPLE_QUESTIONS = [
    "数据清洗流程是什么？",
    "帮我把sales_2024.csv导入到ODS层",
    "ODS层和DWD层有什么区别？",
    "Python怎么给列表排序",
    "今天天气怎么样",
]


@main.command("menu")
@base_option
@hub_option
@handle_errors
def menu_cmd(base_model, hub) -> None:
    """The original tool's numbered menu, for its users."""
    from .config import TrainSettings
    from .tasks import get_task
    from .training import train

    store = _hub(hub)
    while True:
        click.echo(MENU)
        choice = click.prompt("请选择", type=click.Choice(["0", "1", "2", "3", "4"]), show_choices=False)
        if choice == "0":
            return
        if choice in {"1", "2"}:
            task = "question_classifier" if choice == "1" else "question_type_classifier"
            m = train(get_task(task), base_model=base_model, hub=store, settings=TrainSettings())
            _print_metrics(task, m.metrics, m)
            continue
        from .backends.torch_peft import Router

        router = Router(base_model, store)
        if choice == "3":
            for q in SAMPLE_QUESTIONS:
                _print_answer(router.ask(q))
                click.echo()
        else:
            _chat_loop(router)


@main.command("demo")
@click.option("--base-model", envvar=BASE_ENV, default=None, show_envvar=True,
              help="Base model [default: a random tiny base created in the demo folder].")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("lora-router-demo"),
              show_default=True, help="Where the demo writes its base and hub.")
@click.option("--epochs", default=None, type=int, help="[default: 10 on the random tiny base, else 5]")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def demo_cmd(base_model, folder, epochs, quiet) -> None:
    """The main job end to end, offline: a base, every task trained on the bundled data, sample questions.

    Without --base-model it creates a RANDOM tiny base (no download), so the
    metrics show the pipeline works, not what bert-base-chinese reaches.
    """
    from .errors import require

    require("torch")
    from .demo import run_demo

    def report(event: str, payload) -> None:
        if event == "base":
            click.secho(f"base model: {payload}", bold=True)
        elif event == "trained":
            click.secho(f"\n== {payload.name}", bold=True)
            _print_metrics(payload.name, payload.metrics, payload)
        elif event == "answer":
            click.echo()
            _print_answer(payload["answer"])
            got, expected = payload["answer"]["route"], payload["expected_route"]
            mark = click.style("as a person would", fg="green") if got == expected else click.style(
                f"a person would say {expected}", fg="yellow")
            click.echo(f"expected route: {expected} ({mark})")
        elif event == "summary":
            _print_demo_summary(payload)

    summary = run_demo(folder, base_model=base_model, epochs=epochs, progress=not quiet, report=report)
    click.secho(f"\ndemo hub: {summary['hub']}  (try: lora-router ask --base-model {summary['base_model']} "
                f"--hub {summary['hub']} \"数据清洗流程是什么？\")", bold=True)


def _print_demo_summary(summary: dict) -> None:
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


def run() -> None:  # pragma: no cover - console entry
    import logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("lora_router.progress").setLevel(logging.INFO)  # where no bar is drawn: a line per epoch
    main()
