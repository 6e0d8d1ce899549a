"""`lora-router serve`: the chain over HTTP, on one machine (uvicorn) or as replicas on a Ray cluster."""

import dataclasses
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ..capture.writer import MIN_MAX_MB
from ..errors import require
from ..serving import ModelSource
from ..serving.host import configure_logging, serve
from ..serving.settings import API_KEY_ENV, LOG_FORMATS, ServeSettings
from . import _options as opt

RAY_ONLY = ("replicas", "address", "exports", "exports_root", "default_export", "max_exports_per_replica",
            "replica_cpus", "ship")
AT_LEAST_1 = {"type": click.IntRange(1)}
SECONDS = {"type": click.FloatRange(0), "metavar": "SECONDS"}


@click.command("serve")
@opt.onnx(help="Serve an export folder with onnxruntime (no PyTorch needed).")
@click.option("--hub", "hub_dir", type=opt.FOLDER, default=None,
              help="Serve a hub with the PyTorch router instead (development).")
@opt.base_model
@opt.kb(help="Answer from this knowledge base instead of the one shipped (it may change while serving).")
@opt.thresholds(help="Chain thresholds (repeatable).")
@opt.export_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 exposes the service to the network (set --api-key).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes on one port, each with its own models (and its own /metrics).")
@opt.from_settings(ServeSettings, max_batch_tokens=AT_LEAST_1, max_batch_requests=AT_LEAST_1,
                   max_wait_ms={"type": click.FloatRange(0, 1000)}, max_concurrent_requests=AT_LEAST_1,
                   max_client_batch=AT_LEAST_1, max_question_chars=AT_LEAST_1,
                   api_key={"envvar": API_KEY_ENV, "show_envvar": True}, api_key_file={"type": opt.FILE},
                   cors_origins={"flag": "--cors-origin", "metavar": "ORIGIN"},
                   log_format={"type": click.Choice(LOG_FORMATS)}, otel={"is_flag": True},
                   capture={"type": click.Path(file_okay=False), "metavar": "DIR"},
                   capture_max_mb={"type": click.FloatRange(min=MIN_MAX_MB), "metavar": "MB"},
                   max_queued_questions=AT_LEAST_1, request_timeout_s={"flag": "--request-timeout", **SECONDS},
                   body_timeout_s={"flag": "--body-timeout", **SECONDS},
                   header_timeout_s={"flag": "--header-timeout", **SECONDS},
                   max_header_bytes={"type": click.IntRange(1024)},
                   allowed_hosts={"flag": "--allowed-host", "metavar": "HOST"},
                   shadow={"type": opt.FOLDER, "metavar": "DIR"},
                   shadow_share={"type": click.FloatRange(0, 1, min_open=True), "metavar": "SHARE"},
                   shadow_queue=AT_LEAST_1, reload_unchecked={},
                   promote_compare={"metavar": "CHAIN_FILE"})
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--engine", type=click.Choice(["uvicorn", "ray"]), default="uvicorn", show_default=True,
              help="uvicorn: one machine. ray: replicas on a Ray cluster (the ray extra), several exports.")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1),
              help="[ray] Replicas of the service, each with its own models.")
@click.option("--address", default=None, metavar="auto|ADDR",
              help="[ray] Join this Ray cluster (auto: the one `ray start` made here) [default: start one].")
@click.option("--export", "exports", multiple=True, metavar="ID=DIR",
              help="[ray] Also serve this export under ID (repeatable); requests name it in the "
                   "serve_multiplexed_model_id header. --onnx DIR is export 'default'.")
@click.option("--exports-root", type=opt.FOLDER, default=None,
              help="[ray] Serve every export folder under DIR, by its folder name (loaded when first asked).")
@click.option("--default-export", default=None, metavar="ID",
              help="[ray] The export answering requests that name none [default: --onnx, or the only --export].")
@click.option("--max-exports-per-replica", default=3, show_default=True, type=click.IntRange(1),
              help="[ray] Exports one replica holds; the least recently used is unloaded for another.")
@click.option("--replica-cpus", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="[ray] CPUs each replica reserves (and onnxruntime threads, rounded down, at least 1).")
@click.option("--ship", is_flag=True,
              help="[ray] Upload --exports-root with the job (at most 512 MiB zipped) instead of reading it from "
                   "a path every node shares.")
def serve_cmd(onnx, hub_dir, base_model, host, port, workers, log_level, engine, **params) -> None:
    """Serve the chain over HTTP: POST /v1/ask, /v1/feedback, /v1/tasks/TASK/predict, /metrics, /docs.

    Needs the serve extra: pip install "lora-router[serve]". Concurrent
    requests are batched per chain step. SIGTERM stops after answering what
    is in flight. To promote a new export written into the served folder
    (`lora-router export --out DIR` keeps the old one as DIR.previous):
    SIGHUP, or POST /admin/reload with the key; POST /admin/rollback serves
    DIR.previous again. Each reloads every worker (--workers N) or every Ray
    replica (a rolling update, one replica at a time) without dropping a
    request; a candidate that fails its parity figures or is damaged is
    refused and the old models keep serving.

    \b
    lora-router serve --onnx ./export
    curl -s localhost:8080/v1/ask -H 'content-type: application/json' \
      -d '{"question": "帮我把sales_2024.csv导入到ODS层"}'
    curl -s localhost:8080/v1/tasks/question_classifier/predict -H 'content-type: application/json' \
      -d '{"inputs": "数据清洗流程是什么？"}'
    lora-router serve --hub ./hub --base-model ./base --port 9000 --log-format json
    lora-router serve --onnx ./export --capture ./captures --capture-max-mb 2048
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 lora-router serve --onnx ./export --otel
    lora-router serve --onnx ./export --shadow ./candidate --capture ./captures
    curl -X POST localhost:8080/admin/reload -H "authorization: Bearer $KEY"
    lora-router serve --engine ray --onnx ./export --replicas 2
    lora-router serve --engine ray --address auto --exports-root /mnt/exports --default-export team-a
    lora-router serve --engine ray --onnx ./export --shadow /mnt/candidate --shadow-share 0.1

    With --engine ray, --shadow runs the candidate on every replica beside the
    default export (--onnx or --default-export) only; requests naming another
    export are not shadowed. Each replica's /metrics counts its own.
    """
    require("fastapi", "serve")
    if click.get_current_context().get_parameter_source("api_key") == ParameterSource.COMMANDLINE:
        click.secho(f"warning: --api-key on the command line is visible to every user of this machine (ps); "
                    f"use {API_KEY_ENV} or --api-key-file", fg="yellow", err=True)
    settings = opt.take_settings(ServeSettings, params)
    if settings.otel:
        from ..serving.tracing import require_otel

        require_otel()  # here, with the install command, rather than in every worker or replica
    ray = {name: params.pop(name) for name in RAY_ONLY}
    options = opt.predictor_options(**params)
    if settings.shadow:
        _check_candidate(settings.shadow)
    if engine == "ray":
        if hub_dir is not None or workers > 1:
            raise click.UsageError("--engine ray serves exports (--onnx, --export, --exports-root) and scales "
                                   "with --replicas; --hub and --workers are for --engine uvicorn")
        return _serve_on_ray(onnx, settings, options, host=host, port=port, log_level=log_level, **ray)
    if onnx is None and hub_dir is None:
        raise click.UsageError("give --onnx DIR (an export) or --hub DIR (a hub, for development)")
    if onnx is not None:
        from ..backends.onnx import read_manifest

        read_manifest(onnx)  # a folder that is not an export fails here, before the server starts
    source = ModelSource(onnx=onnx and str(onnx), hub=hub_dir and str(hub_dir), base_model=base_model, options=options)
    _warn_if_open(host, settings)
    sys.exit(serve(source, settings, host=host, port=port, workers=workers, log_level=log_level))


def _check_candidate(folder: str) -> None:
    """A --shadow folder that is not an export fails here, before a server or a cluster starts (one that is but
    cannot load stops the server, or fails the replicas, with the reason)."""
    from ..backends.onnx import read_manifest
    from ..errors import ExportFormatError

    try:
        read_manifest(folder)
    except ExportFormatError as exc:
        raise click.BadParameter(str(exc), param_hint="--shadow") from None


def _warn_if_open(host: str, settings: ServeSettings) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.key():
        click.secho(f"warning: listening on {host} without --api-key: anyone who reaches it can ask", fg="yellow",
                    err=True)


def _serve_on_ray(onnx, settings, options, *, exports, replicas, replica_cpus, address, host, port, ship, log_level,
                  **catalog) -> None:
    from ..serving.ray import EXPORT_HEADER, ExportCatalog
    from ..serving.ray_host import serve_exports

    folders = {}
    for item in exports:
        export_id, sep, folder = item.partition("=")
        if not sep or not export_id or not folder:
            raise click.BadParameter(f"{item!r} is not ID=DIR", param_hint="--export")
        folders[export_id] = Path(folder)
    catalog = ExportCatalog.of_folders(onnx, folders, **catalog)
    if settings.shadow:  # absolute, as the exports' folders: replicas run in other processes, on other nodes
        settings = dataclasses.replace(settings, shadow=str(Path(settings.shadow).resolve()))
    configure_logging(settings.log_format, log_level)
    _warn_if_open(host, settings)

    def ready(url: str) -> None:
        click.echo(f"serving on Ray Serve at {url} ({replicas} replica{'s' * (replicas > 1)}; exports: "
                   f"{', '.join(catalog.known())}; default: {catalog.default or 'none'})")
        if settings.shadow:
            click.echo(f"shadowing the default export with {settings.shadow} on every replica "
                       f"(share {settings.shadow_share:g}; counts in each replica's /metrics)")
        click.echo(f"name an export with the header {EXPORT_HEADER}: ID; Ctrl-C or SIGTERM stops")

    sys.exit(serve_exports(catalog, options, settings, replicas=replicas, replica_cpus=replica_cpus,
                           address=address, host=host, port=port, ship=ship, on_ready=ready))
