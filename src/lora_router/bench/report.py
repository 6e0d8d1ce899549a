"""What every benchmark suite writes: results.json, results.md (markdown tables) and the chain's chart.png."""

from __future__ import annotations

import json
from pathlib import Path

from .contenders import CONTENDERS
from .environment import BUSY_SHARE


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _section(title: str, header: list[str], rows: list[list], intro: tuple[str, ...] = ()) -> list[str]:
    return [f"## {title}", "", *intro, *_table(header, rows)]


# Reference processes of the fresh-process table, beside the contenders.
REFERENCE_PROCESSES = {"one_int8": "one int8 model, one task (reference)",
                       "import_torch": "import torch + transformers + peft only",
                       "import_onnx": "import onnxruntime + tokenizers + numpy only"}


def _floor_section(results: dict, keys: list[str]) -> list[str]:
    """This machine's int8 peak, bandwidth and step floor, and every contender as a multiple of the floor."""
    fl = results.get("floor")
    if not fl:
        return []
    peak, mem = fl["int8_matmul"], fl["memory"]
    lengths = list(fl["step"])
    intro = (f"This machine, measured in this run: int8 matmul peak {_f(peak['gops'])} G operations/s "
             f"({peak['kernel']}, {'×'.join(str(d) for d in peak['shape_mkn'])}, {peak['threads']} threads, best of "
             f"{peak['runs']}); memory bandwidth {_f(mem['gb_per_s'], 2)} GB/s ({mem['method']}, "
             f"{mem['array_mb']} MB, best of {mem['runs']}). One step of this encoder: "
             + "; ".join(f"{n} tokens {_f(s['operations'] / 1e9, 2)} G operations → {_f(s['compute_ms'], 2)} ms, "
                         f"{_f(s['weight_bytes'] / 2**20, 0)} MiB of int8 weights → {_f(s['memory_ms'], 2)} ms: "
                         f"**floor {_f(s['floor_ms'], 2)} ms** ({s['bound']}-bound)" for n, s in fl["step"].items())
             + ".", "")
    vs = results.get("versus_floor") or {}
    rows = [[CONTENDERS[k], *(_f(vs.get(k, {}).get(f"step_{n}"), 2, "×") for n in lengths),
             _f(vs.get(k, {}).get("chain"), 2, "×")] for k in keys]
    lines = _section("Against the floor", ["contender", *(f"step, {n} tokens" for n in lengths),
                                           f"chain, in {lengths[0]}-token floor steps"], rows, intro)
    schemes = results.get("int8_schemes")
    if schemes and "error" not in schemes:
        rows = [[shape, _f(v["static"]["p50_ms"], 2), _f(v["dynamic"]["p50_ms"], 2),
                 _f(v["dynamic_over_static"], 2, "×")] for shape, v in schemes["steps"].items()]
        lines += _section("int8: static (the default) against dynamic",
                          ["tokens (rows × tokens)", "static p50 ms", "dynamic p50 ms", "dynamic / static"], rows,
                          (f"One {schemes['task']} step, merged model, the same weights quantised both ways, "
                           "interleaved; above 1× the static model is faster.", ""))
    elif schemes:
        lines += [f"int8 static against dynamic: not measured ({schemes['error']}).", ""]
    return lines


def markdown(results: dict) -> str:
    """The results as a markdown report."""
    env, dev, s, status = results["environment"], results["device"], results["settings"], results["contenders"]
    keys = [k for k in CONTENDERS if status[k]["available"]]
    ratio = {k: results["ratios"].get(k, {}) for k in keys}
    lines = [f"# lora-router bench: size {results['size']}, device {dev['used']}", "",
             f"{env['date']} · {env['cpu']['model']} · {env['cores']} cores · {_f(env['memory_total_mb'], 0)} MB RAM"
             + (f" · GPU {env['gpu']['name']}" if env.get("gpu") else ""), "",
             f"CPU flags: {', '.join(env['cpu']['flags']) or 'unknown'}. Threads: torch "
             f"{env['threads']['torch_intra_op']}, onnxruntime {env['threads']['onnxruntime_intra_op']}. "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", ""]
    if dev.get("note"):
        lines += [f"**Device:** {dev['requested']} was asked for: {dev['note']}.", ""]
    lines += [f"Runs: {s['runs']} timed after {s['warmup']} warm-up, contenders interleaved in rounds "
              f"((a2) per-task: {s['slow_runs']}; batch 32: {s['throughput_runs']}; fresh processes: "
              f"{s['cold_runs']} each; training: {s['train_steps']} steps per mode).", ""]

    bg, phases = results["background_load"], results["background_load"]["phases"]
    steal = max((p.get("steal_share", 0.0) for p in phases.values()), default=0.0)
    line = (f"Other processes used up to {bg['max_other_cpu_share']:.0%} of the CPUs during a timed phase (hypervisor "
            f"steal up to {steal:.0%}); load average {bg['loadavg_start'][0]:.2f} at the start.")
    if bg["busy"]:
        busy = [f"{p} ({phases[p]['other_cpu_share']:.0%})" for p in bg["timed"]
                if phases.get(p, {}).get("other_cpu_share", 0.0) > BUSY_SHARE]
        line = ("**The machine was busy with other work during some phases; their timings are disturbed: "
                + ", ".join(busy) + ".** " + line)
    lines += [line, ""]
    missing = [k for k in CONTENDERS if not status[k]["available"]]
    if missing:
        lines += ["**Not available:**", "", *(f"- {CONTENDERS[k]}: {status[k]['reason']}" for k in missing), ""]

    rows = [[CONTENDERS[k], *(_f(results["chain_latency"][k].get(p)) for p in ("p50_ms", "p90_ms", "p99_ms")),
             _f(results["fresh_process"].get(k, {}).get("rss_mb"), 0),
             _f(results["fresh_process"].get(k, {}).get("cold_start_s"), 2),
             *(_f(ratio[k].get(f"chain_speedup_vs_{r}"), 2, "×") for r in ("a1", "b", "e")),
             *(_f(ratio[k].get(f"memory_vs_{r}"), 2) for r in ("a1", "b"))] for k in keys]
    lines += _section("The chain (ask, 16-token question, 3 steps)",
                      ["contender", "p50 ms", "p90 ms", "p99 ms", "RSS MB", "cold start s", "speed vs a1",
                       "speed vs b", "speed vs e", "memory / a1", "memory / b"], rows)
    rows = [[CONTENDERS[k], _f(v["full_one_call"]["p50_ms"]), _f(v["full_step_by_step"]["p50_ms"]),
             _f(v["full_chain_gain"], 2, "×"), _f(v["stop_at_1_one_call"]["p50_ms"]),
             _f(v["stop_at_1_step_by_step"]["p50_ms"]), _f(v["stop_at_1_cost"], 2, "×")]
            for k, v in results["speculation"].items()]
    if rows:
        lines += _section("The chain in one call or step by step (p50 ms)",
                          ["contender", "3 steps, one call", "3 steps, step by step", "gain", "stops at 1, one call",
                           "stops at 1, step 1 alone", "cost"], rows,
                          ("A question that goes through all 3 steps, and one that stops at the first step (the first "
                           "step's labels all routed to a final route), each with every step in one call (`ask` by "
                           "default) and step by step (`OnnxRouter(speculate=False)`).", ""))
    rows = [[CONTENDERS[k], task, *(_f(by_len.get(str(n), {}).get("p50_ms")) for n in s["lengths"])]
            for k in keys for task, by_len in results["per_task_latency"].get(k, {}).items()]
    lines += _section("Per-task latency, batch 1 (p50 ms)", ["contender", "task"]
                      + [f"{n} tokens" for n in s["lengths"]], rows)
    rows = [[CONTENDERS[k], _f(ratio[k].get("task16_speedup_vs_a1"), 2, "×"),
             _f(ratio[k].get("task16_speedup_vs_b"), 2, "×")] for k in keys if k in results["ratios"]]
    lines += ["Mean over the three tasks at 16 tokens, as a speed-up:", "", *_table(["contender", "vs a1", "vs b"],
                                                                                    rows)]
    lines += _floor_section(results, keys)
    rows = [[CONTENDERS[k], _f(results["throughput"][k]["samples_per_s"]),
             _f(results["throughput"][k]["batch"].get("p50_ms"))] for k in keys if k in results["throughput"]]
    lines += _section(f"Throughput, {s['throughput_batch']} mixed requests of {s['throughput_tokens']} tokens",
                      ["contender", "samples/s", "batch p50 ms"], rows)
    rows = [[CONTENDERS.get(k) or REFERENCE_PROCESSES.get(k, k)]
            + (["failed: " + v["error"], "", "", ""] if "error" in v else
               [_f(v.get("rss_mb"), 0), _f(v.get("peak_rss_mb"), 0), _f(v.get("cold_start_s", v.get("wall_s")), 2),
                "yes" if v.get("torch_imported") else "no"]) for k, v in results["fresh_process"].items()]
    lines += _section("Fresh processes (medians)",
                      ["process", "RSS MB", "peak RSS MB", "to first answer s", "torch imported"], rows)
    if results["set_adapter"]:
        sa = results["set_adapter"]
        lines += [f"`set_adapter` (Router, {sa['n']} calls): p50 {sa['p50_ms']:.3f} ms, p90 {sa['p90_ms']:.3f} ms.", ""]

    t, dt = results["training"], results["training"]["data_tokens"]
    rows = [[mode, _f(t[mode]["samples_per_s"]), _f(t[mode]["step"].get("p50_ms")), _f(t[mode]["mean_width"])]
            for mode in ("grouped", "dynamic", "padded") if mode in t]
    lines += _section(f"Training ({t['task']}, batch {t['batch_size']}, LoRA r{t['lora']['r']}, {t['device']})",
                      ["padding", "samples/s", "step p50 ms", "mean padded width"], rows,
                      (f"Bundled data: {dt['n']} examples, tokens mean {dt['mean']}, p50 {dt['p50']:.0f}, p90 "
                       f"{dt['p90']:.0f}, max {dt['max']}.", ""))
    if t.get("speedup"):
        lines += [f"Batches grouped by length (the trainer's): {t['speedup']}× the samples/s of padding to "
                  f"{t['max_length']}; random batches padded to their longest: {t.get('dynamic_speedup')}×.", ""]
    elif t.get("dynamic_speedup"):
        lines += [f"Dynamic padding: {t['dynamic_speedup']}× the samples/s of padding to {t['max_length']}.", ""]
    rows = [[g["goal"], g["target"], _f(g["value"], 2), {True: "met", False: "missed", None: g.get("note", "–")}
             [g["met"]]] for g in results["goals"]]
    lines += _section("Goals (stated for size base on a 2-core CPU)", ["goal", "target", "reached", ""], rows)
    rows = [[CONTENDERS.get(k, k), v.get("route", v.get("error")), v.get("same_as_b", "–"),
             _f(v.get("max_confidence_diff"), 6)] for k, v in results["agreement"].items()]
    if rows:
        lines += _section("Same answers?", ["contender", "route", "route + labels as (b)", "max confidence diff"], rows)
    if results["exports"]:
        lines += ["## Exports", "", *(f"- {name}: " + (f"failed: {e['error']}" if "error" in e else
                  f"{e.get('size_mb')} MB in {e.get('seconds')} s, parity {e.get('parity')}")
                  for name, e in results["exports"].items()), ""]
    lines += ["## Notes", "", *(f"- {n}" for n in results["notes"])]
    lines += ["", f"Total run time: {results['duration_s']} s.", ""]
    return "\n".join(lines)


def write_results(out_dir: str | Path, results: dict, report: str) -> None:
    """``out_dir``/results.json (the figures) and ``out_dir``/results.md (``report``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", "utf-8")
    (out_dir / "results.md").write_text(report, "utf-8")


def serve_markdown(results: dict) -> str:
    """The serve suite as a markdown table."""
    env = results["environment"]
    lines = [f"# lora-router serve benchmark ({results['size']} export)", "",
             f"CPU: {env['cpu'].get('model', '?')}, {env['cores']} cores. Every question runs the "
             f"3-step chain; {results['questions']} different questions from the bundled chain set. Clients run in the "
             "benchmark process and share the cores with the server.", ""]
    lines += _load_table("mode", results["modes"], lambda mode: mode.replace("_", " "), ("p50", "p90", "p99"))
    ip = results["in_process"]
    lines += [f"In process (`{ip['layout']}` {ip['precision']}): `OnnxRouter.ask` p50 {ip['ask']['p50_ms']:.1f} ms "
              f"({ip['ask']['requests_per_s']:.1f} questions/s one at a time); `ask_batch` of 32: "
              f"{ip['ask_batch_32']['questions_per_s']:.1f} questions/s.", ""]
    if "capture" in results:
        c = results["capture"]
        lines += [f"Capture (`--capture DIR`): {_side_by_side(c, 'capture')}. Capture took "
                  f"{100 * c['capture_cpu_share']:.2f}% of the capturing server's CPU time "
                  f"({c['capture_cpu_us_per_answer']:.0f} µs per answer; {c['captured']} answers captured, "
                  f"{c['store_mb']} MB).", ""]
    if "shadow" in results:
        c = results["shadow"]
        lines += [f"Shadow (`--shadow DIR`, the export shadowing itself): {_side_by_side(c, 'shadow')} "
                  f"({c['throughput_ratio']:.2f}x); "
                  f"{c['shadowed']} questions shadowed, {c['dropped']} dropped from a full shadow queue.", ""]
    return "\n".join(lines + _ratio_lines(results)) + "\n"


RAY_LABELS = {"serve": "`lora-router serve` (uvicorn, 1 process, {t} threads)",
              "ray_1_replica_2_threads": "Ray Serve, 1 replica, 2 threads",
              "ray_1_replica_1_thread": "Ray Serve, 1 replica, 1 thread",
              "ray_2_replicas_1_thread": "Ray Serve, 2 replicas, 1 thread each"}


def _side_by_side(c: dict, with_it: str) -> str:
    """The sentence of a with/without comparison: clients, rounds, median requests/s of each."""
    rates = c["median_requests_per_s"]
    return (f"the service without and with it side by side, {c['clients']} clients, {c['rounds']} interleaved rounds "
            f"of {c['requests_per_round']} requests: median {rates['plain']:.1f} req/s without, "
            f"{rates[with_it]:.1f} with")


def ray_markdown(results: dict) -> str:
    """The Ray suite as a markdown table."""
    env = results["environment"]
    lines = [f"# Ray Serve against `lora-router serve` ({results['size']} export, int8, layout multi)", "",
             f"CPU: {env['cpu'].get('model', '?')}, {env['cores']} cores; load average before "
             f"{results['load_average_before'][0]:.1f}, after {results['load_average_after'][0]:.1f}. Every question "
             f"runs the 3-step chain; {results['questions']} different questions. The four services run side by "
             f"side and are measured in {results['rounds']} interleaved rounds. Clients run in the benchmark "
             "process and share the cores with the services.", "",
             *_load_table("service", results["services"],
                          lambda name: RAY_LABELS.get(name, name).format(t=results["serve_threads"]), ("p50", "p99"))]
    return "\n".join(lines + _ratio_lines(results)) + "\n"


def _load_table(first: str, groups: dict, label, percentiles: tuple[str, ...]) -> list[str]:
    """Per group (a mode, a service) and client count: requests, req/s, latency percentiles, errors."""
    rows = [[label(name), n, r["requests"], f"{r['requests_per_s']:.1f}", *(f"{r[f'{p}_ms']:.1f}" for p in percentiles),
             r["errors"]] for name, levels in groups.items() for n, r in levels.items()]
    return _table([first, "clients", "requests", "req/s", *(f"{p} ms" for p in percentiles), "errors"], rows)


def _ratio_lines(results: dict) -> list[str]:
    return [f"- {k.replace('_', ' ')}: {v}" for k, v in results["ratios"].items()]


def figures_table(figures: dict) -> str:
    """The export figures suite's runs as a markdown table."""
    rows = [[name, "error", "", "", "", ""] if "error" in r else
            [name, r["rss_mb"], r["cold_start_s"], r.get("one_forward_ms", ""), r.get("three_steps_ms", ""),
             f"{r['ask_ms']} ({r.get('ask_route', '')}, {len(r.get('ask_steps', []))} steps)" if "ask_ms" in r else ""]
            for name, r in figures["runs"].items()]
    header = ["configuration", "RSS MB", "cold start s", "one forward ms", "3-step chain ms", "ask ms (route)"]
    return "\n".join(_table(header, rows)[:-1])


def write_chart(results: dict, path: str | Path) -> None:
    """chart.png: ``chart_figure`` saved."""
    import matplotlib.pyplot as plt

    fig = chart_figure(results)
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def chart_figure(results: dict):
    """Two bar charts: chain p50 (whiskers to p90) and fresh-process RSS, per contender (a matplotlib Figure).

    Each value sits above its bar's whisker cap, clear of the whisker; the texts
    are drawn in a font that has their glyphs (lora_router.evaluation.plots).
    """
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluation.plots import drawable_text

    keys = [k for k in CONTENDERS if results["contenders"].get(k, {}).get("available")]  # older runs lack newer keys
    chain = [results["chain_latency"].get(k, {}) for k in keys]
    p50 = [c.get("p50_ms") or 0.0 for c in chain]
    p90 = [max(c.get("p90_ms") or 0.0, a) for c, a in zip(chain, p50, strict=True)]
    rss = [results["fresh_process"].get(k, {}).get("rss_mb") or 0.0 for k in keys]
    colors = ["#9e9e9e" if k in ("a1", "a2") else "#ef8a17" if k in ("b", "c") else "#2b83ba" for k in keys]
    env = results["environment"]
    title, title_font = drawable_text(f"lora-router bench · size {results['size']} · {results['device']['used']} · "
                                      f"{env['cpu']['model']} · {env['cores']} cores · {env['date'][:10]}")
    footer, footer_font = drawable_text("  ".join(f"{k}: {CONTENDERS[k][len(k) + 3:]}" for k in keys))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    ax1.bar(keys, p50, color=colors, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90, strict=True)]],
            capsize=3, error_kw={"ecolor": "#333333", "elinewidth": 1})
    ax1.set_yscale("log")
    shown = [v for v in p50 if v > 0]
    if shown:  # bars start a decade below the fastest, so short bars still read as bars; room above for labels
        ax1.set_ylim(10 ** math.floor(math.log10(min(shown)) - 0.3), max(p90) * 2.2)
    ax1.set_ylabel("ms (log), bar p50, whisker p90")
    ax1.set_title(f"ask chain, {results['settings']['chain_tokens']}-token question (label: p50)")
    for i, (v, top) in enumerate(zip(p50, p90, strict=True)):
        ax1.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}", (i, top), xytext=(0, 4), textcoords="offset points",
                     ha="center", va="bottom", fontsize=8)
    ax2.bar(keys, rss, color=colors)
    ax2.set_ylim(0, max(rss, default=0) * 1.12 or 1)
    ax2.set_ylabel("MB")
    ax2.set_title("resident memory, fresh process, all tasks loaded")
    for i, v in enumerate(rss):
        ax2.annotate(f"{v:.0f}", (i, v), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                     fontsize=8)
    fig.suptitle(title, fontproperties=title_font, fontsize=10)
    fig.text(0.5, 0.01, footer, fontproperties=footer_font, ha="center", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def redraw_chart(folder: str | Path) -> Path:
    """Draw ``folder``/chart.png again from ``folder``/results.json (no benchmark is run)."""
    folder = Path(folder)
    write_chart(json.loads((folder / "results.json").read_text("utf-8")), folder / "chart.png")
    return folder / "chart.png"
