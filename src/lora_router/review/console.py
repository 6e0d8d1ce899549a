"""The review console: a page on 127.0.0.1 where a person works through the queue and corrects the chain.

The page is plain HTML, CSS and JavaScript shipped in the wheel
(``review/static/``): no CDN, no build step, so it works on a closed
network. The API it calls (all JSON, errors as ``{"error", "error_type"}``):

- ``GET /api/info``: routes, tasks and labels, the model, label counts;
- ``GET /api/queue``: the ranked queue (``review.queue``), each item with what is saved for it;
- ``POST /api/ask``: the chain's answer, with its trace, to a typed question (needs a model);
- ``POST /api/corrections``: save one correction at once (``review.labels``); 422 names what is wrong;
- ``GET /api/kb?q=``: knowledge-base entries to pick from.

The same gate as ``lora-router serve`` (``serving.middleware.Gatekeeper``)
guards it: with a key, every ``/api/`` call needs ``Authorization: Bearer``;
the page and its files, which hold no data, load without one and ask for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import __version__
from ..errors import InputError, LoraRouterError
from ..serving.metrics import ServiceMetrics
from ..serving.middleware import Gatekeeper
from ..serving.settings import ServeSettings
from .labels import Correction, LabelsWriter, Teacher
from .queue import LOW_MARGIN, review_queue

logger = logging.getLogger(__name__)

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
MAX_QUEUE = 500
MAX_QUESTION_CHARS = 2000


def static_folder() -> Path:
    return Path(str(resources.files("lora_router.review") / "static"))


class ConsoleGate(Gatekeeper):
    """``serve``'s gate, but the page and its static files load without a key (they hold no data)."""

    body_paths = re.compile(r"^/api/(ask|corrections)$")

    def _refuse(self, scope, headers: dict, path: str, counted: bool):
        if scope.get("method") == "GET" and (path == "/" or path.startswith("/static/")):
            return None
        return super()._refuse(scope, headers, path, counted)


def create_console(capture_dir: str | Path, records: Callable[[], Iterable[dict]], *, predictor=None,
                   teacher: Teacher | None = None, settings: ServeSettings | None = None,
                   low_margin: float = LOW_MARGIN, source: dict | None = None) -> FastAPI:
    """The console's ASGI app over a capture store's ``records`` and, when given, a predictor to ask.

    ``records()`` is called for every queue request (``CaptureStore(dir).records``): what the service
    captured a moment ago is in the queue at the next refresh.
    """
    settings = settings or ServeSettings()
    teacher = teacher or Teacher(getattr(predictor, "chain", None), _knowledge_base(predictor))
    writer = LabelsWriter(capture_dir)
    folder = static_folder()

    def saved(question: str, labelled: dict[str, dict] | None = None) -> dict:
        """What is saved for ``question``: ``labelled`` ({task: output}) and ``saved_kb_id`` (None: nothing
        saved, "": no entry)."""
        mine = (labelled if labelled is not None else writer.labelled()).get(question, {})
        return {"labelled": mine, "saved_kb_id": teacher.entry_of(mine)}
    app = FastAPI(title="lora-router review", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    async def page() -> Response:
        return FileResponse(folder / "index.html", media_type=STATIC_TYPES[".html"],
                            headers={"cache-control": "no-cache"})

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        path = folder / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            return _error(404, f"no file {name}", "not_found")
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"cache-control": "no-cache"})

    @app.get("/api/info")
    async def info() -> Response:
        from ..tasks import get_task

        tasks = []
        for task in teacher.chain.steps:
            spec = get_task(task)
            tasks.append({"name": task, "instruction": spec.instruction, "kind": spec.kind,
                          "labels": list(spec.labels)})
        return JSONResponse({"version": __version__, "capture": str(capture_dir), "routes": teacher.routes(),
                             "paths": {r: dict(teacher.path_to(route=r)) for r in teacher.routes()},
                             "tasks": tasks, "model": source, "can_ask": predictor is not None,
                             "knowledge_base": teacher.knowledge_base is not None, "labels": writer.counts()})

    @app.get("/api/queue")
    async def queue(everything: bool = False, limit: int = MAX_QUEUE) -> Response:
        items, labelled = await run_in_threadpool(
            lambda: (review_queue(records(), low_margin=low_margin, everything=everything), writer.labelled()))
        shown = [dict(i.to_dict(), **saved(i.question, labelled)) for i in items[:max(0, limit)]]
        return JSONResponse({"items": shown, "total": len(items),
                             "done": sum(1 for i in items if i.question in labelled)})

    @app.post("/api/ask")
    async def ask(request: Request) -> Response:
        body = await _json(request)
        question = body.get("question") if isinstance(body, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise InputError("give {\"question\": \"...\"}, a question to run through the chain")
        if len(question) > MAX_QUESTION_CHARS:
            raise InputError(f"question has {len(question)} characters; the console takes at most {MAX_QUESTION_CHARS}")
        if predictor is None:
            return _error(409, "no model here: start the console with --onnx DIR or --hub DIR to ask",
                          "no_model")
        answer = await run_in_threadpool(predictor.ask, question)
        return JSONResponse(dict(answer, **saved(answer["question"])))

    @app.post("/api/corrections")
    async def correct(request: Request) -> Response:
        correction = Correction.from_dict(await _json(request))
        lines = teacher.lines(correction)
        done = await run_in_threadpool(writer.save, lines)
        logger.info("saved %s for %r", ", ".join(f"{t} ({s})" for t, s in done.items()), correction.question[:40])
        return JSONResponse({"saved": done, "lines": lines, **saved(correction.question), "labels": writer.counts()})

    @app.get("/api/kb")
    async def kb(q: str = "", limit: int = 20) -> Response:
        base = teacher.knowledge_base
        if base is None:
            return JSONResponse({"entries": []})
        needle = q.strip().casefold()
        found = [{"id": e.id, "question": e.questions[0], "answer": e.answer} for e in base.entries
                 if not needle or needle in e.id.casefold() or any(needle in p.casefold() for p in e.questions)]
        return JSONResponse({"entries": found[:max(0, limit)]})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @app.exception_handler(LoraRouterError)
    async def library_error(request: Request, exc: LoraRouterError):
        status = 422 if isinstance(exc, InputError) else 500
        return _error(status, str(exc), "validation" if status == 422 else "internal")

    app.add_middleware(ConsoleGate, settings=settings, metrics=ServiceMetrics())
    return app


def _knowledge_base(predictor):
    """The knowledge base the predictor answers from, else the one shipped; None when neither is readable."""
    from ..kb.file import read_knowledge_base

    try:
        if predictor is not None and "question_answer" in getattr(predictor, "specs", {}):
            return predictor.answerer("question_answer").knowledge_base
        from ..data.bundled import bundled_knowledge_base

        return read_knowledge_base(bundled_knowledge_base())
    except LoraRouterError as exc:
        logger.warning("no knowledge base to pick entries from: %s", exc)
        return None


async def _json(request: Request):
    import json

    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON ({exc})") from None


def _error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def serve_console(capture_dir: str | Path, *, source=None, knowledge_base: str | Path | None = None,
                  settings: ServeSettings | None = None, host: str = "127.0.0.1", port: int = 8090,
                  log_level: str = "info", low_margin: float = LOW_MARGIN, on_ready=None) -> int:
    """Open the capture store (and the model ``source``, a ``ModelSource``, when given) and serve the console
    until stopped; the exit code."""
    from ..capture import CaptureStore
    from ..errors import require
    from ..serving.host import configure_logging

    uvicorn = require("uvicorn", "serve")
    settings = settings or ServeSettings()
    configure_logging(settings.log_format, log_level)
    predictor = source.load() if source is not None else None
    teacher = None
    if knowledge_base is not None:
        from ..kb.file import read_knowledge_base

        teacher = Teacher(getattr(predictor, "chain", None), read_knowledge_base(knowledge_base))
    store = CaptureStore(capture_dir)
    described = {"kind": source.kind, "path": source.path} if source is not None else None
    app = create_console(capture_dir, store.records, predictor=predictor, teacher=teacher, settings=settings,
                         low_margin=low_margin, source=described)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, log_level=log_level)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}")
    server.run()
    return 0
