"""The one place the CLI turns options into a predictor: an export (``--onnx``) or base + hub."""

from collections.abc import Sequence
from pathlib import Path

import click


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
                      chain: Path | None = None, precision: str | None = None, layout: str | None = None) -> dict:
    """What every predictor takes, as plain values (they travel as JSON to serve workers and Ray replicas)."""
    return dict(knowledge_base=knowledge_base and str(knowledge_base), thresholds=parse_thresholds(thresholds),
                device=device, chain=chain and str(chain), precision=precision, layout=layout)


def build_predictor(onnx: Path | None = None, base_model: str | None = None, hub: Path | None = None, *,
                    tasks: Sequence[str] | None = None, **options):
    """``OnnxRouter`` over the export ``onnx``, else the PyTorch ``Router`` over ``base_model`` + ``hub``."""
    o = predictor_options(**options)
    if onnx:
        from ..backends.onnx import OnnxRouter

        return OnnxRouter(onnx, tasks=tasks, **o)
    from ..backends.torch_peft import Router

    del o["precision"], o["layout"]  # of an export
    return Router(base_model, hub, tasks=tasks, **o)
