"""Promote and roll back on Ray Serve: every replica, one at a time, through Ray Serve's own config update.

Under uvicorn the process that takes ``/admin/reload`` owns its models
(``admin.py``). On Ray Serve the models live in replicas, and a request
reaches only one of them. What Ray Serve offers is its lightweight update:
deploying the app again with only ``user_config`` changed makes it call each
replica's ``reconfigure`` in turn (``rolling_update_percentage`` of them at a
time: one of two), restarting none. ``build_app`` pins the deployment's
version, so a changed ``user_config`` is such an update and not a restart of
every replica.

A promotion, then: the process that deployed the app (``lora-router serve
--engine ray``, the *promoter*) checks the candidate against the gate
(``admin.candidate_refusal``), swaps the folders for a rollback, and deploys
again with ``user_config = {"promotion": N}``. Each replica's
``reconfigure`` reloads every export it holds whose folder now holds another
export (``Service.reload``: load beside, check, swap; a request keeps the
generation it started on, so no chain mixes versions). An export a replica
does not hold is read from its folder when first asked.

``/admin/reload`` reaches one replica; that replica hands the action to the
promoter through a named Ray actor (the *mailbox*) and answers with the
promoter's result. SIGHUP to the promoter does the same. A deployment made
from a Serve config file has no promoter: raise ``user_config.promotion`` of
the ``LoraRouter`` deployment in the file and ``serve deploy`` it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from ..errors import LoraRouterError
from .admin import RefusedError, candidate_refusal

logger = logging.getLogger(__name__)

MAILBOX_NAMESPACE = "lora-router"
PROMOTE_TIMEOUT_S = 600.0  # a replica's wait for the promoter: two reloads of a base-size export fit many times
EVERY_REPLICA = "every replica (a rolling update through Ray Serve, one replica at a time)"


def mailbox_name(app_name: str) -> str:
    return f"{app_name}-promoter"


class Mailbox:
    """Promotion requests from replicas to the promoter, and the promoter's answers (a named Ray actor)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future] = {}
        self._applied: dict[str, int] = {}  # replica -> the last promotion its reconfigure finished

    async def applied(self, replica: str, promotion: int) -> None:
        """A replica's report: its ``reconfigure`` for ``promotion`` is done (its exports reloaded or kept)."""
        self._applied[replica] = max(promotion, self._applied.get(replica, promotion))

    async def replicas_at(self, promotion: int) -> int:
        """How many replicas have reported ``promotion`` (or a later one) done."""
        return sum(p >= promotion for p in self._applied.values())

    async def submit(self, action: str, export_id: str | None, timeout_s: float = PROMOTE_TIMEOUT_S) -> dict:
        """Queue ``action`` for the promoter and return its result (``{"refused": why}`` when refused)."""
        ticket = uuid.uuid4().hex
        self._waiting[ticket] = asyncio.get_running_loop().create_future()
        await self._queue.put((ticket, action, export_id))
        try:
            return await asyncio.wait_for(self._waiting[ticket], timeout_s)
        except TimeoutError:
            return {"refused": f"the promoter did not finish the {action} in {timeout_s:g} s; see its log"}
        finally:
            self._waiting.pop(ticket, None)

    async def take(self, wait_s: float) -> tuple | None:
        """The next ``(ticket, action, export_id)``, or None after ``wait_s`` without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return None

    async def finish(self, ticket: str, result: dict) -> None:
        waiting = self._waiting.get(ticket)
        if waiting is not None and not waiting.done():
            waiting.set_result(result)


class Promoter:
    """The deploying process's side: checks a candidate, swaps folders to roll back, deploys the update.

    ``deploy(n)`` deploys the app again with ``user_config = {"promotion": n}``.
    ``serve.run`` returns once the application's status is RUNNING, which a
    busy controller may still report from before it took the update: a
    request answered then could reach a replica not yet reconfigured. So the
    promoter also waits until every running replica has reported promotion
    ``n`` done to the mailbox (``report_applied``).
    """

    def __init__(self, catalog, deploy: Callable[[int], None], app_name: str, *, reload_unchecked: bool = False,
                 promote_compare: str | None = None, options=None):
        from ..export.previous import export_identity

        self.catalog = catalog
        self.reload_unchecked = reload_unchecked  # serve --reload-unchecked: an export without parity figures passes
        self.promote_compare = promote_compare  # serve --promote-compare FILE: a worse candidate is refused
        self.options = options  # how the replicas load an export: the comparison loads both sides the same way
        self.deploy = deploy
        self.app_name = app_name
        self.promotion = 0
        self.mailbox = None
        # What each export id serves (its folder's identity when deployed, then after each promotion).
        self.serving = {export_id: export_identity(folder) for export_id, folder in catalog.exports.items()}

    def open_mailbox(self) -> bool:
        """Start the named mailbox actor; False (and a warning) when another promoter of this app holds it."""
        import ray

        try:
            self.mailbox = ray.remote(num_cpus=0)(Mailbox).options(
                name=mailbox_name(self.app_name), namespace=MAILBOX_NAMESPACE).remote()
        except ValueError:
            logger.warning("another `lora-router serve --engine ray` promotes the app %r on this cluster; "
                           "/admin/reload and /admin/rollback go to it", self.app_name)
            return False
        return True

    def answer_mailbox(self, wait_s: float = 1.0) -> None:
        """Take one action from the mailbox (waiting up to ``wait_s``), do it, and send back the result."""
        import ray

        if self.mailbox is None:
            time.sleep(wait_s)
            return
        item = ray.get(self.mailbox.take.remote(wait_s))
        if item is not None:
            ticket, action, export_id = item
            self.mailbox.finish.remote(ticket, self.handle(action, export_id))

    def handle(self, action: str, export_id: str | None = None) -> dict:
        """Reload or roll back ``export_id`` (the default export when None) on every replica: the result,
        or ``{"refused": why}`` with the export in service still answering."""
        from ..export.previous import export_identity, put_back, refused_dir, roll_back

        t0 = time.perf_counter()
        try:
            export_id = self.catalog.choose(export_id)
            folder = self.catalog.folder(export_id)
            swapped = roll_back(folder, (export_identity(folder) or {}).get("id")) if action == "rollback" else None
        except LoraRouterError as exc:
            return self._refused(action, str(exc))
        problem = candidate_refusal(folder, allow_unchecked=self.reload_unchecked)
        if problem is None and action == "reload" and self.promote_compare:
            problem = self._worse_than_served(export_id, folder)
        if problem:
            if swapped is not None:
                roll_back(folder, swapped["id"])  # put the export that served back
            elif put_back(folder, (self.serving.get(export_id) or {}).get("id")):
                problem += f" (the refused export is now in {refused_dir(folder)}, the one in service back in {folder})"
            return self._refused(action, problem)
        self.promotion += 1
        try:
            self.deploy(self.promotion)
        except Exception as exc:  # noqa: BLE001 - Ray's reason goes back to the caller
            return self._refused(action, f"Ray Serve did not apply the update: {exc}")
        confirmed = self.wait_applied(self.promotion)
        self.serving[export_id] = export_identity(folder)
        result = {"status": "rolled back" if action == "rollback" else "reloaded", "export_id": export_id,
                  "candidate": export_identity(folder), "promotion": self.promotion, "workers": EVERY_REPLICA,
                  "seconds": round(time.perf_counter() - t0, 2)}
        if confirmed is not None:
            result["warning"] = confirmed
        logger.info("%s export %r to %s on every replica in %.1f s", result["status"], export_id,
                    result["candidate"], result["seconds"])
        return result

    def wait_applied(self, promotion: int, timeout_s: float = PROMOTE_TIMEOUT_S) -> str | None:
        """Wait until every running replica reported ``promotion`` done; None, or what is still missing."""
        import ray

        if self.mailbox is None:
            return None
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.replica_states()
            done = ray.get(self.mailbox.replicas_at.remote(promotion))
            running = states.get("RUNNING", 0)
            if running and done >= running and running == sum(states.values()):
                return None
            if time.monotonic() > deadline:
                why = (f"Ray Serve took the update, but only {done} of {running} running replicas reported it "
                       f"done in {timeout_s:g} s (replica states: {states}); see the replicas' logs")
                logger.error(why)
                return why
            time.sleep(0.05)

    def replica_states(self) -> dict[str, int]:
        """How many of the deployment's replicas are in each state (``RUNNING``, ``UPDATING``, ...), not stopping."""
        from ray import serve

        from .ray import DEPLOYMENT_NAME

        app = serve.status().applications.get(self.app_name)
        deployment = app.deployments.get(DEPLOYMENT_NAME) if app else None
        if deployment is None:
            return {}
        return {str(getattr(k, "value", k)): n for k, n in deployment.replica_states.items()
                if str(getattr(k, "value", k)) not in ("STOPPING", "STOPPED")}

    def _worse_than_served(self, export_id: str, folder: str) -> str | None:
        """``admin.compare_refusal`` of the candidate in ``folder`` against the export in service, read from
        ``DIR.previous`` (where ``lora-router export --out DIR`` put it); a reason when that is not it."""
        from ..backends.source import ModelSource
        from ..export.previous import export_identity, previous_dir
        from .admin import compare_refusal

        old_dir, served = previous_dir(folder), self.serving.get(export_id)
        kept = export_identity(old_dir)
        if kept is None or (served is not None and kept.get("id") != served.get("id")):
            return (f"--promote-compare compares the candidate with the export in service, but {old_dir} does not "
                    f"hold it (it holds {kept}, the service answers with {served}); write the candidate with "
                    f"lora-router export --out {folder}, which keeps the export it replaces there")
        try:
            old, new = (ModelSource(onnx=str(d), options=self.options).load() for d in (old_dir, folder))
            return compare_refusal(old, new, self.promote_compare)
        except LoraRouterError as exc:
            return f"the comparison failed: {exc}"

    def _refused(self, action: str, why: str) -> dict:
        logger.error("%s refused, the export in service keeps answering: %s", action, why)
        return {"refused": f"{action} refused, the export in service keeps answering: {why}"}


async def ask_promoter(app_name: str, action: str, export_id: str | None) -> dict:
    """From a replica: have the promoter do ``action``; its result, or ``RefusedError`` with the reason."""
    import ray

    try:
        mailbox = ray.get_actor(mailbox_name(app_name), namespace=MAILBOX_NAMESPACE)
    except ValueError:
        raise RefusedError(
            "this Ray Serve app has no promoter (it was not started by `lora-router serve --engine ray`): raise "
            "user_config.promotion of the LoraRouter deployment in your Serve config and `serve deploy` it; "
            "Ray Serve then reconfigures the replicas one at a time and each reloads its exports") from None
    result = await mailbox.submit.remote(action, export_id)
    if "refused" in result:
        raise RefusedError(result["refused"])
    return result


async def report_applied(promotion: int | None) -> None:
    """From a replica's ``reconfigure``: tell the promoter ``promotion`` is done here (nothing outside a
    replica, nor when no promoter runs: a deployment from a Serve config file)."""
    import ray
    from ray import serve

    if promotion is None:
        return
    try:
        context = serve.get_replica_context()
    except Exception:  # noqa: BLE001 - outside a replica (tests call reconfigure directly)
        return
    try:
        mailbox = ray.get_actor(mailbox_name(context.app_name), namespace=MAILBOX_NAMESPACE)
    except ValueError:
        return
    await mailbox.applied.remote(context.replica_tag, int(promotion))
