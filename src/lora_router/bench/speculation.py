"""What the speculative ask costs: every chain step in one call against the chain step by step.

For each one-call contender, four timings, interleaved: a question that goes
through every step, and one that stops at the first step (the same chain with
the first step's labels all routed to ``route:general``), each with the steps
in one call (``speculate``) and step by step. A question that stops at step 1
pays in one call for rows it does not use; one that goes through the chain
saves calls.
"""

from __future__ import annotations

from ..core.chain import ROUTE_PREFIX, Chain
from .contenders import ONE_CALL_KEYS
from .timing import interleaved, summary

# mode -> (which chain, speculate)
MODES = {"full_one_call": ("full", True), "full_step_by_step": ("full", False),
         "stop_at_1_one_call": ("stop_at_1", True), "stop_at_1_step_by_step": ("stop_at_1", False)}


def stopping_chain(chain: Chain) -> Chain:
    """``chain`` with every label of its first step routed to ``route:general`` (later steps kept)."""
    spec = chain.to_dict()
    first = next(s for s in spec["steps"] if s["task"] == spec["start"])
    first["on"] = {label: f"{ROUTE_PREFIX}general" for label in first["on"]}
    return Chain.from_dict(spec)


def speculation_cost(loaded: dict, text: str, runs: int, warmup: int) -> dict:
    """``{key: {mode: summary}}`` for the loaded contenders whose router runs the chain in one call."""
    fns = {}
    for key in [k for k in ONE_CALL_KEYS if k in loaded]:
        router = loaded[key]
        chains = {"full": router.chain, "stop_at_1": stopping_chain(router.chain)}
        for mode, (which, speculate) in MODES.items():
            fns[(key, mode)] = _ask(router, chains[which], speculate, text)
    if not fns:
        return {}
    times = interleaved(fns, runs, warmup)
    out: dict[str, dict] = {}
    for (key, mode), t in times.items():
        out.setdefault(key, {})[mode] = summary(t)
    for row in out.values():
        p50 = {m: row[m]["p50_ms"] for m in MODES}
        row["stop_at_1_cost"] = round(p50["stop_at_1_one_call"] / p50["stop_at_1_step_by_step"], 2)
        row["full_chain_gain"] = round(p50["full_step_by_step"] / p50["full_one_call"], 2)
    return out


def _ask(router, chain: Chain, speculate: bool, text: str):
    def run():
        original = (router.chain, router.speculate)
        router.chain, router.speculate = chain, speculate
        try:
            return router.ask(text)
        finally:
            router.chain, router.speculate = original

    return run
