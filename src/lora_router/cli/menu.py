"""`lora-router menu`: the original tool's numbered menu, for its users."""

import click

from ..adapters import AdapterHub
from ..config import TrainSettings
from ..tasks import get_task
from . import _options as opt
from ._output import print_answer, print_trained
from .ask import chat_loop

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

SAMPLE_QUESTIONS = ["数据清洗流程是什么？", "帮我把sales_2024.csv导入到ODS层", "ODS层和DWD层有什么区别？",
                    "Python怎么给列表排序", "今天天气怎么样"]


@click.command("menu")
@opt.base_model
@opt.hub
def menu_cmd(base_model, hub) -> None:
    """The original tool's numbered menu, for its users."""
    from ..training import train

    store = AdapterHub(hub)
    while True:
        click.echo(MENU)
        choice = click.prompt("请选择", type=click.Choice(["0", "1", "2", "3", "4"]), show_choices=False)
        if choice == "0":
            return
        if choice in {"1", "2"}:
            task = "question_classifier" if choice == "1" else "question_type_classifier"
            print_trained(train(get_task(task), base_model=base_model, hub=store, settings=TrainSettings()))
            continue
        from ..backends.torch_peft import Router

        router = Router(base_model, store)
        if choice == "3":
            for q in SAMPLE_QUESTIONS:
                print_answer(router.ask(q), router.specs)
                click.echo()
        else:
            chat_loop(router)
