"""Run the app on uvicorn: one process, or ``--workers N`` processes on one port.

SIGTERM (or Ctrl-C) stops accepting, answers what is in flight, and exits 0;
SIGHUP reloads the models (``Service.reload``). Logs go to stderr as text or
one JSON object per line (``--log-format json``), access lines included.

With ``--workers N``, SIGHUP to the parent is passed on to every worker, and
each reloads in place as a single process does (load beside, check, swap; a
damaged export is refused and its old models keep serving). uvicorn's own
SIGHUP restarts the workers instead: requests in flight on the old ones were
dropped, and a new worker that could not load its models replaced a good
one, since uvicorn counts a worker ready before its models are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from ..backends.source import ModelSource
from ..errors import require
from .admin import SUPERVISOR_ENV
from .settings import ServeSettings

SOURCE_ENV = "LORA_ROUTER_SERVE_SOURCE"
SETTINGS_ENV = "LORA_ROUTER_SERVE_SETTINGS"
GRACEFUL_SHUTDOWN_S = 30

logger = logging.getLogger(__name__)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the access fields, the traceback."""

    FIELDS = ("request_id", "method", "path", "endpoint", "status", "latency_ms", "routes")

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        for key in self.FIELDS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def log_formatter(log_format: str) -> logging.Formatter:
    """JSON lines or text, as ``--log-format`` says."""
    if log_format == "json":
        return JsonLogFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def serve(source: ModelSource, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 1, log_level: str = "info") -> int:
    """Serve until stopped; the exit code (1 when the models never loaded)."""
    uvicorn = require("uvicorn", "serve")
    require("fastapi", "serve")
    configure_logging(settings.log_format, log_level)
    from .http_limits import GuardedHttp

    common = dict(host=host, port=port, log_config=None, access_log=False, lifespan="on", http=GuardedHttp,
                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, log_level=log_level)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with a handler of our own
    # in place, that re-raise is a no-op and the process exits 0 as a stopped service should.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if workers > 1:
        with _key_in_a_file(settings) as shared:
            os.environ[SOURCE_ENV] = source.to_json()
            os.environ[SETTINGS_ENV] = shared.to_json()
            os.environ[SUPERVISOR_ENV] = str(os.getpid())  # POST /admin/reload in one worker reaches them all
            logger.info("serving %s %s on http://%s:%d with %d workers", source.kind, source.path, host, port,
                        workers)
            config = _config(uvicorn.Config("lora_router.serving.host:app_from_env", factory=True, workers=workers,
                                            **common), settings)
            _run_workers(uvicorn, config)
        return 0
    from .app import create_app

    app = create_app(source, settings)
    server = uvicorn.Server(_config(uvicorn.Config(app, **common), settings))
    app.state.on_load_failure = lambda: setattr(server, "should_exit", True)
    logger.info("serving %s %s on http://%s:%d (docs: /docs)", source.kind, source.path, host, port)
    server.run()
    return 1 if app.state.service.load_error else 0


def _config(config, settings: ServeSettings):
    """uvicorn's config carrying the head limits to ``GuardedHttp`` (pickled whole to ``--workers`` processes)."""
    config.lora_router_limits = {"max_header_bytes": settings.max_header_bytes,
                                 "header_timeout_s": settings.header_timeout_s}
    return config


def _run_workers(uvicorn, config) -> None:
    """``uvicorn.run(workers=N)``, but SIGHUP reloads each worker's models in place instead of replacing it."""
    import inspect

    from uvicorn.supervisors import Multiprocess

    class ReloadingWorkers(Multiprocess):
        def handle_hup(self) -> None:
            for process in list(self.processes):
                # A worker still starting loads the export as it is now; its SIGHUP handler is not set yet.
                ready = getattr(process, "is_ready", None) or process.is_alive  # is_ready: newer uvicorn
                if process.pid is not None and ready(timeout=5):
                    os.kill(process.pid, signal.SIGHUP)
            logger.info("SIGHUP passed on to %d workers: each reloads its models in place", len(self.processes))

    sockets = [config.bind_socket()]
    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
        ReloadingWorkers(config, target=uvicorn.Server(config).run, sockets=sockets).run()
    else:
        ReloadingWorkers(config, sockets=sockets).run()


@contextlib.contextmanager
def _key_in_a_file(settings: ServeSettings):
    """The settings the workers get: a key given in clear reaches them through a file only this user reads.

    The settings travel to the workers in an environment variable, which other tools print and copy;
    the key must not be in it.
    """
    if not settings.api_key:
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="lora-router-key-") as folder:  # mode 0700
        path = Path(folder) / "api-key"
        path.touch(mode=0o600)
        path.write_text(settings.api_key + "\n", "utf-8")
        yield dataclasses.replace(settings, api_key=None, api_key_file=str(path))


def app_from_env():
    """The app of one uvicorn worker, from the settings ``serve`` put in the environment."""
    from .app import create_app

    settings = ServeSettings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_format)
    return create_app(ModelSource.from_json(os.environ[SOURCE_ENV]), settings)
