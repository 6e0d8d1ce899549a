"""Options several commands share, click options made from a settings dataclass's fields, and the one place
options become a predictor: an export (``--onnx``) or base + hub."""

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import click

from ..adapters.hub import HUB_ENV
from ..core.options import PredictorOptions
from ..modeling.base import DEFAULT_BASE_MODEL

BASE_ENV = "LORA_ROUTER_BASE_MODEL"
FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
FOLDER = click.Path(file_okay=False, exists=True, path_type=Path)

base_model = click.option(
    "--base-model", envvar=BASE_ENV, default=DEFAULT_BASE_MODEL, show_default=True, show_envvar=True,
    help="Hugging Face id (from the local cache) or folder of the base BERT.")
hub = click.option(
    "--hub", envvar=HUB_ENV, type=click.Path(file_okay=False, path_type=Path), default=None, show_envvar=True,
    help="Adapter hub folder [default: ~/.lora-router/hub].")
json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
quiet = click.option("--quiet", is_flag=True, help="No progress bar.")


# Shared options whose help each command words for itself: opt.kb(help="...").
onnx = partial(click.option, "--onnx", type=FOLDER, default=None)
kb = partial(click.option, "--kb", "knowledge_base", type=FILE, default=None)
thresholds = partial(click.option, "--threshold", "thresholds", multiple=True, metavar="TASK=P")


def from_settings(cls, **options: dict):
    """Click options for fields of the settings dataclass ``cls``, each default and help read from the field.

    Each keyword names a field, in ``--help``'s order; its dict holds the option's ``flag`` (else
    ``--field-name``) and more click arguments. A list field repeats, a tuple is typed comma-separated
    (``default`` may spell an empty one), a field true by default becomes ``--no-field-name``, one false by
    default a ``--field-name`` flag.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def decorate(fn):
        for name, extra in reversed(options.items()):
            fn = _field_option(fields[name], **extra)(fn)
        return fn

    return decorate


def _field_option(f: dataclasses.Field, flag: str | None = None, **kwargs):
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    help, dashed = f.metadata["help"], f.name.replace("_", "-")
    if default is True:
        return click.option(flag or f"--no-{dashed}", f.name, is_flag=True, flag_value=False, default=True,
                            help=f"Turns off: {help[0].lower()}{help[1:]}", **kwargs)
    if default is False:
        kwargs.pop("is_flag", None)
        return click.option(flag or f"--{dashed}", f.name, is_flag=True, default=False, help=help, **kwargs)
    if isinstance(default, tuple):
        default = kwargs.pop("default", ",".join(map(str, default)))  # the same value, as it is typed
    return click.option(flag or f"--{dashed}", f.name, default=default, help=help, show_default=True,
                        multiple=isinstance(default, list), **kwargs)


# The PredictorOptions several commands take, each default and help read from the dataclass.
DEVICE = {"type": click.Choice(["cpu", "cuda"])}
device = from_settings(PredictorOptions, device=DEVICE)
cascade = from_settings(PredictorOptions, cascade={})
export_options = from_settings(PredictorOptions, chain={"type": FILE}, device=DEVICE,
                               precision={"type": click.Choice(["int8", "fp32"])}, layout={},
                               cascade={})


def take_settings(cls, params: dict):
    """``cls`` built from the command's parameters that are its fields (they are removed from ``params``)."""
    return cls(**{f.name: params.pop(f.name) for f in dataclasses.fields(cls) if f.name in params})


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


def predictor_options(thresholds: Sequence[str] = (), **options) -> PredictorOptions:
    """The options every predictor takes, from the command line; they travel whole to serve workers and Ray."""
    return PredictorOptions(thresholds=parse_thresholds(thresholds), **options)


def build_predictor(onnx: Path | None = None, base_model: str | None = None, hub: Path | None = None, **options):
    """``OnnxRouter`` over the export ``onnx``, else the PyTorch ``Router`` over ``base_model`` + ``hub``."""
    if onnx:
        from ..backends.onnx import OnnxRouter

        return OnnxRouter(onnx, options=predictor_options(**options))
    from ..backends.torch_peft import Router

    return Router(base_model, hub, options=predictor_options(**options))
