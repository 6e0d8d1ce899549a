"""Promote and roll back without downtime: ``POST /admin/reload`` and ``POST /admin/rollback``, behind the key.

An export folder in service is replaced by ``lora-router export --out DIR``
(or ``improve``), which keeps the one it replaced as ``DIR.previous``
(``export.previous``). ``/admin/reload`` does what SIGHUP does, in every
worker: the worker that takes the call checks the candidate, reloads in
place (``Service.reload``: load beside, check, swap; a request keeps the
generation it started on, so no chain mixes versions) and, under
``--workers N``, sends SIGHUP to the supervisor, which passes it to every
worker. ``/admin/rollback`` swaps DIR and DIR.previous and reloads the same way.

The gate a candidate must pass before any worker loads it: an export
written with the parity gate (``export --no-parity`` leaves no figures), whose
figures meet the bounds it was exported under. A candidate that fails is
refused with the reason (409) and the export in service keeps answering;
a rollback refused this way is swapped back. ``serve --reload-unchecked``
(``ServeSettings.reload_unchecked``) lets an export without figures through,
with a warning naming it, for those who export without the gate on purpose;
figures that fail are refused all the same. The admin endpoints exist only
where a key is set: without one anyone who reaches the port could swap models.
"""

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from ..errors import LoraRouterError

SUPERVISOR_ENV = "LORA_ROUTER_SUPERVISOR_PID"  # set by host.serve for --workers N: whom to ask to reload all

logger = logging.getLogger(__name__)


class RefusedError(LoraRouterError):
    """An admin action refused: no key configured, a candidate that fails the gate, nothing to roll back to."""

    def __init__(self, message: str, status: int = 409):
        self.status = status
        super().__init__(message)


def candidate_refusal(export_dir: str | Path, *, allow_unchecked: bool = False) -> str | None:
    """Why the export in ``export_dir`` may not be served; None when it passes the gate.

    ``allow_unchecked`` (``serve --reload-unchecked``): an export without parity figures passes, with a warning.
    """
    from ..backends.onnx.export_layout import MANIFEST_FILE, ExportManifest
    from ..export.parity import check_parity

    path = Path(export_dir) / MANIFEST_FILE
    try:
        manifest = ExportManifest.from_dict(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError, LoraRouterError, TypeError, KeyError) as exc:
        return f"{path} is not a readable export manifest ({exc})"
    if not manifest.parity:
        if allow_unchecked:
            logger.warning("the export in %s (id %s, version %s) was written without the parity gate; loading it "
                           "unchecked, as --reload-unchecked allows", export_dir, manifest.id, manifest.version)
            return None
        return (f"the export in {export_dir} (version {manifest.version}) was written without the parity gate "
                "(export --no-parity); export it again with the gate to serve it, or start the server with "
                "--reload-unchecked to accept such exports")
    bounds = manifest.parity_bounds or {}
    try:
        check_parity(manifest.parity, bounds.get("int8_max_metric_drop_points", 1.0))
    except LoraRouterError as exc:
        return f"the export in {export_dir} (version {manifest.version}) fails the parity gate: {exc}"
    return None


BUNDLED_CHAIN = "bundled"  # --promote-compare bundled: the bundled chain test set


def compare_refusal(old, new, chain_file: str) -> str | None:
    """Why ``new`` may not replace ``old``: significantly worse on the questions of ``chain_file`` (``bundled``:
    the bundled chain set), as ``lora-router eval --chain FILE --compare OLD NEW`` decides; None otherwise."""
    from ..evaluation.chain import bundled_chain_cases, read_chain_cases
    from ..evaluation.compare import WORSE, compare_chain

    path = bundled_chain_cases() if chain_file == BUNDLED_CHAIN else Path(chain_file)
    report = compare_chain(old, new, read_chain_cases(path))
    head, test = report["metrics"][0], report["mcnemar"]
    summary = (f"{head['name']} {head['old']} -> {head['new']} on {report['n']} questions of {path} (McNemar p = "
               f"{test['p_value']:.3g}; {test['right_to_wrong']} right -> wrong, {test['wrong_to_right']} wrong -> "
               "right)")
    if report["verdict"] != WORSE:
        logger.info("the candidate is not worse than the export in service: %s", summary)
        return None
    examples = "; ".join(f"{f['question']!r}: {f['old']} -> {f['new']}" for f in report["right_to_wrong"][:3])
    return (f"the candidate is significantly worse than the export in service: {summary}; e.g. {examples}. "
            f"See every flip with lora-router eval --chain {path} --compare OLD NEW")


async def gated_reload(service, *, compare: bool = True, put_back_refused: bool = True) -> tuple[bool, str | None]:
    """Reload this process's models if the candidate passes the gate: (reloaded, why not).

    With ``compare`` and ``--promote-compare FILE``, the candidate must also not be significantly worse than the
    models in service on FILE's questions (checked beside them, before the swap). A rollback is not compared.
    With ``put_back_refused``, a refused candidate leaves the served folder for ``DIR.refused`` and the export in
    service goes back in its place (``export.previous.put_back``), so a restart never loads the refused one.
    """
    source = service.source
    problem = None
    if source is not None and source.onnx:
        problem = await asyncio.to_thread(candidate_refusal, source.onnx,
                                          allow_unchecked=service.settings.reload_unchecked)
        if problem:
            service.metrics.reloads.labels("refused").inc()
            logger.error("reload refused, the models loaded before keep serving: %s", problem)
    if problem is None:
        if await service.reload(compare=compare):
            return True, None
        problem = getattr(service, "reload_error", None) or "the models failed to load; see the server log"
    if put_back_refused and source is not None and source.onnx:
        try:
            serving = served(service)["export"]
        except LoraRouterError:  # nothing in service (the first load failed): nothing to put back
            serving = None
        problem += await asyncio.to_thread(_put_back, source.onnx, serving)
    return False, problem


def _put_back(folder: str, serving: dict | None) -> str:
    """``put_back`` of a refused candidate; what it did, to append to the refusal."""
    from ..export.previous import put_back, refused_dir

    if put_back(folder, (serving or {}).get("id")):
        logger.warning("the refused export is kept in %s; the export in service is back in %s", refused_dir(folder),
                       folder)
        return f" (the refused export is now in {refused_dir(folder)}, the one in service back in {folder})"
    return ""


def tell_other_workers() -> bool:
    """Under ``--workers N``: SIGHUP to the supervisor, which passes it to every worker. False when alone."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not hasattr(signal, "SIGHUP") or int(supervisor) != os.getppid():
        return False
    os.kill(int(supervisor), signal.SIGHUP)
    return True


def served(service) -> dict:
    """The export a service answers with now, and its generation: what an admin answer names."""
    described = service.describe()
    return {"export": described["source"].get("export"), "generation": described["source"]["generation"]}


async def promote_here(action: str, service) -> dict:
    """``/admin/reload`` or ``/admin/rollback`` where this process owns its models (uvicorn, ``--workers N``).

    Raises ``RefusedError`` with the reason when the candidate fails the gate or there is nothing to roll back to.
    """
    if action == "rollback":
        from ..export.previous import roll_back

        if service.source is None or not service.source.onnx:
            raise RefusedError("rollback swaps export folders; this service does not serve an export (--onnx DIR)")
        folder = service.source.onnx
        current = (service.describe()["source"].get("export") or {}).get("id")
        try:
            now = await asyncio.to_thread(roll_back, folder, current)
        except LoraRouterError as exc:  # no previous export kept
            raise RefusedError(str(exc)) from None
        ok, why = await gated_reload(service, compare=False, put_back_refused=False)  # swapped back below
        if not ok:
            await asyncio.to_thread(roll_back, folder, now["id"])  # put the export that served back
            raise RefusedError(f"rollback refused, the export in service keeps answering: {why}")
        status = "rolled back"
    else:
        ok, why = await gated_reload(service)
        if not ok:
            raise RefusedError(f"reload refused, the export in service keeps answering: {why}")
        status = "reloaded"
    everywhere = tell_other_workers()
    return {"status": status, **served(service),
            "workers": "every worker (SIGHUP passed on)" if everywhere else "this process"}


def add_admin_routes(app, resolve, settings, promote=promote_here) -> None:
    """``POST /admin/reload`` and ``POST /admin/rollback`` on ``app`` (the key itself is checked by the gate).

    ``promote(action, service)`` does the work: ``promote_here`` where the process owns its models; on Ray
    Serve, a rolling update of every replica (``ray_promote``).
    """
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def need_key() -> None:
        if not settings.key():
            raise RefusedError("the admin endpoints need an API key, and this service has none: anyone who reaches "
                               "the port could swap its models. Start it with --api-key-file FILE (or "
                               "LORA_ROUTER_API_KEY), or send SIGHUP to the server process", status=403)

    @app.post("/admin/reload", tags=["operations"], summary="Load the export folder's new version, in every worker")
    async def admin_reload(request: Request) -> JSONResponse:
        """What SIGHUP does: the candidate must pass the parity gate (409 with the reason otherwise); this
        worker reloads in place and, with `--workers N`, every other worker does too; on Ray Serve, every
        replica in a rolling update. Needs the key."""
        need_key()
        return JSONResponse(await promote("reload", await resolve(request)))

    @app.post("/admin/rollback", tags=["operations"], summary="Serve the previous export again, in every worker")
    async def admin_rollback(request: Request) -> JSONResponse:
        """Swap the export folder DIR with DIR.previous (the export it replaced) and reload as
        `/admin/reload` does; a previous export that fails the gate is swapped back and refused (409).
        A second rollback rolls forward. Needs the key."""
        need_key()
        return JSONResponse(await promote("rollback", await resolve(request)))

    @app.exception_handler(RefusedError)
    async def refused(request: Request, exc: RefusedError):
        error_type = "forbidden" if exc.status == 403 else "refused"
        return JSONResponse({"error": str(exc), "error_type": error_type}, status_code=exc.status)
