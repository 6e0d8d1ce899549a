"""Run the app on Ray Serve: replicas across a cluster, several exports multiplexed on them.

The endpoints are the ones ``create_app`` makes for uvicorn; here each replica
builds that app with a ``resolve`` that picks the export a request names.
Requests name an export id in Ray Serve's multiplexing header
``serve_multiplexed_model_id`` (``serve-multiplexed-model-id`` works too);
without it the default export answers. A replica loads an export on first
use (a ``Service``: models, batcher, chain), keeps at most
``max_exports_per_replica`` of them and stops the least recently used one when
it needs room for another (Ray Serve's ``@serve.multiplexed``); Ray routes a
request to a replica that already holds its export when it can.

Export ids map to folders that every replica can read: an explicit map
(``--export ID=DIR``) and/or a root folder whose subfolders are exports
(``--exports-root DIR``: ``DIR/team-a/`` answers id ``team-a``). Ids are
letters, digits, ``.``, ``_`` and ``-``: never a path.

With ``settings.shadow`` (``--shadow DIR``), every replica runs that
candidate export beside the default export, off the response path
(``serving.shadow``); the other exports are not shadowed.

``app_builder(args)`` is the entry a Ray Serve config file names
(``import_path: lora_router.serving.ray:app_builder``); ``ray_host`` runs the
app on a cluster (``lora-router serve --engine ray``).
Install with ``pip install "lora-router[ray]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..backends.source import ModelSource
from ..config import JsonSettings
from ..core.options import PredictorOptions
from ..errors import ConfigError, InputError, LoraRouterError, require
from .metrics import ServiceMetrics
from .service import Service
from .settings import API_KEY_ENV, ServeSettings

logger = logging.getLogger(__name__)

EXPORT_HEADER = "serve_multiplexed_model_id"
DEFAULT_EXPORT_ID = "default"
APP_NAME = "lora-router"
DEPLOYMENT_NAME = "LoraRouter"
# Ray Serve's default (5) would starve the batcher: concurrent requests on a replica are what it batches.
MAX_ONGOING_REQUESTS = 64
_EXPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# What a deployment may set for its exports: the predictor options (the folder itself comes from the catalog).
SOURCE_OPTIONS = tuple(f.name for f in dataclasses.fields(PredictorOptions))


class InvalidExportIdError(InputError):
    """An export id that could be a path, or is empty; ids are letters, digits, '.', '_' and '-'."""


class UnknownExportError(LoraRouterError):
    """An export id this deployment does not serve; ``known`` lists those it does."""

    def __init__(self, message: str, known: list[str]):
        self.known = known
        super().__init__(message)


class ExportLoadError(LoraRouterError):
    """An export folder that failed to load or to answer its warm-up question."""


def check_export_id(export_id: str) -> str:
    """``export_id`` if it is a valid id; raises ``InvalidExportIdError`` otherwise."""
    if not isinstance(export_id, str) or not _EXPORT_ID.match(export_id) or ".." in export_id:
        raise InvalidExportIdError(
            f"export id {export_id!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (an id names an export, never a path)")
    return export_id


@dataclass
class ExportCatalog(JsonSettings):
    """Which exports a deployment serves: ids to folders, a default, and how many one replica holds.

    Travels as JSON to every replica, so it holds plain values; folders are
    read on the replica's node (a path every node can read, or a relative
    path inside a shipped ``working_dir``).
    """

    exports: dict[str, str] = field(default_factory=dict, metadata={"help": "export id -> export folder"})
    root: str | None = field(default=None, metadata={"help": "folder whose subfolders are exports (id = name)"})
    default: str | None = field(default=None, metadata={"help": "the export answering requests that name none"})
    max_exports_per_replica: int = field(default=3, metadata={"help": "exports one replica holds (LRU evicted)"})

    def __post_init__(self) -> None:
        self.exports = {check_export_id(k): str(Path(v).expanduser()) for k, v in dict(self.exports).items()}
        if self.root is not None:
            self.root = str(Path(self.root).expanduser())
        if not self.exports and self.root is None:
            raise ConfigError("no export to serve: give --onnx DIR, --export ID=DIR or --exports-root DIR")
        if self.default is None and len(self.exports) == 1 and self.root is None:
            self.default = next(iter(self.exports))
        if self.default is not None:
            check_export_id(self.default)
            if self.root is None and self.default not in self.exports:
                raise ConfigError(f"default export {self.default!r} is not one of the exports given: "
                                  f"{', '.join(self.exports)}")
        n = self.max_exports_per_replica
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"max_exports_per_replica must be a whole number >= 1, got {n!r}")

    @classmethod
    def of_folders(cls, onnx: str | Path | None = None, exports: dict[str, str | Path] | None = None,
                   exports_root: str | Path | None = None, default_export: str | None = None,
                   max_exports_per_replica: int = 3) -> ExportCatalog:
        """The catalog of ``lora-router serve --engine ray``: ``onnx`` is export ``default``; each folder is read
        as an export (a folder that is not one fails here, before a cluster starts) and made absolute, since
        replicas run in other processes, on other nodes, and must find the same folders."""
        from ..backends.onnx import read_manifest

        folders = {**({DEFAULT_EXPORT_ID: onnx} if onnx is not None else {}), **(exports or {})}
        for folder in folders.values():
            read_manifest(folder)
        return cls(exports={k: str(Path(v).resolve()) for k, v in folders.items()},
                   root=exports_root and str(Path(exports_root).resolve()),
                   default=default_export or (DEFAULT_EXPORT_ID if onnx is not None else None),
                   max_exports_per_replica=max_exports_per_replica)

    def choose(self, requested: str | None) -> str:
        """The id a request names (its header), else the default; raises when neither is there."""
        if requested:
            return check_export_id(requested)
        if self.default is None:
            raise UnknownExportError(f"this service has no default export; name one in the {EXPORT_HEADER} header "
                                     f"(known: {', '.join(self.known()) or 'none'})", self.known())
        return self.default

    def folder(self, export_id: str) -> str:
        """The folder of ``export_id``; raises ``UnknownExportError`` when there is no such export."""
        check_export_id(export_id)
        if export_id in self.exports:
            return self.exports[export_id]
        if self.root is not None:
            candidate = Path(self.root) / export_id
            if (candidate / "manifest.json").is_file():
                return str(candidate)
        known = self.known()
        raise UnknownExportError(f"no export {export_id!r} here; known: {', '.join(known) or 'none'}", known)

    def known(self) -> list[str]:
        """Every id this catalog answers: the explicit ones, then the root's export folders."""
        ids = list(self.exports)
        if self.root is not None and Path(self.root).is_dir():
            ids += sorted(p.name for p in Path(self.root).iterdir() if p.name not in self.exports
                          and _EXPORT_ID.match(p.name) and (p / "manifest.json").is_file())
        return ids



def predictor_options(options: PredictorOptions | dict | None) -> PredictorOptions:
    """The options every export of a deployment is answered with (a dict as a Ray config file gives them)."""
    if isinstance(options, PredictorOptions):
        return options
    unknown = sorted(set(options or {}) - set(SOURCE_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown export option(s) {unknown}; valid: {', '.join(SOURCE_OPTIONS)}")
    return PredictorOptions.from_dict({k: v for k, v in (options or {}).items() if v is not None})


class ExportService(Service):
    """One export's ``Service`` on a replica, which Ray Serve's multiplexer may evict.

    Eviction can come while requests that resolved this export are still
    running, so ``stop`` waits until none is. Ray Serve awaits a model's
    ``__del__`` when it evicts it; that is set on the instance, not the class,
    because Python's garbage collector calls only a class's ``__del__`` (and
    could not await it).
    """

    def __init__(self, export_id: str, source: ModelSource, settings: ServeSettings, metrics: ServiceMetrics):
        super().__init__(source, settings, metrics)
        self.export_id = export_id
        self._requests = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False
        self.__del__ = self.stop

    async def ask(self, questions: list[str], ids: list[str] | None = None) -> list[dict]:
        with self._counted():
            return await super().ask(questions, ids)

    async def predict(self, task: str, texts: list[str], *, truncate: bool = True):
        with self._counted():
            return await super().predict(task, texts, truncate=truncate)

    async def stop(self) -> None:
        """Wait for the requests using this export, then stop it (once)."""
        if self._stopped:
            return
        self._stopped = True
        await self._idle.wait()
        await super().stop()
        logger.info("export %r stopped on this replica", self.export_id)

    @contextlib.contextmanager
    def _counted(self):
        self._requests += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._requests -= 1
            if self._requests == 0:
                self._idle.set()


class ReplicaApp:
    """What every replica runs: the app of ``create_app``, resolving each request's export.

    The Ray Serve deployment class (``deployment_class``) adds the ingress and
    the multiplexed loader to this.
    """

    def __init__(self, catalog_json: str, options_json: str, settings_json: str, key_from_env: bool = False):
        self.catalog = ExportCatalog.from_json(catalog_json)
        self.options = PredictorOptions.from_json(options_json)  # a bad option fails the replica now
        self.settings = ServeSettings.from_json(settings_json)
        if key_from_env:  # the key never travels in the deployment's arguments: the replica reads its environment
            key = os.environ.get(API_KEY_ENV, "").strip()
            if not key:
                raise ConfigError(f"this deployment needs a key and the replica has no {API_KEY_ENV} in its "
                                  "environment; set it where `ray start` runs, or give settings.api_key_file")
            self.settings = dataclasses.replace(self.settings, api_key=key)
        # settings.shadow runs beside the default export only: every other export is served without it.
        self.unshadowed = dataclasses.replace(self.settings, shadow=None) if self.settings.shadow else self.settings
        self.metrics = ServiceMetrics()
        self.live: weakref.WeakSet[ExportService] = weakref.WeakSet()  # evicted ones leave when collected
        self.promotion = None  # user_config's counter, raised by each promotion (ray_promote)
        # Held while an export loads and while a promotion reloads: a load that read the folder before a
        # promotion swapped it finishes first, then the promotion sees it and reloads it; a load that starts
        # during a promotion reads the folder after. Without it, a replica could go on serving the old version.
        self.loading = asyncio.Lock()
        # Ray Serve awaits a replica's __del__ at shutdown; on the instance, not the class, because Python's
        # garbage collector calls only a class's __del__, and could not await it (as ExportService).
        self.__del__ = self.stop_exports
        _configure_logging(self.settings.log_format)

    async def __serve_build_asgi_app__(self):
        """The app of ``create_app``; the default export is loaded first, so a replica takes traffic warm."""
        from fastapi import Request
        from fastapi.responses import JSONResponse

        from .app import create_app

        async def resolve(request: Request) -> Service:
            from ray import serve

            export_id = self.catalog.choose(serve.get_multiplexed_model_id())
            self.catalog.folder(export_id)  # unknown ids fail here, before the multiplexer evicts anything for them
            return await self.export(export_id)

        app = create_app(settings=self.settings, resolve=resolve, metrics=self.metrics, handle_sighup=False,
                         promote=self.promote)

        @app.exception_handler(UnknownExportError)
        async def unknown_export(request: Request, exc: UnknownExportError):
            return JSONResponse({"error": str(exc), "error_type": "not_found", "exports": exc.known}, status_code=404)

        @app.exception_handler(ExportLoadError)
        async def export_failed(request: Request, exc: ExportLoadError):
            return JSONResponse({"error": str(exc), "error_type": "unavailable"}, status_code=503,
                                headers={"retry-after": str(self.settings.retry_after_s)})

        if self.catalog.default is not None:
            await self.export(self.catalog.default)
        return app

    async def reconfigure(self, config: dict | None) -> None:
        """Ray Serve's lightweight update (``user_config`` changed: a promotion, see ``ray_promote``): reload
        every export held here whose folder now holds another export. Never raises: a replica that failed
        here would be restarted by Ray; a reload that fails leaves the export in service answering."""
        from ..export.previous import export_identity
        from .admin import gated_reload
        from .ray_promote import report_applied

        self.promotion = (config or {}).get("promotion")
        async with self.loading:
            for service in list(self.live):
                if service._stopped or not service.ready:
                    continue
                folder = service.source.onnx
                on_disk = await asyncio.to_thread(export_identity, folder)
                served = service.describe()["source"].get("export") or {}
                if on_disk is None or on_disk.get("id") == served.get("id"):
                    continue
                # The promoter compared, once, and puts a refused candidate back itself.
                ok, why = await gated_reload(service, compare=False, put_back_refused=False)
                if ok:
                    logger.info("export %r now serves %s (promotion %s)", service.export_id, on_disk,
                                self.promotion)
                else:
                    logger.error("export %r keeps serving %s: %s", service.export_id, served, why)
        try:
            await report_applied(self.promotion)
        except Exception as exc:  # noqa: BLE001 - the promoter then says which replica did not confirm
            logger.error("could not tell the promoter promotion %s is done here: %s", self.promotion, exc)

    async def promote(self, action: str, service: ExportService) -> dict:
        """``/admin/reload`` and ``/admin/rollback``: the promoter updates every replica (``ray_promote``)."""
        from ray import serve

        from .admin import served
        from .ray_promote import ask_promoter

        result = await ask_promoter(serve.get_replica_context().app_name, action, service.export_id)
        return {**result, **served(service)}

    async def export(self, export_id: str) -> ExportService:  # replaced by the multiplexed loader
        raise NotImplementedError

    async def load_export(self, export_id: str) -> ExportService:
        """A started ``Service`` over the export's folder (on a thread: the replica keeps answering)."""
        folder = self.catalog.folder(export_id)
        settings = self.settings if export_id == self.catalog.default else self.unshadowed
        service = ExportService(export_id, ModelSource(onnx=folder, options=self.options), settings, self.metrics)
        async with self.loading:  # not while a promotion reloads (reconfigure)
            try:
                await service.start()
            except Exception as exc:  # noqa: BLE001 - the request gets a 503 naming the export and the cause
                await service.stop()
                raise ExportLoadError(f"export {export_id!r} ({folder}) failed to load: {exc}") from exc
            self.live.add(service)
        logger.info("export %r loaded from %s", export_id, folder)
        return service

    async def stop_exports(self) -> None:
        """Replica shutdown (Ray Serve awaits the instance's ``__del__``): stop every export still loaded here."""
        for service in list(getattr(self, "live", ())):
            await service.stop()


def deployment_class(max_exports_per_replica: int = 3):
    """The Ray Serve deployment: ``ReplicaApp`` with the ingress and an LRU of ``max_exports_per_replica`` exports.

    A class per bound because ``@serve.multiplexed`` takes its bound when the
    method is decorated.
    """
    serve = require("ray.serve", "ray")

    @serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS)
    @serve.ingress()
    class LoraRouter(ReplicaApp):
        @serve.multiplexed(max_num_models_per_replica=max_exports_per_replica)
        async def export(self, export_id: str) -> ExportService:
            return await self.load_export(export_id)

    return LoraRouter


def build_app(catalog: ExportCatalog, options: PredictorOptions | dict | None = None,
              settings: ServeSettings | None = None, *,
              num_replicas: int | None = 1, autoscaling_config: dict | None = None,
              max_ongoing_requests: int = MAX_ONGOING_REQUESTS, replica_cpus: float = 1.0,
              key_from_env: bool = False, promotion: int = 0):
    """A Ray Serve application (``serve.run`` it): ``num_replicas`` replicas, or autoscaling between bounds.

    ``autoscaling_config`` is Ray Serve's (``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ...) and replaces ``num_replicas``. Each
    replica reserves ``replica_cpus`` CPUs and runs onnxruntime on that many
    threads unless ``options.threads`` says otherwise.
    """
    options = predictor_options(options)
    settings = settings or ServeSettings()
    if settings.shadow and catalog.default is None:
        raise ConfigError("shadow runs its candidate beside the default export, and this deployment has none; "
                          "give --default-export ID (default_export in a config file), or leave --shadow out")
    if not replica_cpus > 0:
        raise ConfigError(f"replica_cpus must be > 0, got {replica_cpus!r}")
    if options.threads is None:
        options = options.replace(threads=max(1, int(replica_cpus)))
    if autoscaling_config is None and (not isinstance(num_replicas, int) or num_replicas < 1):
        raise ConfigError(f"num_replicas must be a whole number >= 1, got {num_replicas!r}")
    actor_options = {"num_cpus": replica_cpus}
    deployment = deployment_class(catalog.max_exports_per_replica).options(
        name=DEPLOYMENT_NAME, max_ongoing_requests=max_ongoing_requests, ray_actor_options=actor_options,
        **({"autoscaling_config": autoscaling_config} if autoscaling_config else {"num_replicas": num_replicas}))
    # The key itself never goes into the deployment's arguments (Ray shows and stores them): replicas read it
    # from their environment (LORA_ROUTER_API_KEY) or from api_key_file, a path.
    key_from_env = key_from_env or settings.api_key is not None
    travelling = dataclasses.replace(settings, api_key=None) if settings.api_key is not None else settings
    arguments = (catalog.to_json(), options.to_json(), travelling.to_json(), key_from_env)
    # Ray Serve gives an app deployed from code a random version, so deploying it again restarts every replica;
    # pinned to the arguments, a change of user_config alone reconfigures the replicas in place, one at a time.
    version = hashlib.sha256(json.dumps([*arguments, __version__, max_ongoing_requests, replica_cpus,
                                         num_replicas, autoscaling_config], sort_keys=True,
                                        default=str).encode("utf-8")).hexdigest()[:16]
    deployment = deployment.options(version=version, user_config={"promotion": promotion}, _internal=True)
    return deployment.bind(*arguments)


BUILDER_ARGS = ("exports", "exports_root", "default_export", "max_exports_per_replica", "settings", "num_replicas",
                "autoscaling_config", "max_ongoing_requests", "replica_cpus", "api_key_from_env", *SOURCE_OPTIONS)


def app_builder(args: dict):
    """The entry a Ray Serve config file names: ``import_path: lora_router.serving.ray:app_builder``.

    ``args``: ``exports`` (id: folder), ``exports_root``, ``default_export``,
    ``max_exports_per_replica``; the ``PredictorOptions`` fields (``precision``,
    ``layout``, ``threads``, ``thresholds``, ``knowledge_base``, ``chain``,
    ``device``, ...); ``settings`` (``ServeSettings`` fields: limits, batching,
    ``api_key_file``, ``shadow`` (beside the default export); never
    ``api_key``: a key in a config file is in clear);
    ``api_key_from_env: true`` (replicas read ``LORA_ROUTER_API_KEY`` from
    their environment); ``num_replicas`` or ``autoscaling_config``,
    ``max_ongoing_requests``, ``replica_cpus``. A ``deployments:`` entry named
    ``LoraRouter`` in the config file overrides the replica settings as usual.
    """
    args = dict(args or {})
    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown:
        raise ConfigError(f"unknown app_builder arg(s) {unknown}; valid: {', '.join(BUILDER_ARGS)}")
    catalog = ExportCatalog(exports=args.get("exports") or {}, root=args.get("exports_root"),
                            default=args.get("default_export"),
                            max_exports_per_replica=args.get("max_exports_per_replica", 3))
    options = predictor_options({k: args[k] for k in SOURCE_OPTIONS if k in args})
    if "api_key" in (args.get("settings") or {}):
        raise ConfigError(f"settings.api_key would keep the key in clear in the config file; give "
                          f"settings.api_key_file (a path every node has) or api_key_from_env: true with "
                          f"{API_KEY_ENV} set where `ray start` runs")
    settings = ServeSettings(**(args.get("settings") or {}))
    return build_app(catalog, options, settings, num_replicas=args.get("num_replicas", 1),
                     autoscaling_config=args.get("autoscaling_config"),
                     max_ongoing_requests=args.get("max_ongoing_requests", MAX_ONGOING_REQUESTS),
                     replica_cpus=float(args.get("replica_cpus", 1.0)),
                     key_from_env=bool(args.get("api_key_from_env", False)))


def _configure_logging(log_format: str) -> None:
    """The library's logs on the replica's stderr (Ray keeps them in the worker's log file)."""
    from .host import log_formatter

    ours = logging.getLogger("lora_router")
    if any(getattr(h, "_lora_router_ray", False) for h in ours.handlers):
        return
    handler = logging.StreamHandler()
    handler._lora_router_ray = True
    handler.setFormatter(log_formatter(log_format))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
