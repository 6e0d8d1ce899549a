"""``OnnxRouter``: the PyTorch router's API over an export folder, without PyTorch.

onnxruntime, tokenizers and numpy only. Tokenising, decoding, result dicts,
the chain and the knowledge-base answerer are the very modules the PyTorch
router uses (``encoding``, ``results``, ``core``, ``kb``), so both give
results of the same shape, and the export's parity gate checks the numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...config import TaskSpec
from ...core.chain import Chain
from ...core.predictor import TaskPredictor
from ...encoding import Encoded, TextEncoder, encoding_of
from ...errors import ConfigError, ExportFormatError
from . import layout as fmt
from .models import Head, MergedTaskModel, OneCallModel, SharedTaskModel
from .one_call import OneCallPredictor
from .sessions import open_session, session_options

logger = logging.getLogger(__name__)

# The layout used when none is asked for: the first one the export has.
LAYOUT_PREFERENCE = ("trunk", "multi", "shared", "merged")
# Whether ask runs the chain's steps in one call by default. Measured at base size (int8, 16-token question,
# CPU time): one call for 3 rows costs 1.6x one step with the trunk (layers 0-5 run once) and 2.2x without it,
# while the step-by-step chain costs 1, 2 or 3 steps. On the bundled chain questions (36% stop at step 1,
# 34% take 2 classification steps, 30% take 3) one call is 1.19x faster with the trunk and 1.14x slower without.
SPECULATE_BY_DEFAULT = {"trunk": True, "multi": False}


class OnnxRouter(OneCallPredictor, TaskPredictor):
    """Answer every exported task with onnxruntime.

    >>> router = OnnxRouter("./export")              # shared layout, int8 when exported
    >>> router.predict("question_classifier", "数据清洗流程是什么？")["predicted_label"]
    >>> router.ask("帮我把sales_2024.csv导入到ODS层")["route"]

    ``layout``: "trunk" or "multi" (one graph for every task: rows of several
    tasks in one onnxruntime call; trunk also runs the layers no adapter
    touches once per text), "shared" (one encoder + a LoRA adapter per task)
    or "merged" (one model per task); default: the first of these the export
    has. ``precision``: "int8" (default when exported) or "fp32". ``threads``:
    intra-op threads per session (default: physical cores). ``verify``: check
    every file it loads against the manifest's sha256. ``spinning``: let idle
    onnxruntime threads spin (off by default: with several sessions in one
    process spinning threads steal the cores; see ``runtime.sessions``).
    ``speculate`` (one-call layouts): ``ask`` runs every classification and
    extraction step of the chain in one call, then applies the chain's rules
    to those results; False runs the chain step by step. Default: one call on
    the trunk layout, step by step on multi (see ``SPECULATE_BY_DEFAULT``).
    """

    def __init__(
        self,
        export_dir: str | Path,
        *,
        layout: str | None = None,
        precision: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        tasks: Sequence[str] | None = None,
        chain: Chain | str | Path | None = None,
        thresholds: dict[str, float] | None = None,
        knowledge_base: str | Path | None = None,
        verify: bool = True,
        spinning: bool = False,
        speculate: bool | None = None,
    ):
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = fmt.read_manifest(self.export_dir)
        self.layout = _pick(layout, self.manifest["layouts"], LAYOUT_PREFERENCE, "layout", self.export_dir)
        self.precision = _pick(precision, self.manifest["precisions"], ("int8", "fp32"), "precision",
                               self.export_dir)
        self.device = device
        names = list(tasks) if tasks is not None else list(self.manifest["tasks"])
        unknown = [t for t in names if t not in self.manifest["tasks"]]
        if unknown:
            raise ConfigError(f"task(s) {unknown} are not in export {self.export_dir}; "
                              f"it has: {', '.join(self.manifest['tasks'])}")
        # each file once: the encoder of the shared and one-call layouts is every task's
        needed = [fmt.TOKENIZER_FILE, fmt.CHAIN_FILE] + [p for t in names for p in self._task_files(t)]
        needed = list(dict.fromkeys(needed))
        # The sha256 of the model files (~100 MB at base size) runs beside the sessions' start-up, the other
        # half of a cold start; a damaged file is still what is reported, whatever the loading says about it.
        with ThreadPoolExecutor(1) as pool:
            check = pool.submit(fmt.verify_files, self.export_dir, self.manifest, needed, hashes=verify)
            try:
                self._load(names, threads, spinning)
            except Exception:
                check.result()
                raise
            check.result()
        self.speculate = SPECULATE_BY_DEFAULT.get(self.layout, False) if speculate is None else speculate
        self.chain = chain if isinstance(chain, Chain) else Chain.load(chain or self.export_dir / fmt.CHAIN_FILE)
        if thresholds:
            self.chain.with_thresholds(thresholds)
        self.knowledge_base = knowledge_base
        self.source = f"export {self.export_dir}"
        self._init_predictor()
        logger.info("onnx router: %s, %s %s, tasks %s", self.export_dir, self.layout, self.precision,
                    ", ".join(self.specs) or "none")

    # ------------------------------------------------------------ loading
    def _load(self, names: Sequence[str], threads: int | None, spinning: bool) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.export_dir / fmt.TOKENIZER_FILE))
        options = session_options(threads, spinning=spinning)
        self.specs: dict[str, TaskSpec] = {}
        self.encoders: dict[str, TextEncoder] = {}
        self.manifests: dict[str, dict] = {}
        self.models: dict[str, object] = {}
        self._encoder_session = None
        alike: dict[tuple, TextEncoder] = {}  # tasks that encode alike share one encoder (and one tokenisation)
        for name in names:
            info = self.manifest["tasks"][name]
            self.specs[name] = TaskSpec.from_dict(info["spec"])
            key = (int(info["max_length"]), json.dumps(encoding_of(info), sort_keys=True))
            if key not in alike:
                alike[key] = TextEncoder.for_adapter(tokenizer, int(info["max_length"]), info)
            self.encoders[name] = alike[key]
            self.manifests[name] = _read_json(self.export_dir / info["manifest"])
            if self.layout not in fmt.ONE_CALL_LAYOUTS:
                self.models[name] = self._open_model(name, info, options)
        self.one_call: OneCallModel | None = None
        if self.layout in fmt.ONE_CALL_LAYOUTS:
            self.one_call = self._open_one_call(names, options)
            self.models = {name: self.one_call.task(name) for name in names}
        self.tokenizer = tokenizer

    def _task_files(self, task: str) -> list[str]:
        info = self.manifest["tasks"][task]
        files = [info["manifest"]]
        if self.layout == "merged":
            files.append(info["merged"][self.precision])
        elif self.layout in fmt.ONE_CALL_LAYOUTS:
            files += [self._one_call_file(), info[self.layout]["head"]]
        else:
            files += [self.manifest["shared"][self.precision], info["shared"]["adapter"], info["shared"]["head"]]
        if info.get("knowledge_base"):
            files.append(info["knowledge_base"])
        return files

    def _open_model(self, task: str, info: dict, options):
        if self.layout == "merged":
            return MergedTaskModel(open_session(self.export_dir / info["merged"][self.precision], self.device, options))
        if self._encoder_session is None:
            path = self.export_dir / self.manifest["shared"][self.precision]
            self._encoder_session = open_session(path, self.device, options)
        shared = info["shared"]
        return SharedTaskModel(self._encoder_session, self.export_dir / shared["adapter"],
                               self.export_dir / shared["head"], shared["reads"])

    def _one_call_file(self) -> str:
        """The graph to open: the one onnxruntime optimised at export (CPU, same onnxruntime), else the plain one."""
        import onnxruntime as ort

        layout = self.manifest[self.layout]
        optimized = layout.get("optimized") or {}
        if self.device == "cpu" and optimized.get(self.precision) and optimized.get("onnxruntime") == ort.__version__:
            return optimized[self.precision]
        return layout[self.precision]

    def _open_one_call(self, names: Sequence[str], options) -> OneCallModel:
        layout = self.manifest[self.layout]
        session = open_session(self.export_dir / self._one_call_file(), self.device, options)
        heads = {}
        for name in names:
            info = self.manifest["tasks"][name][self.layout]
            heads[name] = Head.load(self.export_dir / info["head"], info["reads"])
        return OneCallModel(session, layout["tasks"], heads)

    # ------------------------------------------------------------ forward passes
    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits for encoded inputs (one padded batch), like ``Router.logits``."""
        self._spec(task)
        return self.models[task].logits(self.encoders[task].pad(encoded))

    def _answerer_for(self, task: str):
        from ...kb import Answerer

        info = self.manifest["tasks"][task]
        kb = self.knowledge_base or (self.export_dir / info["knowledge_base"] if info.get("knowledge_base") else None)
        return Answerer.from_manifest(self.manifests[task], self.export_dir / fmt.task_dir(task), kb)


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


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportFormatError(f"{path} is damaged ({exc}); export again") from None
