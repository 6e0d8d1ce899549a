"""``OnnxRouter``: the PyTorch router's API over an export folder, without PyTorch.

onnxruntime, tokenizers and numpy only. Tokenising, decoding, result dicts,
the chain and the knowledge-base answerer are the very modules the PyTorch
router uses (``encoding``, ``results``, ``router.chain``, ``kb``), so both give
results of the same shape, and the export's parity gate checks the numbers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import PAIR_RANKING, SPAN_EXTRACTION, TaskSpec
from ..encoding import Encoded, TextEncoder, check_text
from ..errors import ConfigError, ExportFormatError
from ..results import classification_result, extraction_result
from ..router.chain import Chain, run_chain
from . import layout as fmt
from .models import MergedTaskModel, SharedTaskModel
from .sessions import open_session, session_options

logger = logging.getLogger(__name__)

# Inputs of one forward pass; bounds memory on long batches (128 tokens x 64 x bert-base: ~25 MB per layer).
BATCH_SIZE = 64


class OnnxRouter:
    """Answer every exported task with onnxruntime.

    >>> router = OnnxRouter("./export")              # shared layout, int8 when exported
    >>> router.predict("question_classifier", "数据清洗流程是什么？")["predicted_label"]
    >>> router.ask("帮我把sales_2024.csv导入到ODS层")["route"]

    ``layout``: "shared" (one encoder + a LoRA adapter per task; the default when
    exported) or "merged" (one model per task). ``precision``: "int8" (default
    when exported) or "fp32". ``threads``: intra-op threads per session
    (default: physical cores). ``verify``: check every file it loads against
    the manifest's sha256. ``spinning``: let idle onnxruntime threads spin (off by
    default: with several sessions in one process spinning threads steal the
    cores; see ``runtime.sessions``).
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
    ):
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = fmt.read_manifest(self.export_dir)
        self.layout = _pick(layout, self.manifest["layouts"], ("shared", "merged"), "layout", self.export_dir)
        self.precision = _pick(precision, self.manifest["precisions"], ("int8", "fp32"), "precision",
                               self.export_dir)
        self.device = device
        names = list(tasks) if tasks is not None else list(self.manifest["tasks"])
        unknown = [t for t in names if t not in self.manifest["tasks"]]
        if unknown:
            raise ConfigError(f"task(s) {unknown} are not in export {self.export_dir}; "
                              f"it has: {', '.join(self.manifest['tasks'])}")
        needed = [fmt.TOKENIZER_FILE, fmt.CHAIN_FILE] + [p for t in names for p in self._task_files(t)]
        fmt.verify_files(self.export_dir, self.manifest, needed, hashes=verify)

        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.export_dir / fmt.TOKENIZER_FILE))
        options = session_options(threads, spinning=spinning)
        self.specs: dict[str, TaskSpec] = {}
        self.encoders: dict[str, TextEncoder] = {}
        self.manifests: dict[str, dict] = {}
        self.models: dict[str, MergedTaskModel | SharedTaskModel] = {}
        self._encoder_session = None
        for name in names:
            info = self.manifest["tasks"][name]
            self.specs[name] = TaskSpec.from_dict(info["spec"])
            self.encoders[name] = TextEncoder(tokenizer, int(info["max_length"]))
            self.manifests[name] = _read_json(self.export_dir / info["manifest"])
            self.models[name] = self._open_model(name, info, options)
        self.tokenizer = tokenizer
        self.chain = chain if isinstance(chain, Chain) else Chain.load(chain or self.export_dir / fmt.CHAIN_FILE)
        if thresholds:
            self.chain.with_thresholds(thresholds)
        self.knowledge_base = knowledge_base
        self._answerers: dict[str, object] = {}
        self._lock = threading.Lock()
        logger.info("onnx router: %s, %s %s, tasks %s", self.export_dir, self.layout, self.precision,
                    ", ".join(self.specs) or "none")

    # ------------------------------------------------------------ loading
    def _task_files(self, task: str) -> list[str]:
        info = self.manifest["tasks"][task]
        files = [info["manifest"]]
        if self.layout == "merged":
            files.append(info["merged"][self.precision])
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

    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    def _spec(self, task: str) -> TaskSpec:
        try:
            return self.specs[task]
        except KeyError:
            raise ConfigError(
                f"task {task!r} is not loaded; loaded: {', '.join(self.specs) or 'none'} (export {self.export_dir})"
            ) from None

    # ------------------------------------------------------------ forward passes
    def logits(self, task: str, encoded: Sequence[Encoded]) -> np.ndarray:
        """Head logits for encoded inputs (one padded batch), like ``Router.logits``."""
        self._spec(task)
        return self.models[task].logits(self.encoders[task].pad(encoded))

    def score_pairs(self, task: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance logits of (question, candidate) pairs for a pair-ranking task."""
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        enc = self.encoders[task].encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False)
        return np.concatenate([self.logits(task, enc[i : i + BATCH_SIZE]).reshape(-1)
                               for i in range(0, len(enc), BATCH_SIZE)])

    # ------------------------------------------------------------ predictions
    def predict(self, task: str, text: str) -> dict:
        """One task's result for one text (see ``lora_router.results``)."""
        return self.predict_batch(task, [text])[0]

    def predict_batch(self, task: str, texts: Sequence[str]) -> list[dict]:
        """One task's results for many texts."""
        spec = self._spec(task)
        texts = [check_text(t) for t in texts]
        if not texts:
            return []
        if spec.kind == PAIR_RANKING:
            answerer = self.answerer(task)
            return [answerer.answer(t, lambda pairs: self.score_pairs(task, pairs)) for t in texts]
        out: list[dict] = []
        for i in range(0, len(texts), BATCH_SIZE):
            chunk = texts[i : i + BATCH_SIZE]
            encoded = self.encoders[task].encode_batch(chunk)
            logits = self.logits(task, encoded)
            if spec.kind == SPAN_EXTRACTION:
                out += [extraction_result(t, e, lg) for t, e, lg in zip(chunk, encoded, logits)]
            else:
                out += [classification_result(lg, spec.labels) for lg in logits]
        return out

    def answerer(self, task: str):
        """The knowledge-base ``Answerer`` of a pair-ranking task (the exported knowledge base by default)."""
        from ..kb import Answerer

        self._spec(task)
        with self._lock:
            if task not in self._answerers:
                info = self.manifest["tasks"][task]
                kb = self.knowledge_base or (self.export_dir / info["knowledge_base"]
                                             if info.get("knowledge_base") else None)
                task_dir = self.export_dir / fmt.task_dir(task)
                self._answerers[task] = Answerer.from_manifest(self.manifests[task], task_dir, kb)
            return self._answerers[task]

    # ------------------------------------------------------------ the chain
    def ask(self, text: str) -> dict:
        """Run the chain on one question: every step, the route, file names, the answer."""
        return self.ask_batch([text])[0]

    def ask_batch(self, texts: Sequence[str]) -> list[dict]:
        """Run the chain on many questions, batching each step across them."""
        texts = [check_text(t) for t in texts]
        return run_chain(self.chain, texts, self.predict_batch, set(self.specs))


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
    import json

    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportFormatError(f"{path} is damaged ({exc}); export again") from None
