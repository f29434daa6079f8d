"""Real-browser checks in headless Chromium (Debian's build, driven by Playwright; never a
downloaded browser): the committed HTML reports render their figures offline, and the widget
explorer works in a real JupyterLab (run all cells, move the user slider, see the figures change).

Skipped with a reason when /usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Chromium not installed (apt-get install chromium; .ci/run does)"),
]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield instance
        instance.close()


def _offline_page(browser):
    """A page that may load file:// URLs and the local server only: nothing from a CDN."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    blocked = []

    def route(r):
        url = r.request.url
        if url.startswith(("file://", "http://127.0.0.1", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    page.route("**/*", route)
    return page, blocked


def test_committed_reports_render_their_figures_offline(browser):
    index = ROOT / "reports" / "index.html"
    reports = sorted((ROOT / "reports" / "synthetic").glob("*.html"))
    if not index.exists() or not reports:
        pytest.fail("reports/ is not generated: run `make report` and commit reports/")
    page, blocked = _offline_page(browser)
    page.goto(index.as_uri())
    links = page.locator("a[href$='.html']")
    assert links.count() >= len(reports)
    target = next(r for r in reports if r.name.startswith("01_"))
    page.goto(target.as_uri())
    page.wait_for_selector(".plot-container", timeout=30_000)
    assert page.locator(".plot-container").count() >= 3
    assert page.locator(".js-plotly-plot .main-svg").count() >= 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-01.png"), full_page=False)
    assert not blocked, f"the report tried to fetch from the network: {blocked}"
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a copy of the explorer notebook, with a quick run ready."""
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "04_user_explorer.ipynb", work)
    env = dict(os.environ, FAMEKIT_NB_QUICK="1", FAMEKIT_RUNS=str(work / "runs"),
               JUPYTER_CONFIG_DIR=str(work / "cfg"), JUPYTER_RUNTIME_DIR=str(work / "rt"))
    # train the quick run before the browser starts, so the notebook only loads it
    subprocess.run([sys.executable, "-c", "from famekit import workspace; "
                    "workspace.ensure_run('synthetic', quick=True, progress=False)"],
                   env=env, check=True, cwd=work, timeout=600)
    port, token = _free_port(), "famekit-test-token"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
           "--port", str(port), f"--ServerApp.token={token}", "--ServerApp.root_dir", str(work),
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "lab.log", "w")
    server = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(work / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _plot_state(page, title_word: str) -> str:
    """The SVG markup of the first plotly figure whose title contains ``title_word``."""
    return page.evaluate(
        """(word) => {
            for (const el of document.querySelectorAll('.js-plotly-plot')) {
                const t = el.querySelector('.gtitle');
                if (t && t.textContent.toLowerCase().includes(word)) {
                    return el.querySelector('.main-svg').innerHTML;
                }
            }
            return null;
        }""",
        title_word,
    )


def test_explorer_in_jupyterlab_reacts_to_the_user_slider(browser, jupyterlab):
    base, token = jupyterlab
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    page.goto(f"{base}/lab/tree/04_user_explorer.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.locator(".jp-Notebook").first.click()
    page.keyboard.press("Escape")
    # Run > Run All Cells. A click that lands before the kernel is connected runs nothing, and
    # under load one was seen to run only the first cell; so repeat it until every code cell
    # is queued or done ([*] or [n]: running the parameters cell twice is harmless).
    for _attempt in range(6):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(
                "(ps => ps.length > 0 && ps.every(p => /\\[(\\*|\\d+)\\]/.test(p.textContent)))"
                "([...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')])",
                timeout=30_000)
            break
        except Exception:
            continue
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.wait_for_selector(".widget-slider", timeout=240_000)
        page.wait_for_function(
            "document.querySelectorAll('.jp-OutputArea .js-plotly-plot').length >= 2",
            timeout=240_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "explorer-timeout.png"), full_page=True)
        raise
    time.sleep(2)
    routing_before = _plot_state(page, "routing")
    gates_before = _plot_state(page, "gate")
    assert routing_before and gates_before, "the explorer's routing and gate charts are missing"
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(3000)
    routing_after = _plot_state(page, "routing")
    gates_after = _plot_state(page, "gate")
    page.screenshot(path=str(ARTIFACTS / "explorer-after-slider.png"), full_page=True)
    assert routing_after != routing_before, "the routing heatmap did not change"
    assert gates_after != gates_before, "the gate chart did not change"

    # typing a row: the slider, the box and the line under them name the same user
    box = page.locator(".widget-text input[type='number']").first
    box.scroll_into_view_if_needed()
    box.fill("321")
    box.press("Enter")
    page.wait_for_function(
        "[...document.querySelectorAll('.widget-html-content')]"
        ".some(e => e.textContent.includes('user row 321 ('))", timeout=60_000)
    page.wait_for_timeout(1500)
    summary = page.evaluate(
        "[...document.querySelectorAll('.widget-html-content')]"
        ".map(e => e.textContent).find(t => t.includes('user row 321 ('))")
    place = int(summary.split("user row 321 (")[1].split(" of ")[0])  # 1-based on the slider
    readout = page.locator(".widget-slider .widget-readout").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "explorer-typed-row.png"), full_page=True)
    assert int(readout) == place - 1, f"slider at {readout}, the summary says {summary!r}"
    assert box.input_value() == "321"
    page.close()


def test_injected_payloads_neither_run_nor_blank_the_page(browser, tmp_path):
    """Run files and item titles carrying markup: nothing executes, every figure and the text
    after them still renders (an unescaped ``<!--<script>`` used to swallow the rest)."""
    import json

    import nbformat

    from famekit.report import _install_plotly_js, notebook_to_html, write_index

    payload = "<img src=x onerror='window.__pwned=1'><script>window.__pwned=2</script>"
    titles = ["<!--<script>" + payload, "</script>" + payload + "\u2028", "plain"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.plotly.v1+json": {
            "data": [{"type": "bar", "x": [t], "y": [1]}], "layout": {"title": {"text": t}}}})])
        for t in titles] + [nbformat.v4.new_markdown_cell("END-OF-PAGE")]
    (tmp_path / "synthetic").mkdir()
    plotly_src = "../" + _install_plotly_js(tmp_path)
    page_file = tmp_path / "synthetic" / "01_overview.html"
    page_file.write_text(notebook_to_html(nb, plotly_src, "synthetic - " + payload))
    (tmp_path / "synthetic" / "report.json").write_text(json.dumps({
        "dataset": payload, "generated_at": payload, "seconds": payload, "parameters": {},
        "metrics": {payload: {"best_epoch": payload, "NDCG@10": payload}},
        "notebooks": [{"name": payload, "status": "ok", "seconds": 1.0,
                       "html": "synthetic/01_overview.html", "ipynb": "javascript:alert(1)"}]}))
    index = write_index(tmp_path)

    page, blocked = _offline_page(browser)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(index.as_uri())
    assert page.evaluate("window.__pwned") is None, "a payload in report.json ran"
    assert payload in page.inner_text("body"), "the payload is not shown as text"
    assert page.locator("a[href^='javascript']").count() == 0
    page.goto(page_file.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=30_000)
    assert page.evaluate("window.__pwned") is None, "a payload in a figure ran"
    assert page.get_by_text("END-OF-PAGE").is_visible(), "the page after the figures is blank"
    assert page.locator(".js-plotly-plot").count() == len(titles)
    assert not dialogs and not blocked, (dialogs, blocked)
    page.close()
