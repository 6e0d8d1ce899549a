"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright (never a downloaded build).

``.ci/run`` installs the package where it is missing; without a chromium the
tests that need one skip and say why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ENV = "LORA_ROUTER_CHROMIUM"
SCREENSHOTS_ENV = "LORA_ROUTER_SCREENSHOTS"  # a folder: keep the screenshots the tests take (docs/images)


def chromium_path() -> str | None:
    for candidate in (os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module; closed after it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    path = chromium_path()
    if path is None:
        pytest.skip(f"no chromium found (apt-get install chromium, or set {CHROMIUM_ENV})")
    playwright = sync_api.sync_playwright().start()
    try:
        # As root (CI), Chromium refuses to start sandboxed.
        launched = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"] * (os.geteuid() == 0))
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


def keep_screenshot(page, name: str, tmp_path: Path) -> Path:
    """A PNG of ``page`` in ``tmp_path``, and in ``$LORA_ROUTER_SCREENSHOTS`` when that is set."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get(SCREENSHOTS_ENV):
        folder = Path(os.environ[SCREENSHOTS_ENV])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
    return path


def select_text(page, selector: str, start: int, end: int) -> None:
    """Drag the mouse over characters ``start:end`` of the element's text, as a person selects them."""
    box = page.evaluate("""([selector, start, end]) => {
        const root = document.querySelector(selector);
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        const at = (offset) => {
            let node, seen = 0;
            while ((node = walker.nextNode())) {
                if (offset < seen + node.length) return [node, offset - seen];
                seen += node.length;
            }
            throw new Error("offset past the text");
        };
        const range = document.createRange();
        const [a, i] = at(start); range.setStart(a, i);
        walker.currentNode = root;
        const [b, j] = at(end - 1); range.setEnd(b, j + 1);
        const rects = range.getClientRects();
        const first = rects[0], last = rects[rects.length - 1];
        return {x0: first.left + 1, y0: first.top + first.height / 2,
                x1: last.right - 1, y1: last.top + last.height / 2};
    }""", [selector, start, end])
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move((box["x0"] + box["x1"]) / 2, box["y1"], steps=4)
    page.mouse.move(box["x1"], box["y1"], steps=4)
    page.mouse.up()
