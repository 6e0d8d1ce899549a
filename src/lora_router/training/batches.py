"""Which examples go together in a training batch: similar lengths, in a shuffled order.

A batch costs what its longest example costs: every row is padded to it.
Batches drawn at random from the bundled data are padded to 35 tokens on
average for a mean length of 18.5, so about half of each step computed
padding. Grouping examples of similar length into a batch removes most of
it (docs/performance.md). The order stays random where it matters: the
examples are shuffled before they are grouped (examples of equal length
meet different partners every epoch), and the batches are shuffled after,
so no epoch runs from short to long.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Examples are sorted by length within windows of this many batches, as Transformers' LengthGroupedSampler
# does: a window wider than the data sorts it all, and the bundled tasks are all smaller than one window.
GROUP_BATCHES = 50


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, *,
                  group_by_length: bool = True) -> list[list[int]]:
    """The example indices of each batch of one epoch, in the order they are trained on.

    Shuffled with ``seed``; with ``group_by_length``, each window of
    ``GROUP_BATCHES`` batches is sorted by length before it is cut into
    batches, and the batches are shuffled again.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])  # stable: ties stay shuffled
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches
