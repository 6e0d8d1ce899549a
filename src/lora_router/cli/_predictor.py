"""The one place the CLI turns options into a predictor: an export (``--onnx``) or base + hub."""

from collections.abc import Sequence
from pathlib import Path

import click

from ..core.options import PredictorOptions


def parse_thresholds(items: Sequence[str] | None) -> dict[str, float]:
    """``TASK=P`` items of ``--threshold`` -> ``{task: p}``."""
    out = {}
    for item in items or ():
        task, _, value = item.partition("=")
        try:
            out[task] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: use TASK=VALUE, e.g. question_classifier=0.6") from None
    return out


def predictor_options(knowledge_base: Path | None = None, thresholds: Sequence[str] = (), device: str = "cpu",
                      chain: Path | None = None, precision: str | None = None, layout: str | None = None,
                      tasks: Sequence[str] | None = None) -> PredictorOptions:
    """The options every predictor takes, from the command line; they travel whole to serve workers and Ray."""
    return PredictorOptions(knowledge_base=knowledge_base, thresholds=parse_thresholds(thresholds), device=device,
                            chain=chain, precision=precision, layout=layout, tasks=tasks)


def build_predictor(onnx: Path | None = None, base_model: str | None = None, hub: Path | None = None, *,
                    tasks: Sequence[str] | None = None, **options):
    """``OnnxRouter`` over the export ``onnx``, else the PyTorch ``Router`` over ``base_model`` + ``hub``."""
    o = predictor_options(tasks=tasks, **options)
    if onnx:
        from ..backends.onnx import OnnxRouter

        return OnnxRouter(onnx, options=o)
    from ..backends.torch_peft import Router

    return Router(base_model, hub, options=o)
