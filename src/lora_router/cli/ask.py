"""`lora-router ask` and `lora-router chat`: questions through the chain (or one task), from an export or a hub."""

import json
import time

import click

from ..errors import InputError
from . import _options as opt
from ._output import dump, print_answer


def source_options(fn):
    """Where the predictor comes from and how it decides, for commands that ask questions."""
    for option in (opt.thresholds(help="Confidence below which the chain stops as `uncertain` (repeatable)."),
                   opt.kb(help="Answer from this knowledge base instead of the trained one."),
                   opt.onnx(help="Use an exported ONNX folder (no PyTorch needed) instead of base + hub."),
                   opt.device, opt.cascade, opt.base_model, opt.hub):
        fn = option(fn)
    return fn


@click.command("ask")
@click.argument("question")
@click.option("--task", "only_task", default=None, help="Run one task's adapter instead of the chain.")
@source_options
@opt.json
def ask_cmd(question, only_task, as_json, **source) -> None:
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
    router = opt.build_predictor(**source)
    ask = (lambda text: _one_task(router, only_task, text)) if only_task else router.ask
    if question == "-":
        _ask_stream(ask)
        return
    out = ask(question)
    dump(out) if as_json else print_answer(out, router.specs)


def _one_task(router, task: str, text: str) -> dict:
    """One task's result in the shape of a one-step chain, so it prints and streams the same way."""
    t0 = time.perf_counter()
    result = router.predict(task, text)
    return {"question": text, "steps": [{"task": task, "result": result,
                                         "ms": round((time.perf_counter() - t0) * 1000, 3)}],
            "route": None, "file_names": result.get("file_names", []), "answer": result.get("answer") or None}


def _ask_stream(ask) -> None:
    for n, line in enumerate(click.get_text_stream("stdin", errors="replace"), start=1):
        text = line.rstrip("\n").rstrip("\r")
        try:
            out = ask(text)
        except InputError as exc:
            out = {"line": n, "question": text, "error": str(exc)}
        click.echo(json.dumps(out, ensure_ascii=False))


@click.command("chat")
@source_options
def chat_cmd(**source) -> None:
    """Ask questions one after another (empty line or `exit` to leave)."""
    router = opt.build_predictor(**source)
    click.echo("lora-router chat: type a question; `exit` or Ctrl-D leaves.")
    chat_loop(router)


def chat_loop(router) -> None:
    while True:
        try:
            text = click.prompt(click.style("问题", fg="green"), default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        if text.strip().lower() in {"", "exit", "quit", "q", "退出"}:
            return
        try:
            print_answer(router.ask(text), router.specs)
        except InputError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
        click.echo()
