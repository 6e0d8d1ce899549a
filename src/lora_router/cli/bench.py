"""`lora-router bench`: latency, memory, cold start and training, or the service under load."""

from pathlib import Path

import click

from ..errors import require
from . import _options as opt


@click.command("bench")
@click.option("--size", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="tiny: a quick check of the harness; base: bert-base-chinese's exact shape (minutes).")
@opt.device
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Where results.json, results.md and chart.png go.")
@click.option("--runs", type=int, default=None, help="Timed runs per figure [default: 50].")
@click.option("--serve", "serve_mode", is_flag=True,
              help="Benchmark `lora-router serve` instead: requests/s and p50/p99 at 1, 8, 32 clients, dynamic "
                   "batching on and off, against in-process OnnxRouter.ask.")
@click.option("--export", "export_dir", type=opt.FOLDER, default=None,
              help="With --serve: the export to serve [default: a random model of --size, exported int8].")
@click.option("--soak", "soak", default=None, metavar="DURATION",
              help="With --serve: a soak run instead (e.g. 10m): good clients alone for half the time, then with 10% "
                   "hostile and abandoned requests; good-request throughput and p99 in each half, the server's RSS "
                   "and open files at the start and the end.")
@opt.quiet
def bench_cmd(size, device, out_dir, runs, serve_mode, export_dir, soak, quiet) -> None:
    """Measure latency, memory, cold start and training: the original tool's way against the router and ONNX.

    Builds a random model of the chosen size (latency does not depend on the
    weight values) with random adapters, times every contender interleaved in
    rounds, and writes results.json, a markdown table and a chart.
    """
    if soak is not None:
        if not serve_mode:
            raise click.UsageError("--soak runs the service: give --serve --soak DURATION")
        require("fastapi", "serve")
        from ..bench.soak import parse_duration, run_soak

        try:
            seconds = parse_duration(soak)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--soak") from None
        run_soak(out_dir, duration_s=seconds, size=size, export_dir=export_dir, progress=not quiet)
        written = [out_dir / "results.json", out_dir / "results.md"]
    elif serve_mode:
        require("fastapi", "serve")
        from ..bench.serve import run_serve_bench

        run_serve_bench(out_dir, size=size, export_dir=export_dir, requests=runs or 200, progress=not quiet)
        written = [out_dir / "results.json", out_dir / "results.md"]
    else:
        require("torch")
        from ..bench import run_bench

        run_bench(size=size, device=device, out_dir=out_dir, runs=runs, progress=not quiet)
        written = [out_dir / "results.json", out_dir / "results.md", out_dir / "chart.png"]
    click.echo((out_dir / "results.md").read_text("utf-8"))
    click.echo(f"written: {', '.join(map(str, written))}")
