"""Run the Ray Serve app: start or join a cluster, deploy, serve until SIGTERM or Ctrl-C; promote on SIGHUP.

What ``host`` is for uvicorn, this is for Ray: ``serve_exports`` is what
``lora-router serve --engine ray`` runs. The app itself (catalog, replicas,
the multiplexed exports) is ``serving.ray``. A cluster this process starts
gets the proxy middleware of ``ray_proxy``, which replays requests whose
replica died.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from dataclasses import dataclass

from ..core.options import PredictorOptions
from ..errors import ConfigError, require
from .ray import APP_NAME, ExportCatalog, build_app, predictor_options
from .ray_promote import Promoter
from .ray_proxy import KEY_FILE_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV
from .settings import API_KEY_ENV, ServeSettings

logger = logging.getLogger(__name__)


@dataclass
class RayCluster:
    """This process's connection to a Ray cluster, and whether it started that cluster."""

    started: bool

    def run(self, app, *, host: str = "127.0.0.1", port: int = 8000, app_name: str = APP_NAME,
            route_prefix: str = "/") -> str:
        """Run ``app`` behind Ray Serve's HTTP proxy on ``host:port`` under ``route_prefix``; its URL."""
        from ray import serve

        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=app_name, route_prefix=route_prefix)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{port}{route_prefix.rstrip('/')}"

    def shutdown(self, app_name: str | None = APP_NAME) -> None:
        """Delete the app; stop Serve and Ray too when this process started the cluster."""
        import ray
        from ray import serve

        try:
            if app_name is not None and not self.started:
                serve.delete(app_name)
        finally:
            if self.started:
                serve.shutdown()
            ray.shutdown()  # on a cluster this process joined, only disconnects


def connect(address: str | None = None, *, init_options: dict | None = None,
            needed_cpus: float | None = None) -> RayCluster:
    """Start a local Ray cluster (``address=None``) or join one (``"auto"``, ``"ray://..."``, ``"HOST:PORT"``)."""
    ray = require("ray", "ray")
    started = address is None and not ray.is_initialized()
    if started:  # a cluster of our own: its proxy replays requests whose replica died (ReplayLostRequests)
        os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    if not ray.is_initialized():
        ray.init(address=address, **(init_options or {}))
    cluster = RayCluster(started)
    have = ray.cluster_resources().get("CPU", 0)
    if started and needed_cpus and needed_cpus > have:
        cluster.shutdown(None)
        raise ConfigError(f"the replicas need {needed_cpus:g} CPUs and this Ray cluster has {have:g}; give fewer "
                          "--replicas, a smaller --replica-cpus (e.g. 0.5), or join a bigger cluster with --address")
    return cluster


def serve_on_ray(app, *, address: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 app_name: str = APP_NAME, on_ready=None, init_options: dict | None = None,
                 needed_cpus: float | None = None, promoter: Promoter | None = None) -> int:
    """Deploy, call ``on_ready(url)``, and block until SIGTERM or Ctrl-C; then shut the app down. Exit code 0.

    With ``promoter``, this process answers the replicas' ``/admin/reload`` and ``/admin/rollback`` and
    takes SIGHUP as a reload: each a rolling update of every replica (``ray_promote``).
    """
    cluster = connect(address, init_options=init_options, needed_cpus=needed_cpus)
    # After ray.init, which installs a SIGTERM handler of its own that aborts the process.
    stop, hangup = threading.Event(), threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    if promoter is not None and hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    try:
        url = cluster.run(app, host=host, port=port, app_name=app_name)
        if promoter is not None:
            promoter.open_mailbox()
        if on_ready is not None and not stop.is_set():
            on_ready(url)
        while not stop.is_set():
            if promoter is None:
                stop.wait(1.0)
                continue
            if hangup.is_set():
                hangup.clear()
                promoter.handle("reload")  # logs what it did, or why it refused
            promoter.answer_mailbox(wait_s=1.0)
        logger.info("stopping the %s app", app_name)
        return 0
    finally:
        cluster.shutdown(app_name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_exports(catalog: ExportCatalog, options: PredictorOptions | dict, settings: ServeSettings, *,
                  replicas: int = 1, replica_cpus: float = 1.0, address: str | None = None, host: str = "127.0.0.1",
                  port: int = 8000, ship: bool = False, on_ready=None) -> int:
    """``lora-router serve --engine ray``: deploy ``replicas`` replicas and serve until SIGTERM or Ctrl-C.

    With ``ship``, the catalog's root folder is uploaded with the job (Ray's
    ``runtime_env`` ``working_dir``, at most 512 MiB zipped) and every replica
    reads its copy, so no node needs the folder on a shared path.
    """
    require("ray.serve", "ray")
    init_options = None
    if ship:
        if catalog.root is None or catalog.exports:
            raise ConfigError("--ship uploads --exports-root DIR; give the exports as folders under it, not as "
                              "--onnx or --export")
        init_options = {"runtime_env": {"working_dir": catalog.root}}
        catalog = dataclasses.replace(catalog, root=".")  # a replica runs inside its copy of the folder
    _key_for_the_cluster(settings, starting=address is None)

    def app(promotion: int = 0):
        return build_app(catalog, options, settings, num_replicas=replicas, replica_cpus=replica_cpus,
                         promotion=promotion)

    def deploy(promotion: int) -> None:  # the same app, user_config raised: each replica reconfigured in turn
        from ray import serve

        serve.run(app(promotion), name=APP_NAME, route_prefix="/")

    promoter = Promoter(catalog, deploy, APP_NAME, reload_unchecked=settings.reload_unchecked,
                        promote_compare=settings.promote_compare, options=predictor_options(options))
    return serve_on_ray(app(), address=address, host=host, port=port, on_ready=on_ready, init_options=init_options,
                        needed_cpus=replicas * replica_cpus, promoter=promoter)


def _key_for_the_cluster(settings: ServeSettings, *, starting: bool) -> None:
    """Where replicas and the proxy find the key: their environment, inherited from this process when it starts
    the cluster (the key never goes into a deployment's arguments, which Ray shows and stores)."""
    if settings.api_key is not None:
        if starting:
            os.environ[API_KEY_ENV] = settings.api_key  # this user's processes only, unlike a command line
        else:
            logger.warning("the replicas read the key from %s in the environment `ray start` gave them; "
                           "a replica without it fails to start", API_KEY_ENV)
    elif settings.api_key_file is not None and starting:
        os.environ[KEY_FILE_ENV] = settings.api_key_file  # for the proxy, which checks the key before a body
