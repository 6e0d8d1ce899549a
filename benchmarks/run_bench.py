"""Run the lora-router benchmark (what ``lora-router bench`` runs) and write its three files.

    python benchmarks/run_bench.py --size base --out benchmarks/results/base-cpu
    python benchmarks/run_bench.py --size tiny --out /tmp/bench-tiny --runs 50
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lora_router.bench import run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json, results.md, chart.png")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency figure (default 50)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the models here instead of a temp folder")
    parser.add_argument("--contenders", default=None, help="comma-separated subset of a1,a2,b,c,d,e,f")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = args.out or Path(__file__).parent / "results" / f"{args.size}-{args.device}"
    keys = tuple(k.strip() for k in args.contenders.split(",")) if args.contenders else None
    results = run_bench(args.size, args.device, out, runs=args.runs, work_dir=args.work_dir, contenders=keys)
    print(f"wrote {out}/results.json, results.md, chart.png in {results['duration_s']} s")
    for goal in results["goals"]:
        print(f"  {goal['goal']}: {goal['value']} (target {goal['target']}, met: {goal['met']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
