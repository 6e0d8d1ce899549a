"""Dynamic batching: concurrent requests' chain steps gathered into one forward pass.

Each request submits ``(task, text)`` for the step it is at; the batcher
gathers items from every request in flight into a batch bounded by rows,
padded tokens (rows x longest) and a short wait, and runs it on an inference
thread with ``predictor.predict_mixed`` (onnxruntime releases the GIL, so the
event loop keeps accepting). It waits only while other requests are in
flight that could still join: a lone client pays no wait. A question that
leaves the chain at step 1 simply submits nothing more. If a batch fails,
it is bisected: each half runs again, and only the item that fails alone
gets the error. A batch of 32 holding one bad item costs about 2 x log2(32)
= 10 more forward passes, where retrying item by item cost 32 (and logged 32
tracebacks). Each failed item is logged in one line; the traceback of an
error is logged once per distinct error. An item whose client left (its
future cancelled) is skipped and never computed.

A batch runs as groups of similar length (``length_groups``): padding a
10-token question to the 60 tokens of another in its batch costs more on a
CPU than a second call saves, so no row is padded to more than
``PAD_WASTE`` times the tokens of the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

logger = logging.getLogger(__name__)

PredictMixed = Callable[[Sequence[tuple[str, str]]], list]
PAD_WASTE = 1.25


def length_groups(lengths: Sequence[int], waste: float = PAD_WASTE) -> list[list[int]]:
    """Indices of ``lengths`` in groups of similar length: rows x longest <= ``waste`` x the group's tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    total = 0
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[i] <= waste * (total + lengths[i]):
            groups[-1].append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups


@dataclass
class _Item:
    task: str
    text: str
    tokens: int
    future: asyncio.Future
    rows: int = 0  # of the batch that computed it


class Batcher:
    """Gather ``submit(task, text)`` calls into batches for ``predict_mixed``.

    ``tokens(task, text)`` estimates an item's length in tokens (an upper
    bound is fine); ``in_flight()`` says how many questions are between
    their first and last step, so the batcher knows whether waiting can
    gather anything.
    """

    def __init__(self, predict_mixed: PredictMixed, *, executor: Executor, tokens: Callable[[str, str], int],
                 max_batch_tokens: int, max_batch_requests: int, max_wait_ms: float,
                 in_flight: Callable[[], int] = lambda: 0, metrics=None, rate=None):
        self.predict_mixed = predict_mixed
        self.executor = executor
        self.tokens = tokens
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait_s = max_wait_ms / 1000.0
        self.in_flight = in_flight
        self.metrics = metrics
        self.rate = rate  # a ThroughputMeter told of every computed batch, for Retry-After
        self._logged_errors: set[str] = set()
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._carry: _Item | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lora-router-batcher")

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize() + (self._carry is not None)

    async def submit(self, task: str, text: str) -> dict:
        """The result of ``task`` for ``text``, computed in some batch."""
        return await self._enqueue(task, text).future

    async def submit_counted(self, task: str, text: str) -> tuple[dict, int]:
        """``submit``'s result and the rows of the batch that computed it (what a trace records)."""
        item = self._enqueue(task, text)
        return await item.future, item.rows

    def _enqueue(self, task: str, text: str) -> _Item:
        self.start()
        item = _Item(task, text, self.tokens(task, text), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        self._observe_depth()
        return item

    async def close(self) -> None:
        """Answer what is queued, then stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    # ------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            first = self._carry or await self._queue.get()
            self._carry = None
            if first is None:
                return
            batch, stop = await self._gather(first)
            self._observe_depth()
            await self._run_batch(batch)
            if stop:
                return

    async def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, longest = [first], first.tokens
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_requests:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                # Waiting only helps when other questions are in flight that may still submit.
                if remaining <= 0 or self.in_flight() <= len(batch):
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:  # noqa: UP041 - distinct from TimeoutError on Python 3.10
                    break
            if item is None:
                return batch, True
            if (len(batch) + 1) * max(longest, item.tokens) > self.max_batch_tokens:
                self._carry = item
                break
            batch.append(item)
            longest = max(longest, item.tokens)
        return batch, False

    async def _run_batch(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]  # a client that left cancels its future
        if self.metrics is not None and len(live) < len(batch):
            self.metrics.skipped_steps.inc(len(batch) - len(live))
        if not live:
            return
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(live))
            self.metrics.batch_tokens.observe(len(live) * max(i.tokens for i in live))
        await self._compute(live)

    async def _compute(self, live: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            results = await loop.run_in_executor(self.executor, self._predict_grouped, live)
        except Exception as exc:  # noqa: BLE001 - bisected below: only the items that fail alone get it
            if len(live) > 1:
                half = len(live) // 2
                for part in (live[:half], live[half:]):
                    part = [item for item in part if not item.future.done()]
                    if part:
                        await self._compute(part)
            elif not live[0].future.done():
                self._log_failure(live[0], exc)
                live[0].future.set_exception(exc)
            return
        if self.rate is not None:
            self.rate.record(len(live), loop.time() - t0)
        for item, result in zip(live, results):
            if not item.future.done():  # its client may have left during the forward pass
                item.rows = len(live)
                item.future.set_result(result)

    def _log_failure(self, item: _Item, exc: Exception) -> None:
        """One line per failed item; the traceback only the first time an error of its kind and message is seen."""
        key = f"{type(exc).__qualname__}: {exc}"[:500]
        first = key not in self._logged_errors
        if first and len(self._logged_errors) < 1000:  # bounded: a flood of distinct messages cannot grow it
            self._logged_errors.add(key)
        logger.warning("a question failed in %s (%d characters): %s%s", item.task, len(item.text), key,
                       "" if first else " (traceback logged before)", exc_info=exc if first else None)

    def _predict_grouped(self, items: list[_Item]) -> list:
        """``predict_mixed`` on groups of similar length (one thread hop for all), results in ``items``' order."""
        out: list = [None] * len(items)
        for group in length_groups([i.tokens for i in items]):
            for k, result in zip(group, self.predict_mixed([(items[k].task, items[k].text) for k in group])):
                out[k] = result
        return out

    def _observe_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)

