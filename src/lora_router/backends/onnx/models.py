"""Task models over onnxruntime sessions: head logits for a padded batch.

``MergedTaskModel``: one session per task (adapter merged, head in the graph).
``SharedTaskModel``: one encoder session for every task; the task's LoRA
matrices come in as an onnxruntime ``LoraAdapter`` activated per run, and its
head (a single linear layer) is applied in numpy.
``OneCallModel``: the one-call layouts (multi, trunk): one session whose rows
are (text, task) pairs, so rows of different tasks run in one ``session.run``;
each row's head is applied in numpy afterwards (``lora_router.export.multi``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import ExportFormatError

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class MergedTaskModel:
    """A task's own session: ``input_ids, attention_mask, token_type_ids -> logits``."""

    def __init__(self, session):
        self.session = session
        self._inputs = [i.name for i in session.get_inputs() if i.name in ENCODER_INPUTS]

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {k: arrays[k] for k in self._inputs})[0]


class SharedTaskModel:
    """A task on the shared encoder: its LoRA adapter, then its head on ``reads``."""

    def __init__(self, encoder_session, adapter_path: Path, head_path: Path, reads: str):
        import onnxruntime as ort

        self.session = encoder_session
        self.reads = reads
        self._inputs = [i.name for i in encoder_session.get_inputs() if i.name in ENCODER_INPUTS]
        self.adapter = ort.LoraAdapter()
        try:
            self.adapter.Load(str(adapter_path))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ExportFormatError(f"{adapter_path} is not a valid onnxruntime adapter ({exc}); "
                                    "export again") from None
        self.run_options = ort.RunOptions()
        self.run_options.add_active_adapter(self.adapter)
        self.run_options.only_execute_path_to_fetches = True
        self.head = Head.load(head_path, reads)

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        hidden = self.session.run([self.reads], {k: arrays[k] for k in self._inputs}, self.run_options)[0]
        return self.head(hidden)


class Head:
    """A task head: one linear layer on ``reads`` (pooler_output or last_hidden_state).

    Computed as products summed along the hidden axis, not as a BLAS matmul:
    BLAS picks another kernel (and another order of additions) for one row than
    for many, so a row's logits would move in their last bit with the batch it
    came in. A sum along one contiguous axis adds in the same order for every
    row, alone or among others (tests/test_static_int8.py).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, reads: str):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)  # out x hidden
        self.bias = bias.astype(np.float32)
        self.reads = reads

    @classmethod
    def load(cls, path: Path, reads: str) -> Head:
        try:
            with np.load(path, allow_pickle=False) as head:
                weight, bias = head["weight"], head["bias"]
        except (OSError, KeyError, ValueError) as exc:
            raise ExportFormatError(f"{path} is not a valid head file ({exc}); export again") from None
        return cls(weight, bias, reads)

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        products = np.ascontiguousarray(hidden, dtype=np.float32)[..., None, :] * self.weight
        return products.sum(axis=-1) + self.bias


class OneCallModel:
    """Every task of a one-call export in one session; rows are (text, task) pairs.

    ``texts`` holds each distinct input once (``input_ids, attention_mask,
    token_type_ids``); ``row_text`` and ``row_task`` say, per row, which text
    and which task. Sessions are thread-safe and nothing here changes after
    loading, so threads may call at once.
    """

    def __init__(self, session, tasks: Sequence[str], heads: dict[str, Head]):
        self.session = session
        self.task_ids = {t: i for i, t in enumerate(tasks)}
        self.heads = heads
        self._inputs = [i.name for i in session.get_inputs() if i.name in ENCODER_INPUTS]

    def hidden(self, texts: dict[str, np.ndarray], row_text: Sequence[int], row_tasks: Sequence[str],
               outputs: Sequence[str]) -> list[np.ndarray]:
        """The encoder ``outputs`` (pooler_output, last_hidden_state) per row."""
        feeds = {k: texts[k] for k in self._inputs}
        feeds["row_text"] = np.asarray(row_text, dtype=np.int64)
        feeds["row_task"] = np.fromiter((self.task_ids[t] for t in row_tasks), dtype=np.int64, count=len(row_tasks))
        return self.session.run(list(outputs), feeds)

    def logits_rows(self, texts: dict[str, np.ndarray], row_text: Sequence[int],
                    row_tasks: Sequence[str]) -> list[np.ndarray]:
        """Head logits per row, each with its own task's head."""
        groups: dict[str, list[int]] = {}
        for i, task in enumerate(row_tasks):
            groups.setdefault(task, []).append(i)
        outputs = sorted({self.heads[t].reads for t in groups})
        got = dict(zip(outputs, self.hidden(texts, row_text, row_tasks, outputs)))
        out: dict[int, np.ndarray] = {}
        for task, idx in groups.items():
            head = self.heads[task]
            out.update(zip(idx, head(got[head.reads][idx])))
        return [out[i] for i in range(len(row_tasks))]

    def task(self, name: str) -> OneCallTask:
        return OneCallTask(self, name)


class OneCallTask:
    """One task's view of a ``OneCallModel``: the ``logits(arrays)`` of the other task models."""

    def __init__(self, model: OneCallModel, task: str):
        self.model, self.name = model, task
        self.head = model.heads[task]

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        n = len(arrays["input_ids"])
        hidden = self.model.hidden(arrays, range(n), [self.name] * n, [self.head.reads])[0]
        return self.head(hidden)
