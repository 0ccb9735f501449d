"""The built book in a real browser (Debian's Chromium driven by Playwright).

For every chapter page: it loads without JavaScript errors, every image is
present and decoded, moving a slice slider changes the image shown, every
formula is typeset by the book's own MathJax (no raw TeX left), and each
exercise box shows one number, the chapter's ("Exercise 2.1"). On every page of
the book: no leftovers of the build (a progress bar stuck at 0 %, an absolute
path of the building machine, raw TeX). Screenshots are saved (to
$TUTORIAL_SCREENSHOTS, default ci-artifacts/screenshots): each chapter page in
full, and an axial slice figure of chapters 1, 3, 4 and 5 (<chapter>-axial.png).
Requests to other hosts are blocked, so the test also proves the pages need
nothing from the internet to show their figures and formulas.

Skipped when the book is not built or Chromium is absent, unless
TUTORIAL_REQUIRE_BROWSER=1 (set by CI), which turns those into failures.
"""
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("TUTORIAL_BOOK_HTML", REPO / "book" / "_build" / "html"))  # or another build
REQUIRED = os.environ.get("TUTORIAL_REQUIRE_BROWSER") == "1"
SCREENSHOTS = Path(os.environ.get("TUTORIAL_SCREENSHOTS", REPO / "ci-artifacts" / "screenshots"))


AXIAL_SCREENSHOTS = ("01_", "03_", "04_", "05_")
APPENDICES = ("06_",)  # the appendix "Your own images": no exercises


def all_pages():
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for part in toc["parts"] for entry in part["chapters"]]


def chapter_pages():
    return [page for page in all_pages() if page.startswith("chapters/")]


# -- leftovers of the build, in the text a reader sees ---------------------------------
PROGRESS_AT_ZERO = re.compile(
    r"(?<![\d.])0\s?%\s?\|"            # tqdm: "  0%|          | 0/60"
    r"|(?<![\d/.])0/\d+\s*\["          # tqdm: "0/60 [00:00<?, ?it/s]"
    r"|(?<![\d/.])0/\d+\s*\(0\s?%\)"    # progress.progress_bar: "0/60 (0 %)"
)
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:root|home|tmp|work|usr/lib|opt)(?:/|\b)|site-packages/")
RAW_TEX = re.compile(r"\\[()\[\]]|\$\$|\\(?:frac|mathrm|mathbf|mathcal|sum|sqrt|partial|left|right|"
                     r"begin|end|cdot|times|nabla|operatorname|lambda|sigma|alpha)(?![A-Za-z])")


def leftovers(text, repo_root=str(REPO)):
    """What in `text` (a page's visible prose and outputs) is a leftover of the build."""
    found = []
    for name, pattern in (("a progress bar at 0 %", PROGRESS_AT_ZERO),
                          ("an absolute path of the building machine", MACHINE_PATH),
                          ("raw TeX", RAW_TEX)):
        for match in pattern.finditer(text):
            start = max(0, match.start() - 40)
            found.append(f"{name}: ...{text[start:match.end() + 40]!r}...")
    if repo_root and repo_root in text:
        found.append(f"the repository's path {repo_root}")
    return found


# prose and outputs as a reader sees them: code inputs and inline code are left out
# (a code cell may legitimately say "\\(" or "/tmp"), as are typeset formulas' internals
READER_TEXT = """() => {
  const main = document.querySelector('main') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('.cell_input, div[class^="highlight-"], code, script, style, mjx-container')
      .forEach(e => e.remove());
  return copy.textContent;
}"""


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


def open_page(browser, site, page_name):
    """The page loaded with requests to other hosts blocked; JavaScript errors collected."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_this_site(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_this_site)
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "127.0.0.1" in (message.location or {}).get("url", "")
            and "Failed to load resource" not in message.text else None)
    response = page.goto(f"{site}/{page_name}.html", wait_until="load")
    assert response is not None and response.ok, f"{page_name}: HTTP {response and response.status}"
    return page, errors


def typeset(page, page_name):
    """Wait for MathJax on a page with formulas; return the number of formulas."""
    formulas = page.eval_on_selector_all(".math", "nodes => nodes.length")
    if formulas:
        ready = page.evaluate("""() => new Promise(done => {
            const t0 = Date.now();
            (function poll() {
              if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                MathJax.startup.promise.then(() => done(true), () => done(false));
              } else if (Date.now() - t0 > 20000) { done(false); } else { setTimeout(poll, 100); }
            })();
        })""")
        assert ready, f"{page_name}: MathJax did not load (is it shipped in _static/mathjax?)"
    return formulas


@pytest.mark.parametrize("page_name", all_pages())
def test_no_leftovers_of_the_build(site, browser, page_name):
    page, _ = open_page(browser, site, page_name)
    typeset(page, page_name)
    found = leftovers(page.evaluate(READER_TEXT))
    html = page.content()
    if str(REPO) in html:
        found.append(f"the repository's path {REPO} in the page's HTML")
    page.close()
    assert not found, f"{page_name}: leftovers of the build:\n" + "\n".join(found)


@pytest.mark.parametrize("page_name", chapter_pages())
def test_chapter_page(site, browser, page_name):
    page, errors = open_page(browser, site, page_name)

    # formulas: typeset by the book's own MathJax (other hosts are blocked)
    formulas = typeset(page, page_name)
    if formulas:
        typeset_count = page.eval_on_selector_all(".math mjx-container", "nodes => nodes.length")
        assert typeset_count == formulas, f"{page_name}: {formulas - typeset_count} of {formulas} formulas not typeset"
        source = page.evaluate("() => MathJax.startup.document.outputJax.constructor.NAME + ' ' + MathJax.version")
        assert source.startswith("CHTML 3."), source

    # exercises: one number, the chapter's
    chapter = int(Path(page_name).name.split("_")[0])
    titles = page.eval_on_selector_all("div.exercise > p.admonition-title", "ps => ps.map(p => p.textContent)")
    appendix = Path(page_name).name.startswith(APPENDICES)
    assert bool(titles) != appendix, f"{page_name}: {len(titles)} exercise boxes"
    for k, title in enumerate(titles, start=1):
        assert re.match(rf"Exercise {chapter}\.{k} \u2014 \S", title), f"{page_name}: exercise title {title!r}"
        assert not re.search(rf"\({chapter}\.{k}\b|Exercise {chapter}\.{k}\s+{chapter}\.{k}", title), title
    solutions = page.eval_on_selector_all("div.solution > p.admonition-title", "ps => ps.map(p => p.textContent)")
    assert [s.split("\u2014")[0].strip() for s in solutions] == [
        f"Solution to Exercise {chapter}.{k}" for k in range(1, len(titles) + 1)], solutions
    # every figure is there and decoded; the only image from elsewhere is the Colab badge
    images = page.eval_on_selector_all(
        "main img", "imgs => imgs.map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}))")
    external = [i["src"] for i in images if urlparse(i["src"]).hostname not in (None, "", "127.0.0.1")]
    assert all("colab-badge" in src for src in external), f"{page_name}: images from other hosts: {external}"
    figures = [i for i in images if i["src"] not in external]
    assert figures, f"{page_name}: no figures at all"
    broken = [i["src"][:80] for i in figures if not i["ok"]]
    assert not broken, f"{page_name}: figures that did not load: {broken}"

    # an axial slice figure as the reader first sees it (before the slider moves)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if Path(page_name).name.startswith(AXIAL_SCREENSHOTS):
        figure = axial_figure(page)
        assert figure is not None, f"{page_name}: no slice figure to show"
        figure.scroll_into_view_if_needed()
        figure.screenshot(path=str(SCREENSHOTS / f"{Path(page_name).name}-axial.png"))

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


def axial_figure(page):
    """The first output that says it shows an axial slice; else the first slice viewer."""
    for selector in (".tu-slice-viewer", ".cell_output"):
        for element in page.query_selector_all(selector):
            if "axial" in (element.text_content() or "").lower() and element.query_selector("img"):
                return element
    return page.query_selector(".tu-slice-viewer")


@pytest.mark.parametrize("text, kind", [
    ("  0%|          | 0/60 [00:00<?, ?it/s]", "progress"),
    ("registering: 0/60 (0 %)", "progress"),
    ("saved to /tmp/cache/demo.h5", "absolute path"),
    ("File /work/main/.venv/lib/python3.11/site-packages/x.py", "absolute path"),
    ("loss \\(\\mathrm{SSD}\\) falls", "raw TeX"),
])
def test_leftovers_are_recognised(text, kind):
    found = leftovers(text)
    assert found and kind.split()[0] in found[0], (text, found)


@pytest.mark.parametrize("text", [
    "100%|##########| 60/60 [00:01<00:00]", "registering: 60/60 (100 %), 1.2 s",
    "folding 0.0 % of voxels, Dice 0.81", "see https://example.org/work/tmp and ~/work",
    "the loss falls from 10 % to 0.5"])
def test_final_states_and_prose_are_not_leftovers(text):
    assert leftovers(text, repo_root="") == []


def test_instructor_guide_names_exercises_by_the_chapters_number(site, browser):
    page, errors = open_page(browser, site, "instructor_guide")
    links = page.eval_on_selector_all("main a[href*='#ex-']", "as => as.map(a => [a.textContent, a.href])")
    page.close()
    assert len(links) >= 15, links
    for text, href in links:
        chapter, k = href.rsplit("#ex-", 1)[1].split("-")
        assert text == f"Exercise {chapter}.{k}", (text, href)
    assert not errors, errors
