"""``export_hub``: every adapter of a hub into one self-contained export folder.

The folder is written under a temporary name next to ``out_dir`` and renamed
into place only after the parity gate passes, so a failed or interrupted
export leaves nothing half-written (and an earlier export stays as it was).
The export it replaces is kept as ``<out>.previous`` (``previous.py``), so a
service can roll back to it.
Its layout is ``lora_router.backends.onnx.export_layout``.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from .. import __version__
from ..adapters import AdapterHub, TaskManifest
from ..backends.onnx import export_layout
from ..backends.onnx.export_layout import ExportManifest
from ..config import PAIR_RANKING, TaskSpec
from ..core.chain import Chain
from ..data import Record
from ..encoding import encoding_of
from ..errors import ExportError, require
from .previous import swap_in

logger = logging.getLogger(__name__)

QUANTIZE = ("int8", "none")
# static: activation scales calibrated on the training texts, a row's result never depends on its batch-mates;
# dynamic: one activation scale per call, from the whole batch (Optimum's ORTQuantizer).
INT8_SCHEMES = ("static", "dynamic")
LAYOUT_CHOICES = ("merged", "shared", "multi", "trunk", "both", "all")
# "both" and "all" name several layouts; "trunk" is never implied: it needs adapters on upper layers only.
LAYOUT_GROUPS = {"both": ("merged", "shared"), "all": ("merged", "shared", "multi")}


def export_hub(
    base_model: str,
    hub: str | Path | AdapterHub | None,
    out_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    quantize: str = "int8",
    layout: str = "all",
    parity: bool = True,
    progress: bool = True,
    parity_records: dict[str, Sequence[Record]] | None = None,
    knowledge_base: str | Path | None = None,
    chain: Chain | str | Path | None = None,
    thresholds: dict[str, float] | None = None,
    opset: int | None = None,
    int8_max_drop: float = 1.0,
    cascade: bool = False,
    cascade_max_drop: float = 0.5,
    version: str | None = None,
    int8_scheme: str = "static",
    calibration_records: dict[str, Sequence[Record]] | None = None,
) -> ExportManifest:
    """Export the hub's adapters (all, or ``tasks``) on ``base_model`` to ``out_dir``; return the manifest.

    Per task: merge the adapter into a copy of the base, attach its head as a
    ``BertFor...`` model, export with Optimum, and with ``quantize="int8"``
    quantise dynamically for this CPU (layout "merged"); and/or one base
    encoder with LoRA inputs plus a ``.onnx_adapter`` and a head per task
    (layout "shared"); and/or one graph that runs rows of every task in one
    call (layout "multi"; "trunk" also runs the layers below every adapter
    once per text). ``layout``: one of ``LAYOUT_CHOICES`` or a comma-separated
    list ("merged,trunk"). With ``parity`` every model is checked against the
    PyTorch router on the task's held-out split (bundled test split, or
    ``parity_records``); a missed bound raises ``ExportError`` and writes nothing.
    int8 may score the task's own metric at most ``int8_max_drop`` points below PyTorch.
    With ``cascade`` each classification task also gets its n-gram first pass
    (``export.cascade``), its threshold fitted on the held-out split (or
    ``parity_records``) so the step's accuracy stays within
    ``cascade_max_drop`` points of the better of the n-gram model and the
    adapter alone.
    The manifest gets a new ``id`` and the ``version`` given (default: the time
    of export); every answer's trace names both.
    ``int8_scheme`` "static" (default) calibrates each activation's scale once on the task's own
    training texts (``calibration_records`` overrides them), so a row's result is the same alone and
    in any batch; "dynamic" takes one scale per call from the whole batch.
    """
    if quantize not in QUANTIZE:
        raise ExportError(f"quantize {quantize!r} is not valid; valid: {', '.join(QUANTIZE)}")
    if int8_scheme not in INT8_SCHEMES:
        raise ExportError(f"int8 scheme {int8_scheme!r} is not valid; valid: {', '.join(INT8_SCHEMES)}")
    layouts = parse_layouts(layout)
    require("torch")
    require("optimum.exporters.onnx", "train")
    hub = hub if isinstance(hub, AdapterHub) else AdapterHub(hub)
    names = list(tasks) if tasks else hub.tasks()
    if not names:
        raise ExportError(f"hub {hub.root} has no adapters to export; train one first: lora-router train --task TASK")
    task_manifests = {t: hub.manifest(t) for t in names}  # AdapterNotFoundError lists what the hub has
    run_chain = chain if isinstance(chain, Chain) else Chain.load(chain)
    if thresholds:
        run_chain.with_thresholds(thresholds)
    out_dir = Path(out_dir).expanduser().resolve()
    _check_target(out_dir)
    if "trunk" in layouts:
        from .multi import check_trunk_hub

        check_trunk_hub(hub, names)
    precisions = ["fp32", "int8"] if quantize == "int8" else ["fp32"]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.export-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        job = _Export(base_model, hub, tmp, names, task_manifests, layouts, precisions, knowledge_base, opset, progress)
        job.int8_scheme, job.calibration_records = int8_scheme, calibration_records
        manifest = job.write(run_chain, version)
        if cascade:
            from .cascade import write_cascade

            manifest.cascade = write_cascade(tmp, layouts, precisions, job.specs, task_manifests, parity_records,
                                             cascade_max_drop)
            manifest.files = export_layout.file_entries(tmp, job.mutable)
            _write_json(tmp / export_layout.MANIFEST_FILE, manifest.to_dict())
        if parity:
            report = job.parity(parity_records)
            from .parity import check_parity, parity_bounds

            manifest.parity = report
            manifest.parity_bounds = parity_bounds(int8_max_drop)
            _write_json(tmp / export_layout.MANIFEST_FILE, manifest.to_dict())
            check_parity(report, int8_max_drop)
        swap_in(tmp, out_dir)  # the export it replaces stays as <out>.previous, for a rollback
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s to %s", ", ".join(names), out_dir)
    return manifest


def parse_layouts(layout: str) -> list[str]:
    """``"all"``, ``"merged,trunk"``, ... as the list of layouts to write, in ``export_layout.LAYOUTS`` order."""
    asked: set[str] = set()
    for part in (p.strip() for p in str(layout).split(",")):
        if part not in LAYOUT_CHOICES:
            raise ExportError(f"layout {part!r} is not valid; valid: {', '.join(LAYOUT_CHOICES)} "
                              "(or several, comma-separated)")
        asked.update(LAYOUT_GROUPS.get(part, (part,)))
    return [lay for lay in export_layout.LAYOUTS if lay in asked]


def _check_target(out_dir: Path) -> None:
    if out_dir.is_file():
        raise ExportError(f"{out_dir} is a file; give a folder to export into")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / export_layout.MANIFEST_FILE).is_file():
        raise ExportError(f"{out_dir} is not empty and is not an earlier export; give a new or empty folder "
                          "(an earlier export there is replaced)")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")


class _Export:
    """One export run into a temporary folder (the steps of ``export_hub``)."""

    def __init__(self, base_model, hub, root, names, task_manifests, layouts, precisions, knowledge_base, opset,
                 progress):
        self.base_model, self.hub, self.root = str(base_model), hub, root
        self.names, self.task_manifests = names, task_manifests
        self.layouts, self.precisions = layouts, precisions
        self.knowledge_base, self.opset, self.progress = knowledge_base, opset, progress
        self.specs = {t: m.task for t, m in task_manifests.items()}
        self.mutable: list[str] = []
        self.int8_scheme = "static"
        self.calibration_records: dict[str, Sequence[Record]] | None = None
        self.calibration: dict[str, tuple] = {}  # task -> (TextEncoder, encoded inputs) for static int8

    # ------------------------------------------------------------ models
    def write(self, chain: Chain, version: str | None = None) -> ExportManifest:
        from ..modeling.base import fingerprint, is_random, load_base
        from ..progress import progress
        from .merged import export_onnx, load_adapter, merged_model, optimum_task
        from .quantize import cpu_target
        from .shared import lora_matrices, write_head

        base, tokenizer = load_base(self.base_model)
        base_fp = fingerprint(base)
        for t in self.names:
            self.hub.check_base(t, base_fp, self.base_model)
        tokenizer.save(str(self.root / export_layout.TOKENIZER_FILE))
        _write_json(self.root / export_layout.CHAIN_FILE, chain.to_dict())
        target = cpu_target()
        tasks_info: dict[str, dict] = {}
        loras: dict[str, dict] = {}
        encoders = [lay for lay in ("shared", *export_layout.ONE_CALL_LAYOUTS) if lay in self.layouts]
        steps = len(self.names) + len(encoders)
        with closing(progress(steps, "export", enabled=self.progress, unit="model")) as bar:
            for t in self.names:
                bar.set_postfix_str(t)
                spec, task_dir = self.specs[t], self.hub.task_dir(t)
                tasks_info[t] = self._task_info(t, spec)
                if "int8" in self.precisions and self.int8_scheme == "static":
                    self.calibration[t] = self._calibration_inputs(t, tokenizer, tasks_info[t])
                peft_model = load_adapter(base, task_dir)
                if encoders:  # the shared and one-call layouts read the same head file
                    loras[t] = lora_matrices(peft_model, t)
                    write_head(self.root / export_layout.head_file(t), task_dir)
                if "merged" in self.layouts:
                    folder = self.root / export_layout.merged_dir(t)
                    preprocessor = _hf_tokenizer(self.base_model, **tasks_info[t]["encoding"])
                    export_onnx(merged_model(peft_model, task_dir, spec), folder, optimum_task(spec), opset=self.opset,
                                preprocessors=[preprocessor])
                    preprocessor.save_pretrained(str(folder))  # Optimum copies the base's files, not these
                    files = {"fp32": f"{export_layout.merged_dir(t)}/{export_layout.MODEL_FILE}"}
                    if "int8" in self.precisions:
                        self._quantize(folder, target, [t], "merged")
                        files["int8"] = f"{export_layout.merged_dir(t)}/{export_layout.QUANTIZED_FILE}"
                    tasks_info[t]["merged"] = files
                del peft_model
                bar.update(1)
            shared, one_call = None, {}
            for lay in encoders:
                bar.set_postfix_str(f"{lay} encoder")
                if lay == "shared":
                    shared = self._write_shared(base, loras, tasks_info, target)
                else:
                    one_call[lay] = self._write_one_call(lay, base, loras, tasks_info, target)
                bar.update(1)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest = ExportManifest(
            id=uuid.uuid4().hex[:12],
            version=version or created,
            created=created,
            base_model={"name": self.base_model, "fingerprint": base_fp, "hidden_size": base.config.hidden_size,
                        "random": is_random(base.config)},
            opset=_opset(self.root, tasks_info, shared or next(iter(one_call.values()), None)),
            layouts=self.layouts,
            precisions=self.precisions,
            quantization=self._quantization_info(target, bool(one_call)) if "int8" in self.precisions else None,
            thresholds={s.task: s.threshold for s in chain.steps.values() if s.on},
            tasks=tasks_info,
            shared=shared,
            **one_call,
            versions=_versions(),
            files=export_layout.file_entries(self.root, self.mutable),
        )
        _write_json(self.root / export_layout.MANIFEST_FILE, manifest.to_dict())
        return manifest

    def _quantization_info(self, target: str, one_call: bool) -> dict:
        layouts = {"shared_lora": "float32 (LoRA nodes excluded)",
                   **({"one_call_lora": "int8 (LoRA matrices quantised like the base weights)"} if one_call else {})}
        if self.int8_scheme == "dynamic":
            return {"mode": "dynamic", "weights": "int8", "target": target, "per_channel": False,
                    "tool": "optimum ORTQuantizer", **layouts}
        from .calibration import TEXTS_PER_TASK

        return {"mode": "static", "weights": "int8, one scale per output column",
                "activations": "uint8, one scale per tensor, calibrated (min/max) on each task's training texts",
                "row_independent": True, "target": target, "per_channel": True,
                "tool": "lora_router.export.static_int8 (MatMulIntegerToFloat)",
                "calibration": {t: len(enc) for t, (_, enc) in self.calibration.items()},
                "calibration_texts_per_task": TEXTS_PER_TASK, **layouts}

    def _calibration_inputs(self, t: str, tokenizer, info: dict) -> tuple:
        """The task's encoder and its encoded calibration inputs (training texts, or pairs for ranking)."""
        from ..encoding import TextEncoder
        from .calibration import encoded_inputs, spread, training_records

        spec = self.specs[t]
        records = spread(training_records(t, spec, self.task_manifests[t].data.get("source"),
                                          self.calibration_records))
        encoder = TextEncoder.for_adapter(tokenizer, int(info["max_length"]), info.get("encoding"))
        answerer = None
        if spec.kind == PAIR_RANKING:
            from ..kb import Answerer

            answerer = Answerer.from_saved(self.task_manifests[t].knowledge_base, self.hub.task_dir(t),
                                           self.root / info["knowledge_base"])  # the export's copy
        return encoder, encoded_inputs(spec, encoder, records, answerer)

    def _quantize(self, folder: Path, target: str, tasks: Sequence[str], layout: str, *, exclude=(),
                  task_ids: dict[str, int] | None = None, lora_feeds: dict | None = None) -> None:
        """``folder/model.onnx`` -> ``folder/model_quantized.onnx``, static (calibrated on ``tasks``) or dynamic."""
        from .quantize import quantization_config, quantize_folder

        if self.int8_scheme == "dynamic":
            quantize_folder(folder, quantization_config(target, exclude=exclude))
            return
        from .calibration import feeds_for
        from .static_int8 import quantize_static_int8

        feeds = feeds_for(layout, {t: self.calibration[t] for t in tasks}, task_ids=task_ids, lora_feeds=lora_feeds)
        quantize_static_int8(folder / export_layout.MODEL_FILE, folder / export_layout.QUANTIZED_FILE, feeds,
                             target=target, exclude=exclude)

    def _task_info(self, t: str, spec: TaskSpec) -> dict:
        """Copy the task's manifest (and knowledge base) and describe the task for the runtime."""
        from .merged import head_labels

        manifest = TaskManifest.from_dict(self.task_manifests[t].to_dict())  # a copy: the export's own
        manifest.adapter_sha256 = manifest.adapter_sha256 or self.hub.adapter_sha256(t)  # names it in traces
        info = {"spec": spec.to_dict(), "kind": spec.kind, "labels": list(spec.labels),
                "head_labels": head_labels(spec), "instruction": spec.instruction,
                "max_length": manifest.max_length, "encoding": encoding_of(manifest.encoding),
                "manifest": f"{export_layout.task_dir(t)}/task.json"}
        if spec.kind == PAIR_RANKING:
            from ..kb import Answerer

            source = Answerer.from_saved(manifest.knowledge_base, self.hub.task_dir(t), self.knowledge_base).path
            rel = f"{export_layout.task_dir(t)}/{export_layout.KNOWLEDGE_BASE_FILE}"
            (self.root / export_layout.task_dir(t)).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, self.root / rel)
            manifest.knowledge_base = {**(manifest.knowledge_base or {}), "path": export_layout.KNOWLEDGE_BASE_FILE,
                                       "sha256": export_layout.sha256_file(self.root / rel),
                                       "exported_from": str(source)}
            info["knowledge_base"] = rel
            self.mutable.append(rel)  # the knowledge base may grow after export without retraining
        manifest.save(self.root / info["manifest"])
        return info

    def _write_shared(self, base, loras: dict[str, dict], tasks_info: dict, target: str) -> dict:
        from .shared import add_lora_inputs, export_encoder, head_reads, lora_inputs, lora_ranks, write_adapter

        folder = self.root / export_layout.SHARED_ENCODER_DIR
        export_encoder(base, folder, opset=self.opset)
        ranks = lora_ranks(loras)
        base_state = {module: base.get_submodule(module).weight.detach().float().numpy() for module in ranks}
        lora_nodes = add_lora_inputs(folder / export_layout.MODEL_FILE, base_state, ranks)
        info = {"fp32": f"{export_layout.SHARED_ENCODER_DIR}/{export_layout.MODEL_FILE}", "lora_modules": sorted(ranks),
                "lora_ranks": ranks}
        if "int8" in self.precisions:
            feeds = {t: lora_inputs(loras[t], ranks) for t in loras} if self.int8_scheme == "static" else None
            self._quantize(folder, target, list(loras), "shared", exclude=lora_nodes, lora_feeds=feeds)
            info["int8"] = f"{export_layout.SHARED_ENCODER_DIR}/{export_layout.QUANTIZED_FILE}"
        for t, matrices in loras.items():
            write_adapter(self.root / export_layout.adapter_file(t), matrices, ranks)
            tasks_info[t]["shared"] = {"adapter": export_layout.adapter_file(t), "head": export_layout.head_file(t),
                                       "reads": head_reads(self.specs[t])}
        return info

    def _write_one_call(self, layout: str, base, loras: dict[str, dict], tasks_info: dict, target: str) -> dict:
        from .multi import export_one_call, trunk_layers, write_optimized
        from .shared import head_reads

        folder = self.root / export_layout.encoder_dir(layout)
        trunk = trunk_layers(loras, base.config.num_hidden_layers) if layout == "trunk" else 0
        info = export_one_call(base, loras, folder / export_layout.MODEL_FILE, trunk=trunk, opset=self.opset)
        base.config.save_pretrained(folder)  # the quantiser reads it (and warns without it)
        float_nodes = info.pop("float_nodes")
        info["fp32"] = f"{export_layout.encoder_dir(layout)}/{export_layout.MODEL_FILE}"
        if "int8" in self.precisions:
            self._quantize(folder, target, list(loras), layout, exclude=float_nodes,
                           task_ids={t: i for i, t in enumerate(info["tasks"])})
            info["int8"] = f"{export_layout.encoder_dir(layout)}/{export_layout.QUANTIZED_FILE}"
            optimized = f"{export_layout.encoder_dir(layout)}/{export_layout.OPTIMIZED_QUANTIZED_FILE}"
            info["optimized"] = {"int8": optimized,
                                 **write_optimized(folder / export_layout.QUANTIZED_FILE, self.root / optimized)}
        for t in loras:
            tasks_info[t][layout] = {"head": export_layout.head_file(t), "reads": head_reads(self.specs[t])}
        return info

    # ------------------------------------------------------------ parity
    def parity(self, records: dict[str, Sequence[Record]] | None) -> dict:
        from ..backends.onnx import OnnxRouter
        from ..backends.torch_peft import Router
        from ..progress import progress
        from .parity import one_call_parity, parity_records, task_parity

        held_out = {t: parity_records(t, self.specs[t].kind, records) for t in self.names}
        torch_router = Router(self.base_model, self.hub, tasks=self.names, knowledge_base=self.knowledge_base)
        report: dict[str, dict] = {t: {} for t in self.names}
        combos = [(lay, prec) for lay in self.layouts for prec in self.precisions]
        with closing(progress(len(combos) * len(self.names), "parity", enabled=self.progress, unit="check",
                              log_every=len(self.names))) as bar:
            for lay, prec in combos:
                onnx_router = OnnxRouter(self.root, layout=lay, precision=prec, tasks=self.names, verify=False)
                for t in self.names:
                    bar.set_postfix_str(f"{t} {lay} {prec}")
                    report[t].setdefault(lay, {})[prec] = task_parity(torch_router, onnx_router, t, held_out[t])
                    bar.update(1)
                if lay in export_layout.ONE_CALL_LAYOUTS:
                    merged = (OnnxRouter(self.root, layout="merged", precision=prec, tasks=self.names, verify=False)
                              if "merged" in self.layouts and prec == "fp32" else None)
                    for t, figures in one_call_parity(onnx_router, merged, held_out).items():
                        report[t][lay][prec].update(figures)
                    del merged
                del onnx_router
        return report


def _hf_tokenizer(base_model: str, lowercase: bool = False):
    """The Transformers tokenizer saved beside a merged model, normalising as its adapter was trained."""
    from transformers import AutoTokenizer

    from ..modeling.base import tokenizer_files_dir

    # Lower-case only, as TextEncoder does (BERT's strip_accents follows do_lower_case when unset).
    options = {"do_lower_case": True, "strip_accents": False} if lowercase else {}
    try:
        return AutoTokenizer.from_pretrained(base_model, use_fast=True, **options)
    except (OSError, ValueError):  # a hub id not cached: the bundled files are bert-base-chinese's
        return AutoTokenizer.from_pretrained(str(tokenizer_files_dir()), use_fast=True, **options)


def _opset(root: Path, tasks_info: dict, encoder: dict | None) -> int | None:
    import onnx

    path = encoder["fp32"] if encoder else next(iter(tasks_info.values()))["merged"]["fp32"]
    model = onnx.load(str(root / path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"lora_router": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers",
                 "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out
