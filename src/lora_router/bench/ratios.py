"""Ratios of every contender to (a1) and (b), and the issue's goals checked against the figures."""

from __future__ import annotations

REFERENCES = ("a1", "b", "e")
GOAL_KEY = "f"
# Issue 11's goals: the chain in one call, (g), and with a shared trunk, (h).
ONE_CALL_GOAL_KEYS = ("g", "h")


def _p50(stats: dict | None) -> float | None:
    return stats.get("p50_ms") if stats and stats.get("n") else None


def task16_ms(results: dict, key: str) -> float | None:
    """Mean over the chain's tasks of the batch-1, 16-token p50."""
    per_task = results["per_task_latency"].get(key) or {}
    values = [_p50(v.get("16")) for v in per_task.values()]
    values = [v for v in values if v]
    return round(sum(values) / len(values), 3) if values else None


def _div(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def ratios(results: dict) -> dict:
    """``speedup_*``: reference time / contender time (>1 is faster); ``memory_*``: contender RSS / reference RSS."""
    fresh = results["fresh_process"]
    out = {}
    for key in results["chain_latency"]:
        row = {}
        for ref in REFERENCES:
            row[f"chain_speedup_vs_{ref}"] = _div(_p50(results["chain_latency"].get(ref)),
                                                  _p50(results["chain_latency"].get(key)))
            row[f"task16_speedup_vs_{ref}"] = _div(task16_ms(results, ref), task16_ms(results, key))
            row[f"memory_vs_{ref}"] = _div(fresh.get(key, {}).get("rss_mb"), fresh.get(ref, {}).get("rss_mb"), 3)
        out[key] = row
    return out


def goals(results: dict) -> list[dict]:
    """The issue's goals (2-core CPU, base size, 16-token question), each with the value reached."""
    status = results["contenders"][GOAL_KEY]
    r = results["ratios"].get(GOAL_KEY, {})
    fresh = results["fresh_process"]
    f_rss = fresh.get(GOAL_KEY, {}).get("rss_mb")
    one_rss = fresh.get("one_int8", {}).get("rss_mb")
    rows = [
        ("chain of (f) at least 8x faster than (b)", ">= 8", r.get("chain_speedup_vs_b"), lambda v: v >= 8),
        ("chain of (f) at least 8x faster than (a1)", ">= 8", r.get("chain_speedup_vs_a1"), lambda v: v >= 8),
        ("memory of (f) under a fifth of (a1)'s", "< 0.2", r.get("memory_vs_a1"), lambda v: v < 0.2),
        ("cold start of (f) under 1 s", "< 1 s", fresh.get(GOAL_KEY, {}).get("cold_start_s"), lambda v: v < 1.0),
        ("four tasks in (f) under 1.5x one int8 model's memory", "< 1.5", _div(f_rss, one_rss), lambda v: v < 1.5),
    ]
    out = [_goal(*row, status.get("reason")) for row in rows]
    one_cold = fresh.get("one_int8", {}).get("cold_start_s")
    for key in ONE_CALL_GOAL_KEYS:
        r = results["ratios"].get(key, {})
        reason = results["contenders"].get(key, {}).get("reason")
        for goal, target, value, ok in (
            (f"chain of ({key}) at least 3x faster than (e)", ">= 3", r.get("chain_speedup_vs_e"), lambda v: v >= 3),
            (f"chain of ({key}) at least 10x faster than (b)", ">= 10", r.get("chain_speedup_vs_b"),
             lambda v: v >= 10),
            (f"cold start of ({key}) no slower than one int8 model's", "<= 1.0",
             _div(fresh.get(key, {}).get("cold_start_s"), one_cold), lambda v: v <= 1.0),
        ):
            out.append(_goal(goal, target, value, ok, reason))
    return out


def _goal(goal: str, target: str, value: float | None, ok, reason: str | None) -> dict:
    row = {"goal": goal, "target": target, "value": value, "met": None if value is None else bool(ok(value))}
    if value is None:
        row["note"] = f"not available: {reason or 'figure missing'}"
    return row
