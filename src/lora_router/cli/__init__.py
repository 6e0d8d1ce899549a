"""The ``lora-router`` command: the only package that prints or imports click.

The root makes the group and registers one module per command group; each
command parses its options and calls a plain library function. Errors of the
library (``LoraRouterError``) become one-line messages and exit codes: 1 for
a failed command, 2 for bad input (``_output.ErrorsAsMessages``).
"""

import logging
import os

import click

from .. import __version__
from ._output import ErrorsAsMessages
from .ask import ask_cmd, chat_cmd
from .bench import bench_cmd
from .data import data_group, tasks_cmd
from .demo import demo_cmd, init_base_cmd
from .eval import eval_cmd
from .export import export_cmd
from .hub import hub_group
from .kb import kb_group
from .menu import menu_cmd
from .serve import serve_cmd
from .train import train_cmd


@click.group(cls=ErrorsAsMessages, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for command in (init_base_cmd, tasks_cmd, data_group, train_cmd, eval_cmd, hub_group, export_cmd, bench_cmd,
                kb_group, ask_cmd, chat_cmd, serve_cmd, menu_cmd, demo_cmd):
    main.add_command(command)


def run() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("lora_router.progress").setLevel(logging.INFO)  # where no bar is drawn: a line per epoch
    main()
