"""The cascade (``--cascade``) against the adapters alone on the bundled chain set (``lora_router.bench.cascade``).

    lora-router export --cascade --hub HUB --base-model BASE --out /tmp/lr-cascade
    python benchmarks/cascade_bench.py --export /tmp/lr-cascade --out benchmarks/results/cascade-tiny-cpu.json

Prints and writes, per mode (the layout's default ask, step by step): the share
of classification steps and questions the n-gram model decides, route
accuracy, ask p50/p90 per question for both, timed in the same rounds, and the
time of the classification steps alone (routes differ, so the chains do).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lora_router.bench.cascade import measure_cascade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="an export made with --cascade")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="times every chain question is asked of each")
    parser.add_argument("--layout", default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--note", default="", help="what the machine was doing (shared, quiet, ...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = measure_cascade(args.export, rounds=args.rounds, layout=args.layout, precision=args.precision)
    figures["note"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"{figures['layout']} {figures['precision']}, {figures['questions']} chain questions x {args.rounds}")
    for mode, f in figures["modes"].items():
        a, c = f["adapters"], f["cascade"]
        print(f"{mode:13s} n-gram decides {c['ngram_step_share']:.1%} of classification steps, "
              f"{c['ngram_question_share']:.1%} of questions; route accuracy {a['route_accuracy']:.4f} -> "
              f"{c['route_accuracy']:.4f}; p50 {a['latency']['p50_ms']:.2f} -> {c['latency']['p50_ms']:.2f} ms "
              f"({f['p50_ratio_adapters_over_cascade']:.2f}x); classification steps p50 "
              f"{a['classification_ms']['p50']:.2f} -> {c['classification_ms']['p50']:.2f} ms "
              f"({f['classification_p50_ratio_adapters_over_cascade']:.2f}x)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
