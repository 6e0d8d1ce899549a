"""Task models over onnxruntime sessions: head logits for a padded batch.

``MergedTaskModel``: one session per task (adapter merged, head in the graph).
``SharedTaskModel``: one encoder session for every task; the task's LoRA
matrices come in as an onnxruntime ``LoraAdapter`` activated per run, and its
head (a single linear layer) is applied in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ExportFormatError

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _feeds(session, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return {k: arrays[k] for k in names if k in ENCODER_INPUTS}


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
        try:
            with np.load(head_path, allow_pickle=False) as head:
                weight, bias = head["weight"], head["bias"]
        except (OSError, KeyError, ValueError) as exc:
            raise ExportFormatError(f"{head_path} is not a valid head file ({exc}); export again") from None
        self.weight_t = np.ascontiguousarray(weight.T, dtype=np.float32)
        self.bias = bias.astype(np.float32)

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        hidden = self.session.run([self.reads], {k: arrays[k] for k in self._inputs}, self.run_options)[0]
        return hidden @ self.weight_t + self.bias
