"""`lora-router kb`: check knowledge-base files for question_answer."""

import sys
from pathlib import Path

import click

from . import _options as opt
from ._output import print_problems


@click.group("kb")
def kb_group() -> None:
    """Check knowledge-base files for question_answer."""


@kb_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@opt.json
def kb_check(file: Path, as_json: bool) -> None:
    """Validate a knowledge base: `line N: what is wrong` for every bad line; exit 1 if any.

    Entries are JSON lines {"id", "question" or "questions": [...], "answer"}.
    Checks JSON, fields, empty questions and answers, duplicate ids and
    phrasings used by two entries.
    """
    from ..kb import check_knowledge_base

    problems = check_knowledge_base(file)
    print_problems(file, problems, as_json)
    if problems:
        sys.exit(1)
