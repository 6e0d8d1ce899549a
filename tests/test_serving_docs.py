"""The service's /docs and /redoc load every file from the service itself: they work on a closed network."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from lora_router.serving.app import create_app  # noqa: E402
from lora_router.serving.docs import ASSETS  # noqa: E402


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(predictor=object(), handle_sighup=False))  # no lifespan: nothing is loaded


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_name_no_other_host(client, page):
    html = client.get(page).text
    assert "lora-router" in html
    urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""", html)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "cdn." not in html and "fonts.googleapis" not in html


def test_every_asset_the_pages_use_is_served_from_the_wheel(client):
    for name, media_type in ASSETS.items():
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(media_type)
        assert len(response.content) > 1000
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', bundle), "Swagger UI 5 reads the OpenAPI 3.1 FastAPI writes"
    assert client.get("/docs/assets/secrets.txt").status_code == 404
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
