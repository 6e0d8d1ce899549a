"""`lora-router export`: adapters merged into ONNX models that run without PyTorch, behind a parity gate."""

from pathlib import Path

import click

from ..adapters import AdapterHub
from ..errors import require
from . import _options as opt
from ._output import dump, print_cascade, print_parity


@click.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--tasks", default=None, help="Comma-separated tasks [default: every task in the hub].")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True,
              help="Also write int8 models, configured for this CPU (--int8-scheme says how).")
@click.option("--layout", default="all", show_default=True,
              help="merged: one model per task; shared: one encoder + an .onnx_adapter and a head per task; "
                   "multi: every task in one graph, the chain in one call; trunk: as multi, the layers below "
                   "every adapter run once per question (adapters trained with --layers); both: merged,shared; "
                   "all: merged,shared,multi. Several: comma-separated.")
@click.option("--no-parity", is_flag=True, help="Skip the parity gate (not recommended).")
@opt.kb(help="Knowledge base to ship [default: the one question_answer was trained with].")
@opt.thresholds(help="Chain thresholds to ship.")
@click.option("--int8-scheme", type=click.Choice(["static", "dynamic"]), default="static", show_default=True,
              help="static: activation scales calibrated once on each task's training texts, so a question's "
                   "answer is the same alone and in any batch; dynamic: one scale per call from the whole batch "
                   "(answers move slightly with their batch-mates).")
@click.option("--int8-max-drop", default=1.0, show_default=True, type=float, metavar="POINTS",
              help="How far int8 may score the task's own metric below PyTorch (percentage points).")
@click.option("--cascade", is_flag=True,
              help="Also write each classification task's character n-gram model (numpy, no new dependency) and "
                   "the confidence above which it answers alone; run with `ask/serve --cascade`.")
@click.option("--cascade-max-drop", default=0.5, show_default=True, type=click.FloatRange(0, 100), metavar="POINTS",
              help="How far the cascade may score a step's held-out accuracy below the better of the n-gram model "
                   "and the adapter alone (percentage points).")
@click.option("--export-version", "version", default=None, metavar="NAME",
              help="The version this export is, named in every answer's trace [default: the time of export].")
@opt.base_model
@opt.hub
@opt.quiet
@opt.json
def export_cmd(out, tasks, quantize, layout, no_parity, knowledge_base, thresholds, int8_scheme, int8_max_drop,
               cascade, cascade_max_drop, version, base_model, hub, quiet, as_json) -> None:
    """Merge each adapter into the base and write ONNX models that run without PyTorch.

    Each model is checked against the PyTorch router on the task's held-out
    split (fp32: max |Δlogit| <= 1e-4 and every label/span the same; int8: the
    task's own metric, accuracy / exact-span F1 / top-1, at most --int8-max-drop
    points below PyTorch, with label agreement and near-ties reported beside it);
    a missed bound fails naming the task and the figure, and nothing is
    written. Run the result with `lora-router ask --onnx DIR` or
    `lora_router.OnnxRouter(DIR)`.

    With --cascade, each classification task also gets the character n-gram
    model `eval` scores as its baseline, fitted on the adapter's training
    split, and a confidence fitted on the held-out split: at or above it the
    n-gram model answers the step alone (in well under a millisecond), below
    it the adapter runs. The confidence is the lowest that keeps the step's
    held-out accuracy within --cascade-max-drop points of the better of the
    two alone, for every layout and precision exported.
    """
    require("optimum.onnxruntime")
    from ..export import export_hub

    manifest = export_hub(base_model, AdapterHub(hub), out, tasks=tasks.split(",") if tasks else None,
                          quantize=quantize, layout=layout, parity=not no_parity, progress=not quiet and not as_json,
                          knowledge_base=knowledge_base, thresholds=opt.parse_thresholds(thresholds) or None,
                          int8_max_drop=int8_max_drop, int8_scheme=int8_scheme, cascade=cascade,
                          cascade_max_drop=cascade_max_drop, version=version)
    if as_json:
        dump(manifest.to_dict())
        return
    click.echo(f"exported {', '.join(manifest.tasks)} to {out}")
    if manifest.parity:
        print_parity(manifest.parity, {task: info["kind"] for task, info in manifest.tasks.items()})
    if manifest.cascade:
        print_cascade(manifest.cascade)
