"""The built book in a real browser (Debian's Chromium driven by Playwright).

For every chapter page: it loads without JavaScript errors, every image is
present and decoded, and moving a slice slider changes the image shown. A
screenshot of each page is saved (to $TUTORIAL_SCREENSHOTS, default
ci-artifacts/screenshots). Requests to other hosts are blocked, so the test also
proves the pages need nothing from the internet to show their figures.

Skipped when the book is not built or Chromium is absent, unless
TUTORIAL_REQUIRE_BROWSER=1 (set by CI), which turns those into failures.
"""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "book" / "_build" / "html"
REQUIRED = os.environ.get("TUTORIAL_REQUIRE_BROWSER") == "1"
SCREENSHOTS = Path(os.environ.get("TUTORIAL_SCREENSHOTS", REPO / "ci-artifacts" / "screenshots"))


def chapter_pages():
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    return [entry["file"] for part in toc["parts"] for entry in part["chapters"] if entry["file"].startswith("chapters/")]


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def need(condition, reason):
    if not condition:
        if REQUIRED:
            pytest.fail(reason + " (TUTORIAL_REQUIRE_BROWSER=1)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site():
    need((HTML / "index.html").is_file(), f"the book is not built ({HTML}); run bash scripts/build_book.sh")
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    need(executable is not None, "no Chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.mark.parametrize("page_name", chapter_pages())
def test_chapter_page(site, browser, page_name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, blocked = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_this_site(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_site)
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "127.0.0.1" in (message.location or {}).get("url", "")
            and "Failed to load resource" not in message.text else None)
    response = page.goto(f"{site}/{page_name}.html", wait_until="load")
    assert response is not None and response.ok, f"{page_name}: HTTP {response and response.status}"

    # every figure is there and decoded; the only image from elsewhere is the Colab badge
    images = page.eval_on_selector_all(
        "main img", "imgs => imgs.map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}))")
    external = [i["src"] for i in images if urlparse(i["src"]).hostname not in (None, "", "127.0.0.1")]
    assert all("colab-badge" in src for src in external), f"{page_name}: images from other hosts: {external}"
    figures = [i for i in images if i["src"] not in external]
    assert figures, f"{page_name}: no figures at all"
    broken = [i["src"][:80] for i in figures if not i["ok"]]
    assert not broken, f"{page_name}: figures that did not load: {broken}"

    # every slice viewer responds to its slider
    viewers = page.query_selector_all(".tu-slice-viewer")
    assert viewers, f"{page_name}: no slice viewer"
    for viewer in viewers:
        slider = viewer.query_selector("input[type=range]")
        image = viewer.query_selector("img")
        before = image.get_attribute("src")
        maximum = int(slider.get_attribute("max"))
        target = 0 if int(slider.get_attribute("value")) != 0 else maximum
        slider.evaluate("(s, v) => { s.value = v; s.dispatchEvent(new Event('input', {bubbles: true})); }", target)
        assert image.get_attribute("src") != before, f"{page_name}: moving the slider did not change the slice"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{Path(page_name).name}.png"), full_page=True)
    assert not errors, f"{page_name}: JavaScript errors: {errors}"
    page.close()
