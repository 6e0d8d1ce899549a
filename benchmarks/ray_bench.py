"""Ray Serve against plain ``lora-router serve`` (``lora_router.bench.ray``): 1 and 16 clients.

Ray's services listen on every network interface, so run this in a network
namespace of its own (as root)::

    unshare --net --pid --fork --mount-proc sh -c \\
        'ip link set lo up && python benchmarks/ray_bench.py --out benchmarks/results/ray-cpu'

The export is a random base-size model (int8, layout multi) made first unless
``--export DIR`` names one; ``--work-dir`` keeps it for the next run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lora_router.bench.ray import CLIENTS, run_ray_bench
from lora_router.bench.report import ray_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray-cpu")
    parser.add_argument("--export", type=Path, default=None, help="an export to serve [default: make one]")
    parser.add_argument("--size", choices=("tiny", "base"), default="base", help="of the export made")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the export made here")
    parser.add_argument("--requests", type=int, default=120, help="requests per level (at least 20 per client)")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (each takes requests/rounds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    results = run_ray_bench(args.out, export_dir=args.export, size=args.size, work_dir=args.work_dir,
                            requests=args.requests, clients=tuple(int(n) for n in args.clients.split(",")),
                            rounds=args.rounds)
    print(ray_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
