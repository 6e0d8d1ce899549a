"""Figures of the ONNX export on a random model (``lora_router.bench.export_figures``): sizes, RSS,
cold start, chain latency, parity.

    python benchmarks/export_figures.py --work-dir /tmp/lr-export --out benchmarks/results/export_figures.json

Each step is skipped when its output is already in --work-dir. Writes one JSON
file and prints a table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lora_router.bench.export_figures import run_export_figures
from lora_router.bench.report import figures_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/lr-export"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export_figures.json"))
    parser.add_argument("--size", default="base", choices=["tiny", "base"])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--parity-limit", type=int, default=None,
                        help="check only the first N records of each bundled test split (time on 2 cores)")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lora_router.bench").setLevel(logging.INFO)  # a line per configuration measured
    figures = run_export_figures(args.out, work_dir=args.work_dir, size=args.size, runs=args.runs,
                                 parity=not args.skip_parity, parity_limit=args.parity_limit,
                                 torch=not args.skip_torch)
    print(figures_table(figures))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
