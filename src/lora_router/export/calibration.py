"""What static int8 is calibrated on: each task's own training texts, as the model sees them.

The texts are the task's training split (the bundled one, or the file its
``task.json`` names when it is still there; ``calibration_records`` overrides
both). A task whose data is gone is calibrated on the bundled training texts
of every task, with a warning: they come from the same domain, and the
parity gate still checks the result. Pair-ranking tasks are calibrated on the
(question, phrasing) pairs their knowledge base retrieves for those questions,
which is what the cross-encoder scores at run time.

The feeds per layout (``feeds_for``): merged, the task's texts; shared, the
texts with the task's LoRA matrices fed in; one-call layouts, rows of the
task's texts tagged with the task.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config import PAIR_RANKING, TaskSpec
from ..data import Record
from ..encoding import TextEncoder

logger = logging.getLogger(__name__)

TEXTS_PER_TASK = 32  # spread over the split: a base-size calibration forward pass of 32 questions takes seconds
BATCH = 16


def training_records(task: str, spec: TaskSpec, data_source: str | None,
                     given: dict[str, Sequence[Record]] | None = None) -> list[Record]:
    """The records ``task`` is calibrated on (see the module docstring for the order tried)."""
    from ..data import bundled_tasks, load_bundled
    from ..data.records import read_records, records_for
    from ..errors import LoraRouterError

    if given and task in given:
        return list(given[task])
    if data_source == "bundled" and task in bundled_tasks():
        return load_bundled(task, "train")
    if data_source and data_source != "bundled" and Path(data_source).is_file():
        try:
            records = records_for(read_records(data_source, extra_tasks=[spec]), spec)
        except LoraRouterError:
            records = []
        if records:
            return records
    warnings.warn(f"static int8: the training data of task {task!r} ({data_source or 'not recorded'}) is not "
                  "there; calibrating on the bundled training texts of every task instead (the parity gate "
                  "checks the result; pass calibration_records to use your own)", stacklevel=3)
    return [r for t in bundled_tasks() for r in load_bundled(t, "train")]


def spread(records: Sequence[Record], n: int = TEXTS_PER_TASK) -> list[Record]:
    """At most ``n`` records taken evenly across ``records`` (deterministic)."""
    if len(records) <= n:
        return list(records)
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def encoded_inputs(spec: TaskSpec, encoder: TextEncoder, records: Sequence[Record], answerer=None) -> list:
    """The model inputs of ``records``: texts, or for pair ranking the (question, phrasing) pairs retrieved."""
    texts = [r.input for r in records]
    if spec.kind != PAIR_RANKING:
        return encoder.encode_batch(texts, warn=False)
    pairs = [p for q in texts for p in answerer.pairs(q, answerer.retrieve(q))]
    pairs = spread(pairs, TEXTS_PER_TASK)  # type: ignore[arg-type]
    return encoder.encode_batch([p[0] for p in pairs], [p[1] for p in pairs], warn=False) if pairs else []


def feeds_for(layout: str, inputs: dict[str, tuple[TextEncoder, list]], *, task_ids: dict[str, int] | None = None,
              lora_feeds: dict[str, dict[str, np.ndarray]] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Padded calibration batches of every task for ``layout``'s graph.

    ``inputs``: task -> (its encoder, its encoded inputs). ``task_ids``: the
    one-call graph's task order; ``lora_feeds``: the shared encoder's LoRA
    inputs per task.
    """
    for task, (encoder, encoded) in inputs.items():
        for i in range(0, len(encoded), BATCH):
            feed = encoder.pad(encoded[i : i + BATCH])
            n = len(feed["input_ids"])
            if task_ids is not None:
                feed["row_text"] = np.arange(n, dtype=np.int64)
                feed["row_task"] = np.full(n, task_ids[task], dtype=np.int64)
            if lora_feeds is not None:
                feed.update(lora_feeds[task])
            yield feed
