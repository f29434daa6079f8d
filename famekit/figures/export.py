"""Export a figure as self-contained HTML or as PNG, atomically.

* :func:`save_html` embeds plotly.js by default, so the file renders offline (reports must not
  load JavaScript from a CDN); ``include_plotlyjs="cdn"`` or ``False`` write small files for
  pages that bring their own plotly.js.
* :func:`save_png` renders through kaleido 1.x, which drives a locally installed Chromium
  (Debian: ``apt-get install chromium``). famekit never downloads a browser: without one,
  :class:`ChromiumNotFoundError` says what to install. MathJax is switched off so that no
  rendering waits on the network. The kaleido server is started once per process (~0.2 s an
  image afterwards).

Both write to a temporary file and rename it into place
(:func:`famekit.fileio.atomic_write_text` / ``atomic_write_bytes``): a reader never sees
half a file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from famekit.errors import FamekitError, ParameterError
from famekit.fileio import atomic_write_bytes, atomic_write_text
from famekit.validation import is_real_number

__all__ = ["ChromiumNotFoundError", "find_chromium", "save_html", "save_png"]

# Where Debian/Ubuntu and other distributions put a Chromium-based browser.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                  "chrome")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                  "/snap/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_server_browser: str | None = None  # the browser the kaleido server of this process runs


class ChromiumNotFoundError(FamekitError, OSError):
    """PNG export needs a local Chromium (or Chrome) and none was found."""


def _as_figure(fig) -> go.Figure:
    if isinstance(fig, go.Figure):
        return fig
    if hasattr(fig, "to_plotly_json") and hasattr(fig, "layout"):  # e.g. a go.FigureWidget
        return go.Figure(fig)
    raise ParameterError(
        f"fig must be a plotly Figure, got {type(fig).__name__}. "
        "Fix: pass a figure made by a famekit.figures builder (or any go.Figure)"
    )


def save_html(fig, path, include_plotlyjs=True, full_html: bool = True) -> Path:
    """Write ``fig`` as HTML to ``path`` (atomically); returns the path.

    ``include_plotlyjs``: True (default) embeds plotly.js (~4.8 MB, renders offline); "cdn"
    loads it from cdn.plot.ly (needs network); False leaves it out (the page must provide it).
    """
    fig = _as_figure(fig)
    if not (isinstance(include_plotlyjs, bool) or include_plotlyjs == "cdn"):
        raise ParameterError(
            f"include_plotlyjs={include_plotlyjs!r} is invalid. Fix: use True (self-contained, "
            "offline), 'cdn' or False"
        )
    html = pio.to_html(fig, include_plotlyjs=include_plotlyjs, full_html=full_html,
                       include_mathjax=False, validate=True)
    return atomic_write_text(path, html)


def find_chromium() -> str | None:
    """Path of a Chromium-based browser: ``$BROWSER_PATH`` if set, else the usual names on
    ``PATH`` and the usual install locations; None when there is none."""
    override = os.environ.get("BROWSER_PATH")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for candidate in CHROMIUM_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _check_size(value, name: str):
    if value is None:
        return None
    if not is_real_number(value) or value <= 0:
        raise ParameterError(f"{name}={value!r} is invalid. Fix: pass a positive number "
                             "(pixels for width/height, a factor for scale)")
    return value


def _start_kaleido(browser: str):
    global _server_browser
    try:
        import kaleido
    except ImportError as err:
        raise ChromiumNotFoundError(
            "PNG export needs the kaleido package (1.x). Fix: pip install 'kaleido>=1' "
            "(part of famekit[notebooks])"
        ) from err
    if _server_browser != browser:
        if _server_browser is not None:
            kaleido.stop_sync_server(silence_warnings=True)
        kaleido.start_sync_server(path=browser, mathjax=False, silence_warnings=True)
        _server_browser = browser
    return kaleido


def save_png(fig, path, width: int | None = None, height: int | None = None,
             scale: float = 1.0) -> Path:
    """Render ``fig`` to a PNG at ``path`` (atomically) with kaleido and the local Chromium.

    ``width``/``height`` in CSS pixels (default: the figure's own size, else 700 x 500);
    ``scale`` multiplies the resolution (2 = sharp on paper and high-DPI screens).
    """
    fig = _as_figure(fig)
    width, height = _check_size(width, "width"), _check_size(height, "height")
    scale = _check_size(scale, "scale")
    browser = find_chromium()
    if browser is None:
        where = (f"BROWSER_PATH={os.environ['BROWSER_PATH']!r} is not an executable"
                 if os.environ.get("BROWSER_PATH") else "no chromium/chrome on PATH")
        raise ChromiumNotFoundError(
            f"PNG export needs a local Chromium browser ({where}). Fix: install it with "
            "`apt-get install chromium` (Debian/Ubuntu), or set BROWSER_PATH to a Chrome or "
            "Chromium executable; famekit never downloads a browser. HTML export "
            "(famekit.figures.save_html) works without one"
        )
    kaleido = _start_kaleido(browser)
    opts = {"format": "png", "scale": scale}
    if width is not None:
        opts["width"] = width
    if height is not None:
        opts["height"] = height
    try:
        data = kaleido.calc_fig_sync(fig, opts=opts)
    except Exception as err:  # the browser failed to start or to render
        raise ChromiumNotFoundError(
            f"rendering the PNG with Chromium at {browser} failed ({type(err).__name__}: "
            f"{err}). Fix: check that the browser starts headless (`{browser} --headless "
            "--no-sandbox --dump-dom about:blank`), or reinstall it (`apt-get install "
            "chromium`)"
        ) from err
    if not isinstance(data, bytes) or not data.startswith(PNG_MAGIC):
        raise ChromiumNotFoundError(
            f"kaleido returned no PNG image (got {type(data).__name__}). Fix: upgrade kaleido "
            "to 1.x (`pip install -U 'kaleido>=1'`)"
        )
    return atomic_write_bytes(path, data)
