"""What the CLI prints: errors as exit codes, JSON, tables, and each document's printer."""

import json
import sys
import unicodedata
import warnings

import click

from ..adapters.manifest import TaskManifest
from ..config import PAIR_RANKING, SEQUENCE_CLASSIFICATION, SPAN_EXTRACTION
from ..errors import InputError, LoraRouterError

# Per kind: (key, name) of the figures `eval` shows, the figure `train` compares with the baseline's (a figure a
# reader knows, not evaluation.metrics.headline), and the agreement and near-ties columns of the parity gate.
FIGURES = {
    SEQUENCE_CLASSIFICATION: [("accuracy", "accuracy"), ("macro_f1", "macro-F1")],
    SPAN_EXTRACTION: [("precision", "exact-span precision"), ("recall", "exact-span recall"),
                      ("f1", "exact-span F1"), ("exact_match", "whole-record match")],
    PAIR_RANKING: [("top1", "top-1"), ("mrr", "MRR"), ("no_answer_precision", "no-answer precision"),
                   ("no_answer_recall", "no-answer recall"), ("answer_accuracy", "answer accuracy")],
}
BASELINE_FIGURE = {SEQUENCE_CLASSIFICATION: "accuracy", SPAN_EXTRACTION: "f1", PAIR_RANKING: "top1"}
PARITY = {SEQUENCE_CLASSIFICATION: ("label_agreement", "near_ties"), PAIR_RANKING: ("answer_agreement", "near_ties"),
          SPAN_EXTRACTION: ("span_agreement", "near_tie_tokens")}


class ErrorsAsMessages(click.Group):
    """A group whose commands turn library errors into one-line messages and exit codes, never a traceback."""

    def invoke(self, ctx: click.Context):
        warnings.showwarning = lambda message, *_, **__: click.secho(f"warning: {message}", fg="yellow", err=True)
        try:
            return super().invoke(ctx)
        except LoraRouterError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2 if isinstance(exc, InputError) else 1)
        except KeyboardInterrupt:
            click.secho("interrupted; nothing was half written", fg="red", err=True)
            sys.exit(130)


def dump(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(_width(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    click.secho("  ".join(_pad(h, w) for h, w in zip(header, widths)), bold=True)
    for r in rows:
        click.echo("  ".join(_pad(str(c), w) for c, w in zip(r, widths)))


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, width: int) -> str:
    return s + " " * (width - _width(s))


def fmt(x, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def print_problems(file, problems: list[tuple[int, str]], as_json: bool, summary: str = "", **counts) -> None:
    """What `data check` and `kb check` say: `line N: what is wrong` per problem, then the verdict; or JSON."""
    if as_json:
        dump({"file": str(file), **counts, "problems": [{"line": n, "message": m} for n, m in problems]})
        return
    for n, msg in problems:
        click.echo(f"line {n}: {msg}" if n else msg)
    verdict = click.style("ok", fg="green") if not problems else click.style(f"{len(problems)} bad", fg="red")
    click.echo(f"{file}: {summary}{verdict}")


def print_label_tables(m: dict) -> None:
    """Per-label precision/recall/F1 and the confusion matrix of a classification task's metrics."""
    rows = [[label, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])]
            for label, v in m["per_label"].items()]
    table(rows, ["label", "precision", "recall", "f1", "support"])
    click.echo("confusion matrix (rows gold, columns predicted):")
    table([[lab, *map(str, row)] for lab, row in zip(m["labels"], m["confusion_matrix"])],
          ["", *[str(i) for i in range(len(m["labels"]))]])


def print_trained(manifest: TaskManifest) -> None:
    """What `train` reports of one adapter: its metrics, best epoch, baseline and temperature."""
    task, kind, m = manifest.name, manifest.kind, manifest.metrics
    if kind == SEQUENCE_CLASSIFICATION:
        click.echo(f"{task}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']})")
        print_label_tables(m)
    elif kind == PAIR_RANKING:
        click.echo(f"{task}: top-1 {m['top1']:.4f}  MRR {m['mrr']:.4f}  no-answer P {m['no_answer_precision']:.4f} "
                   f"R {m['no_answer_recall']:.4f}  (n={m['n']}, answerable {m['n_answerable']})")
    else:
        click.echo(f"{task}: exact-span precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
                   f"F1 {m['f1']:.4f}  whole-record match {m['exact_match']:.4f}  (n={m['n']})")
    stop = manifest.early_stop
    ran = f" of {stop['after_epoch']} run; stopped early: {stop['reason']}" if stop else ""
    click.echo(f"  version {manifest.version}, best epoch {manifest.best_epoch}{ran}, "
               f"{manifest.train_samples_per_second} samples/s, log {manifest.log}")
    files, data = manifest.data.get("files", []), manifest.data
    if len(files) > 1 or data.get("duplicates_folded") or data.get("conflicts_resolved"):
        used = ", ".join(f"{f['file']} ({f['used']} of {f['lines']} lines)" for f in files)
        click.echo(f"  trained on {used}; {data.get('duplicates_folded', 0)} duplicate(s) folded, "
                   f"{data.get('conflicts_resolved', 0)} conflict(s) settled by --prefer-last")
    base = (manifest.baseline or {}).get("metrics")
    if base:  # the same figure of the simple baseline (evaluation/baselines.py), on the same split
        key = BASELINE_FIGURE[kind]
        click.echo(f"  baseline ({manifest.baseline['name']}): {key} {base[key]:.4f}")
    cal = manifest.calibration
    if cal:
        click.echo(f"  confidence: temperature {cal['temperature']:.3g}, ECE {cal['ece_before']:.4f} -> "
                   f"{cal['ece_after']:.4f} on the {cal['fitted_on']} it was fitted on")


def print_eval(task: str, kind: str, m: dict, base: dict | None, where: str) -> None:
    """`eval --task`: the adapter's figures beside the baseline's, calibration, and per-label tables."""
    b = (base or {}).get("metrics")
    click.secho(f"{task} on {where} (n={m['n']})", bold=True)
    rows = [[name, f"{m[key]:.4f}", f"{b[key]:.4f}" if b else "-"] for key, name in FIGURES[kind]]
    cal = m.get("calibration")
    if cal:
        rows += [["ECE (calibration error)", f"{cal['ece_after']:.4f}", f"{b['ece']:.4f}" if b else "-"],
                 ["ECE before temperature", f"{cal['ece_before']:.4f}", ""]]
        if "ece_after_cross_fitted" in cal:
            rows.append(["ECE after, cross-fitted", f"{cal['ece_after_cross_fitted']:.4f}", ""])
    table(rows, ["figure", "adapter", "baseline"])
    if b:
        fitted = f", fitted on {base['trained_on']}" if base.get("trained_on") else ""
        click.echo(f"baseline: {base['name']}{fitted}")
    elif base is not None:
        click.echo(f"baseline: none ({base.get('reason')})")
    if cal:
        if cal["fitted_on"]:
            same = (" (these same records: the ECE after it is optimistic; the cross-fitted figure fits T on "
                    "4/5 of them and measures the other 1/5)") if cal["fitted_on_this_data"] else ""
            click.echo(f"confidence: temperature {cal['temperature']:.3g} fitted on the {cal['fitted_on']} at "
                       f"training{same}")
        else:
            click.echo("confidence: no temperature (adapter trained before calibration; retrain to fit one)")
    if kind == SEQUENCE_CLASSIFICATION:
        print_label_tables(m)


def print_chain_eval(r: dict, path, source: str) -> None:
    """`eval --chain`: route accuracy, per-route table, file names, answers, confusion, where it went wrong."""
    click.secho(f"chain on {path} ({source}), n={r['n']}", bold=True)
    click.echo(f"route accuracy {r['route_accuracy']:.4f}   end to end (route, files, answer all right) "
               f"{r['end_to_end_accuracy']:.4f}   uncertain {r['uncertain']}")
    table([[route, fmt(v["precision"]), fmt(v["recall"]), str(v["support"]), str(v["predicted"])]
           for route, v in r["routes"].items()], ["route", "precision", "recall", "expected", "given"])
    fn, an = r["file_names"], r["answers"]
    click.echo(f"file names, exact set, on task questions routed to task: {fmt(fn['exact_set_accuracy'])} "
               f"(n={fn['n']})")
    click.echo(f"answers, right entry or rightly none, on answer questions routed to answer: "
               f"{fmt(an['accuracy'])} (n={an['n']})")
    click.echo("route confusion (rows expected, columns given):")
    conf = r["route_confusion"]
    table([[g, *map(str, row)] for g, row in zip(conf["rows"], conf["matrix"])], ["", *conf["labels"]])
    if r["wrong_at"]:
        seen = {k for v in r["wrong_at"].values() for k in v}
        reasons = [k for k in ("label", "below threshold", "not trained", "file names", "answer") if k in seen]
        reasons += sorted(seen - set(reasons))
        click.echo("where the wrong ones went wrong (the first step that decided against the expected route, "
                   "or the end step that gave the wrong files or answer):")
        table([[step, *[str(v.get(k, "")) for k in reasons]] for step, v in r["wrong_at"].items()],
              ["step", *reasons])


def print_parity(report: dict, kinds: dict[str, str]) -> None:
    """The parity gate of an export: per task, layout and precision, the metric, its drop, agreement, ties."""
    rows = []
    for task, layouts in report.items():
        for layout, precisions in layouts.items():
            for precision, f in precisions.items():
                agreement, ties = (f.get(key) for key in PARITY[kinds[task]])
                rows.append([task, layout, precision, f.get("metric", "-"), fmt(f.get("metric_pytorch"), ".2f"),
                             fmt(f.get("metric_onnx"), ".2f"), fmt(f.get("metric_drop_points"), "+.2f"),
                             fmt(agreement, ".2%"),
                             "-" if ties is None else f"{ties}{' tokens' * (kinds[task] == SPAN_EXTRACTION)}",
                             fmt(f["max_abs_logit_diff"], ".2g")])
    click.echo("parity gate (held-out split; drop = PyTorch minus ONNX, in points; near-ties: top-2 gap < 0.05):")
    table(rows, ["task", "layout", "precision", "metric", "pytorch", "onnx", "drop", "agreement", "near-ties",
                 "max |Δlogit|"])


def print_cascade(cascade: dict) -> None:
    """The cascade of an export: per task and exported run, its threshold and held-out figures."""
    rows = []
    for task, info in cascade["tasks"].items():
        held_out = info["held_out"]
        for run, f in held_out["runs"].items():
            rows.append([task, run, fmt(info["threshold"], ".4f"), f"{held_out['ngram_accuracy']:.2f}",
                         f"{f['adapter_accuracy']:.2f}", f"{f['cascade_accuracy']:.2f}", f"{f['ngram_share']:.1f}%"])
    click.echo(f"cascade (held-out accuracy, %; the n-gram model answers at or above the threshold; at most "
               f"{cascade['max_drop']} points below the better alone; threshold - : never):")
    table(rows, ["task", "run", "threshold", "n-gram", "adapter", "cascade", "n-gram decides"])


def print_answer(out: dict, specs: dict) -> None:
    """A chain answer: one row per step (``specs`` by task name), then the route, files, answer and note."""
    rows = []
    for step in out["steps"]:
        res, kind = step["result"], specs[step["task"]].kind
        if kind == SEQUENCE_CLASSIFICATION:
            what, conf = res["predicted_label"], f"{res['confidence']:.3f}"
        elif kind == SPAN_EXTRACTION:
            what, conf = ", ".join(res["file_names"]) or "(no file)", "-"
        else:
            what, conf = res.get("kb_id") or "(no answer)", f"{res.get('confidence', 0):.3f}"
        rows.append([step["task"], what, conf, f"{step['ms']:.1f}", res.get("decided_by", "adapter")])
    click.secho(out["question"], bold=True)
    cascade = any("decided_by" in step["result"] for step in out["steps"])  # --cascade: say which model decided
    if rows:
        table([row if cascade else row[:-1] for row in rows],
              ["step", "result", "confidence", "ms", "decided by"][: 5 if cascade else 4])
    if out["route"]:
        click.echo(f"route: {click.style(out['route'], fg='cyan', bold=True)}")
    for name, value in (("files", ", ".join(out.get("file_names") or ())), ("answer", out.get("answer")),
                        ("note", out.get("note"))):
        if value:
            click.echo(f"{name}: {value}")


def print_compare(r: dict) -> None:
    """`eval --compare`: each metric of OLD and NEW with the difference and its interval, McNemar, the flips."""
    click.secho(f"{r['task']} on {r['data']} (n={r['n']}): OLD {r['old']}  vs  NEW {r['new']}", bold=True)
    conf = f"{r['confidence']:.0%} interval"
    table([[m["name"] + (" (headline)" if m["metric"] == r["headline"] else ""), fmt(m["old"]), fmt(m["new"]),
            f"{m['difference']:+.4f}" if m["difference"] is not None else "-",
            f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]" if m["ci_low"] is not None else "-"]
           for m in r["metrics"]], ["metric", "OLD", "NEW", "NEW - OLD", conf])
    t = r["mcnemar"]
    stat = f", chi2 {t['statistic']:.3f}" if t["statistic"] is not None else ""
    click.echo(f"McNemar ({t['method']}{stat}): {t['right_to_wrong']} right -> wrong, {t['wrong_to_right']} "
               f"wrong -> right, p = {t['p_value']:.4g}")
    colour = {"worse": "red", "better": "green"}.get(r["verdict"])
    click.secho(f"verdict: NEW is {r['verdict']}" if colour else f"verdict: {r['verdict']} (alpha {r['alpha']:g})",
                fg=colour, bold=True)
    for key, title in (("right_to_wrong", "right -> wrong"), ("wrong_to_right", "wrong -> right")):
        if r[key]:
            click.echo(f"{title} ({len(r[key])}):")
            table([[str(q["line"]), q["question"], str(q["gold"]), str(q["old"]), str(q["new"])] for q in r[key]],
                  ["line", "question", "expected", "OLD", "NEW"])
