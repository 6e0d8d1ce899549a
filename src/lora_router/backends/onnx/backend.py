"""The onnxruntime backend: an export folder's task models, logits only; and ``OnnxRouter`` over it.

onnxruntime, tokenizers and numpy only. ``OnnxBackend`` opens the sessions of
one layout (merged, shared, multi or trunk) and gives head logits;
``core.TaskPredictor`` turns them into results, knowledge-base answers and
the chain exactly as it does for the PyTorch backend, so both give results of
the same shape, and the export's parity gate checks the numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...adapters import TaskManifest
from ...config import TaskSpec
from ...core.chain import Chain
from ...core.options import LAYOUTS, PRECISIONS, PredictorOptions
from ...core.predictor import TaskPredictor, backend_attribute, split_options
from ...encoding import Encoded, TextEncoder, encoding_of
from ...errors import ConfigError, ExportFormatError
from . import export_layout
from .models import Head, MergedTaskModel, OneCallModel, SharedTaskModel
from .sessions import open_session, session_options

logger = logging.getLogger(__name__)

# Whether ask runs the chain's steps in one call by default. Measured at base size (int8, 16-token question,
# CPU time): one call for 3 rows costs 1.6x one step with the trunk (layers 0-5 run once) and 2.2x without it,
# while the step-by-step chain costs 1, 2 or 3 steps. On the bundled chain questions (36% stop at step 1,
# 34% take 2 classification steps, 30% take 3) one call is 1.19x faster with the trunk and 1.14x slower without.
SPECULATE_BY_DEFAULT = {"trunk": True, "multi": False}


class OnnxBackend:
    """The task models of an export folder in onnxruntime, in one layout and precision.

    The layout used when none is asked for is the first of ``LAYOUTS`` (trunk,
    multi, shared, merged) the export has; the precision int8 when exported.
    """

    def __init__(self, export_dir: str | Path, options: PredictorOptions):
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = export_layout.read_manifest(self.export_dir)
        self.layout = _pick(options.layout, self.manifest.layouts, LAYOUTS, "layout", self.export_dir)
        self.precision = _pick(options.precision, self.manifest.precisions, PRECISIONS, "precision",
                               self.export_dir)
        self.device = options.device
        names = list(options.tasks) if options.tasks is not None else list(self.manifest.tasks)
        unknown = [t for t in names if t not in self.manifest.tasks]
        if unknown:
            raise ConfigError(f"task(s) {unknown} are not in export {self.export_dir}; "
                              f"it has: {', '.join(self.manifest.tasks)}")
        # each file once: the encoder of the shared and one-call layouts is every task's
        needed = [export_layout.TOKENIZER_FILE, export_layout.CHAIN_FILE]
        needed += [p for t in names for p in self._task_files(t)]
        needed = list(dict.fromkeys(needed))
        export_layout.check_listed(self.export_dir, self.manifest, needed)  # before any file is opened
        # The sha256 of the model files (~100 MB at base size) runs beside the sessions' start-up, the other
        # half of a cold start; a damaged file is still what is reported, whatever the loading says about it.
        with ThreadPoolExecutor(1) as pool:
            check = pool.submit(export_layout.verify_files, self.export_dir, self.manifest, needed,
                                hashes=options.verify)
            try:
                self._load(names, options.threads, options.spinning)
            except Exception:
                check.result()
                raise
            check.result()
        self.runs_mixed = self.one_call is not None
        self.speculate_by_default = SPECULATE_BY_DEFAULT.get(self.layout, False)
        self.chain_path = self.export_dir / export_layout.CHAIN_FILE
        self.source = f"export {self.export_dir}"
        logger.info("onnx backend: %s, %s %s, tasks %s", self.export_dir, self.layout, self.precision,
                    ", ".join(self.specs) or "none")

    # ------------------------------------------------------------ loading
    def _load(self, names: Sequence[str], threads: int | None, spinning: bool) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.export_dir / export_layout.TOKENIZER_FILE))
        options = session_options(threads, spinning=spinning)
        self.specs: dict[str, TaskSpec] = {}
        self.encoders: dict[str, TextEncoder] = {}
        self.manifests: dict[str, TaskManifest] = {}
        self.models: dict[str, object] = {}
        self._encoder_session = None
        alike: dict[tuple, TextEncoder] = {}  # tasks that encode alike share one encoder (and one tokenisation)
        for name in names:
            info = self.manifest.tasks[name]
            self.specs[name] = TaskSpec.from_dict(info["spec"])
            key = (int(info["max_length"]), json.dumps(encoding_of(info.get("encoding")), sort_keys=True))
            if key not in alike:
                alike[key] = TextEncoder.for_adapter(tokenizer, int(info["max_length"]), info.get("encoding"))
            self.encoders[name] = alike[key]
            self.manifests[name] = _read_task_manifest(self.export_dir / info["manifest"])
            if self.layout not in export_layout.ONE_CALL_LAYOUTS:
                self.models[name] = self._open_model(name, info, options)
        self.one_call: OneCallModel | None = None
        if self.layout in export_layout.ONE_CALL_LAYOUTS:
            self.one_call = self._open_one_call(names, options)
            self.models = {name: self.one_call.task(name) for name in names}
        self.tokenizer = tokenizer

    def _task_files(self, task: str) -> list[str]:
        info = self.manifest.tasks[task]
        files = [info["manifest"]]
        if self.layout == "merged":
            files.append(info["merged"][self.precision])
        elif self.layout in export_layout.ONE_CALL_LAYOUTS:
            files += [self._one_call_file(), info[self.layout]["head"]]
        else:
            files += [self.manifest.shared[self.precision], info["shared"]["adapter"], info["shared"]["head"]]
        if info.get("knowledge_base"):
            files.append(info["knowledge_base"])
        return files

    def _open_model(self, task: str, info: dict, options):
        if self.layout == "merged":
            return MergedTaskModel(open_session(self.export_dir / info["merged"][self.precision], self.device, options))
        if self._encoder_session is None:
            path = self.export_dir / self.manifest.shared[self.precision]
            self._encoder_session = open_session(path, self.device, options)
        shared = info["shared"]
        return SharedTaskModel(self._encoder_session, self.export_dir / shared["adapter"],
                               self.export_dir / shared["head"], shared["reads"])

    def _one_call_file(self) -> str:
        """The graph to open: the one onnxruntime optimised at export (CPU, same onnxruntime), else the plain one."""
        import onnxruntime as ort

        layout = self.manifest.one_call(self.layout)
        optimized = layout.get("optimized") or {}
        if self.device == "cpu" and optimized.get(self.precision) and optimized.get("onnxruntime") == ort.__version__:
            return optimized[self.precision]
        return layout[self.precision]

    def _open_one_call(self, names: Sequence[str], options) -> OneCallModel:
        layout = self.manifest.one_call(self.layout)
        session = open_session(self.export_dir / self._one_call_file(), self.device, options)
        heads = {}
        for name in names:
            info = self.manifest.tasks[name][self.layout]
            heads[name] = Head.load(self.export_dir / info["head"], info["reads"])
        return OneCallModel(session, layout["tasks"], heads)

    # ------------------------------------------------------------ forward passes
    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits for encoded inputs (one padded batch)."""
        return self.models[task].logits(self.encoders[task].pad(encoded))

    def mixed_logits(self, rows: Sequence[tuple[str, Encoded]]) -> list[np.ndarray]:
        """Head logits of encoded ``(task, input)`` rows in one call; rows that encode alike share one input row."""
        if self.one_call is None:
            raise ConfigError(f"layout {self.layout} runs one task per call; mixed rows need layout multi or trunk")
        texts, row_text = _distinct([e for _, e in rows], key=lambda e: (tuple(e.input_ids), tuple(e.token_type_ids)))
        arrays = self.encoders[rows[0][0]].pad(texts)
        return self.one_call.logits_rows(arrays, row_text, [t for t, _ in rows])

    def answerer(self, task: str, knowledge_base: Path | None):
        from ...kb import Answerer

        info = self.manifest.tasks[task]
        kb = knowledge_base or (self.export_dir / info["knowledge_base"] if info.get("knowledge_base") else None)
        task_dir = self.export_dir / export_layout.task_dir(task)
        return Answerer.from_saved(self.manifests[task].knowledge_base, task_dir, kb)


class OnnxRouter(TaskPredictor):
    """Answer every exported task with onnxruntime: a ``TaskPredictor`` over an ``OnnxBackend``.

    >>> router = OnnxRouter("./export")              # trunk or multi layout, int8 when exported
    >>> router.predict("question_classifier", "数据清洗流程是什么？")["predicted_label"]
    >>> router.ask("帮我把sales_2024.csv导入到ODS层")["route"]

    Options (``PredictorOptions``, given whole as ``options=`` or field by
    field): ``layout`` "trunk" or "multi" (one graph for every task: rows of
    several tasks in one onnxruntime call; trunk also runs the layers no
    adapter touches once per text), "shared" (one encoder + a LoRA adapter per
    task) or "merged" (one model per task); ``precision`` "int8" or "fp32";
    ``threads`` per session (default: physical cores); ``verify`` the sha256
    of every file loaded; ``spinning`` idle threads (off: several sessions in
    one process would steal the cores); ``speculate``: ``ask`` runs every
    classification and extraction step in one call (one-call layouts).
    ``chain`` may also be a ``Chain``.
    """

    def __init__(self, export_dir: str | Path, *, options: PredictorOptions | None = None,
                 chain: Chain | str | Path | None = None, **fields):
        options, chain_object = split_options(options, chain, fields)
        super().__init__(OnnxBackend(export_dir, options), options, chain=chain_object)

    export_dir = backend_attribute("export_dir")  # Path
    manifest = backend_attribute("manifest")  # ExportManifest
    layout = backend_attribute("layout")  # str
    precision = backend_attribute("precision")  # str


def _pick(asked: str | None, available: Sequence[str], preference: Sequence[str], what: str, folder: Path) -> str:
    if asked is None:
        for option in preference:
            if option in available:
                return option
        raise ExportFormatError(f"export {folder} lists no {what} this lora-router reads ({list(available)})")
    if asked not in preference:
        raise ConfigError(f"unknown {what} {asked!r}; valid: {', '.join(preference)}")
    if asked not in available:
        raise ConfigError(f"export {folder} has no {what} {asked!r}; it has: {', '.join(available)} "
                          f"(export again with that {what} to use it)")
    return asked


def _distinct(values: Sequence, key) -> tuple[list, list[int]]:
    """The distinct values (first occurrence order) and, per value, its index among them."""
    index: dict = {}
    out, rows = [], []
    for v in values:
        k = key(v)
        if k not in index:
            index[k] = len(out)
            out.append(v)
        rows.append(index[k])
    return out, rows


def _read_task_manifest(path: Path) -> TaskManifest:
    try:
        return TaskManifest.from_dict(json.loads(path.read_text("utf-8")), str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError) as exc:
        raise ExportFormatError(f"{path} is damaged ({exc}); export again") from None
