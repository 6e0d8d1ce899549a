"""``/docs`` (Swagger UI) and ``/redoc`` from files installed with the service, never from a CDN.

FastAPI's defaults load Swagger UI and ReDoc from jsdelivr: on the closed
networks many data-platform teams run on, ``/docs`` is a blank page. The
serve extra pins ``fastapi-offline``, a wheel that ships both (Swagger UI 5,
which reads the OpenAPI 3.1 that FastAPI writes); this module serves its
files under ``/docs/assets/`` and points the two pages at them. Only the
files named in ``ASSETS`` are served.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response

ASSET_PACKAGE = "fastapi_offline"
ASSET_PREFIX = "/docs/assets"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
# FastAPI's own options that turn its CDN pages off; create_app passes them to FastAPI().
FASTAPI_OPTIONS = {"docs_url": None, "redoc_url": None}


def asset_folder() -> Path | None:
    """Where the installed Swagger UI and ReDoc files are; None when the package is missing."""
    try:
        return Path(str(resources.files(ASSET_PACKAGE) / "static"))
    except ModuleNotFoundError:
        return None


def add_offline_docs(app: FastAPI, title: str) -> None:
    """``GET /docs``, ``GET /redoc`` and their assets on ``app``, all from files on this machine."""
    folder = asset_folder()
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - API",
                                   swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSET_PREFIX}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc",
                              redoc_js_url=f"{ASSET_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSET_PREFIX}/favicon.png", with_google_fonts=False)

    @app.get(ASSET_PREFIX + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            return JSONResponse({"error": f"no asset {name}; assets: {', '.join(ASSETS)}",
                                 "error_type": "not_found"}, status_code=404)
        if folder is None or not (folder / name).is_file():
            return JSONResponse({"error": f"the API pages' files are not installed ({ASSET_PACKAGE}); "
                                          'pip install "lora-router[serve]"', "error_type": "not_found"},
                                status_code=404)
        return FileResponse(folder / name, media_type=ASSETS[name],
                            headers={"cache-control": "public, max-age=86400"})
