"""Ratios of every contender to (a1), (b) and (e), and the issue's goals checked against the figures."""

from __future__ import annotations

import operator

REFERENCES = ("a1", "b", "e")
GOAL_KEY = "f"
# Issue 11's goals: the chain in one call, (g), and with a shared trunk, (h); issue 19 raised (b)'s to 15x.
ONE_CALL_GOAL_KEYS = ("g", "h")
TRAINING_GOAL = 5.0  # issue 19: batches grouped by length at least 5x padding to 128


def _p50(stats: dict | None) -> float | None:
    return stats.get("p50_ms") if stats and stats.get("n") else None


def task16_ms(results: dict, key: str) -> float | None:
    """Mean over the chain's tasks of the batch-1, 16-token p50."""
    values = [v for by_len in (results["per_task_latency"].get(key) or {}).values() if (v := _p50(by_len.get("16")))]
    return round(sum(values) / len(values), 3) if values else None


def _div(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def ratios(results: dict) -> dict:
    """``speedup_*``: reference time / contender time (>1 is faster); ``memory_*``: contender RSS / reference RSS."""
    chain, fresh = results["chain_latency"], results["fresh_process"]
    return {key: {name: value for ref in REFERENCES for name, value in (
        (f"chain_speedup_vs_{ref}", _div(_p50(chain.get(ref)), _p50(chain.get(key)))),
        (f"task16_speedup_vs_{ref}", _div(task16_ms(results, ref), task16_ms(results, key))),
        (f"memory_vs_{ref}", _div(fresh.get(key, {}).get("rss_mb"), fresh.get(ref, {}).get("rss_mb"), 3)))}
        for key in chain}


def goals(results: dict) -> list[dict]:
    """The issue's goals (2-core CPU, base size, 16-token question), each with the value reached."""
    fresh = results["fresh_process"]
    ge, lt, le = operator.ge, operator.lt, operator.le
    rows = [(GOAL_KEY, "chain of (f) at least 8x faster than (b)", ">= 8", "chain_speedup_vs_b", ge, 8),
            (GOAL_KEY, "chain of (f) at least 8x faster than (a1)", ">= 8", "chain_speedup_vs_a1", ge, 8),
            (GOAL_KEY, "memory of (f) under a fifth of (a1)'s", "< 0.2", "memory_vs_a1", lt, 0.2),
            (GOAL_KEY, "cold start of (f) under 1 s", "< 1 s", fresh.get(GOAL_KEY, {}).get("cold_start_s"), lt, 1.0),
            (GOAL_KEY, "four tasks in (f) under 1.5x one int8 model's memory", "< 1.5",
             _div(fresh.get(GOAL_KEY, {}).get("rss_mb"), fresh.get("one_int8", {}).get("rss_mb")), lt, 1.5)]
    for key in ONE_CALL_GOAL_KEYS:
        rows += [(key, f"chain of ({key}) at least 3x faster than (e)", ">= 3", "chain_speedup_vs_e", ge, 3),
                 (key, f"chain of ({key}) at least 15x faster than (b)", ">= 15", "chain_speedup_vs_b", ge, 15),
                 (key, f"cold start of ({key}) no slower than one int8 model's", "<= 1.0",
                  _div(fresh.get(key, {}).get("cold_start_s"), fresh.get("one_int8", {}).get("cold_start_s")), le, 1.0)]
    rows.append(("e", "one int8 step (e) at 16 tokens within 2x the measured floor", "<= 2",
                 (results.get("versus_floor") or {}).get("e", {}).get("step_16"), le, 2.0))
    rows.append(("training", f"training in length-grouped batches at least {TRAINING_GOAL:g}x padding to 128",
                 f">= {TRAINING_GOAL:g}", (results.get("training") or {}).get("speedup"), ge, TRAINING_GOAL))
    out = []
    for key, goal, target, value, ok, bound in rows:
        if isinstance(value, str):  # a ratio's name
            value = results["ratios"].get(key, {}).get(value)
        row = {"goal": goal, "target": target, "value": value, "met": None if value is None else bool(ok(value, bound))}
        if value is None:
            row["note"] = f"not available: {results['contenders'].get(key, {}).get('reason') or 'figure missing'}"
        out.append(row)
    return out
