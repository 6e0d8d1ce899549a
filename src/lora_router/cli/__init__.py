"""The ``lora-router`` command: a root that registers one module per command group; the only package that prints.

Library errors become one-line messages and exit codes (1 failed, 2 bad input) in ``_output.ErrorsAsMessages``.
"""

import logging
import os

import click

from .. import __version__
from . import ask, bench, data, demo, eval, export, hub, improve, kb, menu, review, serve, train
from ._output import ErrorsAsMessages


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


for command in (demo.init_base_cmd, data.tasks_cmd, data.data_group, train.train_cmd, eval.eval_cmd, hub.hub_group,
                export.export_cmd, bench.bench_cmd, kb.kb_group, ask.ask_cmd, ask.chat_cmd, serve.serve_cmd,
                review.review_group, improve.improve_cmd, menu.menu_cmd, demo.demo_cmd):
    main.add_command(command)


def run() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("lora_router.progress").setLevel(logging.INFO)  # where no bar is drawn: a line per epoch
    main()
